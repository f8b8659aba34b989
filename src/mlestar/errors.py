"""User-facing errors.

Anything raised as a ``MlestarError`` is printed by the CLI as one line (``error: ...``) with a
non-zero exit code and no traceback. Raise it for bad input (missing files, malformed data,
unknown metric, bad config) and for conditions the user must act on; let real bugs raise normally.
"""

from __future__ import annotations


class MlestarError(Exception):
    """An error the user can fix; its message is shown alone, on one line."""

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(" ".join(message.split()))
        if exit_code is not None:
            self.exit_code = exit_code


class TaskError(MlestarError):
    """The competition folder cannot be understood (missing files, malformed CSV, ...)."""


class MetricError(MlestarError):
    """Unknown metric or a metric that does not fit the task."""


class InvalidSubmission(MlestarError):
    """A submission does not match the expected format; exit code 1 as graders expect."""

    exit_code = 1


class ConfigError(MlestarError):
    """A configuration file, environment variable or flag has a bad value."""


class RunNotFound(MlestarError):
    """No run with the given id exists in the runs folder."""


class PredictionError(MlestarError):
    """New rows cannot be predicted: no final solution, rows that do not fit, or a failed script."""


class KaggleError(MlestarError):
    """Kaggle cannot be used: no credentials, rules not accepted, unknown competition, no network."""


class BudgetExhausted(MlestarError):
    """The run's time, token or dollar budget is spent."""


class AllCandidatesFailed(MlestarError):
    """No script of the run produced a score, so there is nothing to submit."""

    exit_code = 3


class InfrastructureError(MlestarError):
    """The executor kept failing to run scripts (workers or nodes died): the run stops, resumable."""


class UnsupportedTask(MlestarError):
    """The offline expert cannot solve this kind of task (an LLM may)."""
