"""Check a submission's format and score it against private answers.

An invalid submission is not an error of the grader: ``grade_submission`` returns a
``GradeResult`` with ``valid=False`` and a one-line ``reason``. Problems on the grader's side (no
answers file, an unreadable sample submission, an unknown metric) raise ``TaskError`` /
``MetricError`` as usual.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from mlestar.core.task import TaskType
from mlestar.errors import InvalidSubmission, TaskError
from mlestar.metrics import Metric, get_metric
from mlestar.task.profile import label_key, read_table


class GradeResult(BaseModel):
    """The outcome of grading one submission."""

    score: float | None = None
    valid: bool
    reason: str = ""  # why the submission is invalid, empty when valid
    metric: str
    lower_is_better: bool


def _names(columns: list[str], limit: int = 8) -> str:
    shown = ", ".join(f"'{c}'" for c in columns[:limit])
    return shown + (f" and {len(columns) - limit} more" if len(columns) > limit else "")


def _keys(series: pd.Series) -> pd.Series:
    """Id values as text, with 7.0 and 7 read as the same id."""
    if pd.api.types.is_float_dtype(series):
        values = series.dropna()
        if len(values) == len(series) and (values % 1 == 0).all():
            return series.astype("int64").astype(str)
    return series.astype(str)


def _check_ids(ids: pd.Series, expected: pd.Series, against: str) -> None:
    if ids.isna().any():
        raise InvalidSubmission(f"the id column '{ids.name}' has {int(ids.isna().sum())} missing values")
    keys = _keys(ids)
    duplicated = keys[keys.duplicated()]
    if len(duplicated):
        raise InvalidSubmission(f"id '{duplicated.iloc[0]}' appears more than once in the submission")
    have, want = set(keys), set(_keys(expected.dropna()))
    missing = sorted(want - have)
    if missing:
        raise InvalidSubmission(
            f"{len(missing)} ids of the {against} are missing from the submission (e.g. '{missing[0]}')"
        )
    extra = sorted(have - want)
    if extra:
        raise InvalidSubmission(f"{len(extra)} submission ids are not in the {against} (e.g. '{extra[0]}')")


def _check_values(frame: pd.DataFrame, columns: list[str], metric: Metric | None) -> None:
    for name in columns:
        values = frame[name]
        missing = int(values.isna().sum())
        if missing:
            raise InvalidSubmission(f"column '{name}' has {missing} missing values")
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if metric is not None and metric.needs_proba and not numeric:
            converted = pd.to_numeric(values, errors="coerce")
            bad = values[converted.isna()]
            if len(bad):
                raise InvalidSubmission(f"column '{name}' must hold probabilities, found '{bad.iloc[0]}'")
            values, numeric = converted, True
        if numeric:
            arr = values.to_numpy(dtype=float)
            if not np.isfinite(arr).all():
                raise InvalidSubmission(f"column '{name}' has infinite values")
            if metric is not None and metric.needs_proba and (arr.min() < 0 or arr.max() > 1):
                raise InvalidSubmission(
                    f"column '{name}' must hold probabilities in [0, 1], "
                    f"found values from {arr.min():g} to {arr.max():g}"
                )


def validate_submission(
    submission: pd.DataFrame, sample: pd.DataFrame, *, id_column: str | None, metric: Metric | None = None
) -> None:
    """Raise ``InvalidSubmission`` (one line) unless ``submission`` has the sample's shape and ids."""
    got = [str(c) for c in submission.columns]
    want = [str(c) for c in sample.columns]
    if got != want:
        missing = [c for c in want if c not in got]
        extra = [c for c in got if c not in want]
        if missing:
            detail = f"missing column(s) {_names(missing)}"
        elif extra:
            detail = f"unexpected column(s) {_names(extra)}"
        else:
            detail = f"columns are out of order, expected {_names(want)}"
        raise InvalidSubmission(f"submission columns do not match the sample submission: {detail}")
    if len(submission) != len(sample):
        raise InvalidSubmission(
            f"submission has {len(submission)} rows, the sample submission has {len(sample)}"
        )
    if id_column is not None and id_column in want:
        _check_ids(submission[id_column], sample[id_column], "sample submission")
    _check_values(submission, [c for c in got if c != id_column], metric)


def _is_one_hot(frame: pd.DataFrame) -> bool:
    try:
        values = frame.to_numpy(dtype=float)
    except (TypeError, ValueError):
        return False
    return bool(np.isin(values, (0.0, 1.0)).all() and (values.sum(axis=1) == 1).all())


def _guess_id(submission: pd.DataFrame, answers: pd.DataFrame, sample: pd.DataFrame | None) -> str | None:
    reference = sample if sample is not None else submission
    if len(reference.columns) < 2:
        return None
    first = str(reference.columns[0])
    if first in answers.columns and first in submission.columns and answers[first].is_unique:
        return first
    return None


def score_submission(
    submission: pd.DataFrame,
    answers: pd.DataFrame,
    metric: Metric,
    *,
    sample: pd.DataFrame | None = None,
    id_column: str | None = None,
) -> float:
    """Score a submission table against the answers table; ``InvalidSubmission`` when it cannot be."""
    submission = submission.copy()
    submission.columns = [str(c) for c in submission.columns]
    answers = answers.copy()
    answers.columns = [str(c) for c in answers.columns]
    if id_column is None:
        id_column = _guess_id(submission, answers, sample)
    if sample is not None:
        validate_submission(submission, sample, id_column=id_column, metric=metric)
    predictions = [c for c in submission.columns if c != id_column]
    if not predictions:
        raise InvalidSubmission("submission has no prediction column")
    if sample is None:
        if id_column is not None and id_column not in submission.columns:
            raise InvalidSubmission(f"submission has no '{id_column}' column")
        _check_values(submission, predictions, metric)

    if id_column is not None:
        if id_column not in answers.columns:
            raise TaskError(f"the answers have no '{id_column}' column to align the submission with")
        _check_ids(submission[id_column], answers[id_column], "answers")
        answer_keys = _keys(answers[id_column])
        if answer_keys.duplicated().any():
            raise TaskError(f"the answers repeat ids in column '{id_column}'")
        aligned = answers.set_index(answer_keys).loc[_keys(submission[id_column]).to_numpy()]
    else:
        if len(submission) != len(answers):
            raise InvalidSubmission(f"submission has {len(submission)} rows, the answers have {len(answers)}")
        aligned = answers
    aligned = aligned.reset_index(drop=True)
    submission = submission.reset_index(drop=True)
    y_true, y_pred = _pair(submission, aligned, predictions, id_column, metric)
    try:
        value = metric.score(y_true, y_pred)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidSubmission(f"cannot compute {metric.name}: {message}") from None
    if math.isnan(value):
        raise InvalidSubmission(f"{metric.name} is undefined for this submission")
    return value


def _pair(
    submission: pd.DataFrame,
    answers: pd.DataFrame,
    predictions: list[str],
    id_column: str | None,
    metric: Metric,
) -> tuple[object, object]:
    """What to hand the metric: (true values, predictions) in the shapes it understands."""
    answer_columns = [c for c in answers.columns if c != id_column]
    classification = TaskType.REGRESSION not in metric.task_types
    if all(c in answers.columns for c in predictions):
        if len(predictions) == 1:
            return answers[predictions[0]], submission[predictions[0]]
        truth = answers[predictions]
        if classification and _is_one_hot(truth):
            # one column per class in the answers too: recover each row's label
            labels = np.asarray(predictions, dtype=object)[np.argmax(truth.to_numpy(dtype=float), axis=1)]
            return pd.Series(labels), submission[predictions]
        return truth, submission[predictions]
    wanted = {label_key(c) for c in predictions}
    for name in answer_columns:
        values = answers[name].dropna()
        if len(predictions) >= 2 and len(values) and {label_key(v) for v in values.unique()} <= wanted:
            return answers[name], submission[predictions]  # class-probability columns vs a label column
    if len(predictions) == 1 and len(answer_columns) == 1:
        return answers[answer_columns[0]], submission[predictions[0]]
    raise InvalidSubmission(
        f"submission columns {_names(predictions)} do not match the answers' columns {_names(answer_columns)}"
    )


def read_submission(path: Path) -> pd.DataFrame:
    """A submission file as a frame; InvalidSubmission when it is missing, unreadable or empty."""
    if not path.is_file():
        raise InvalidSubmission(f"submission file not found: {path}")
    try:
        frame = read_table(path)
    except TaskError as exc:
        raise InvalidSubmission(str(exc)) from None
    if frame.empty:
        raise InvalidSubmission(f"{path.name} has no rows")
    return frame


def grade_submission(
    submission_path: str | Path,
    answers_path: str | Path,
    *,
    metric: str,
    sample_path: str | Path | None = None,
    id_column: str | None = None,
) -> GradeResult:
    """Grade a submission file against an answers file (aligned by id when there is one)."""
    chosen = get_metric(metric)
    answers_file = Path(answers_path)
    if not answers_file.is_file():
        raise TaskError(f"answers file not found: {answers_path}")
    answers = read_table(answers_file)
    if sample_path is not None and not Path(sample_path).is_file():
        raise TaskError(f"sample submission not found: {sample_path}")
    sample = read_table(Path(sample_path)) if sample_path is not None else None
    try:
        submission = read_submission(Path(submission_path))
        value = score_submission(submission, answers, chosen, sample=sample, id_column=id_column)
    except InvalidSubmission as exc:
        return GradeResult(
            valid=False, reason=str(exc), metric=chosen.name, lower_is_better=chosen.lower_is_better
        )
    return GradeResult(score=value, valid=True, metric=chosen.name, lower_is_better=chosen.lower_is_better)


def grade_competition(
    submission_path: str | Path,
    competition_dir: str | Path,
    metric: str | None = None,
    *,
    id_column: str | None = None,
) -> GradeResult:
    """Grade against a competition folder's private answers, sample submission and metric.

    Only those are needed: a folder without a train file (or with one intake cannot read) is graded
    from its answers, its sample submission and the metric named by ``metric``, task.yaml or the
    description."""
    from mlestar.task.intake import grading_files, load_task

    try:
        task = load_task(competition_dir, metric=metric, id_column=id_column)
    except TaskError as exc:
        files = grading_files(competition_dir, metric=metric, id_column=id_column)
        if files.answers is None:
            raise
        if files.metric is None:
            raise TaskError(f"{exc}; to grade without it, name the metric (--metric)") from None
        return grade_submission(
            submission_path,
            files.answers,
            metric=files.metric,
            sample_path=files.sample,
            id_column=files.id_column,
        )
    if task.answers_file is None:
        raise TaskError(
            f"no private answers found for {task.name} (expected private/answers.csv or private/test.csv)"
        )
    sample = task.data_path(task.sample_submission_file) if task.sample_submission_file else None
    return grade_submission(
        submission_path, task.answers_file, metric=task.metric, sample_path=sample, id_column=task.id_column
    )
