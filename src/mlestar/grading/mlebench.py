"""Grading with a competition's own ``grade.py`` from a user's MLE-bench checkout.

An MLE-bench checkout keeps, per competition, ``mlebench/competitions/<id>/grade.py`` (a function
``grade(submission: DataFrame, answers: DataFrame) -> float`` that raises MLE-bench's
``InvalidSubmissionError`` for a malformed submission) beside the Kaggle ``leaderboard.csv``. Those
graders import helpers from the checkout's own ``mlebench`` package, so the checkout's root is put
on ``sys.path`` before ``grade.py`` is loaded. Nothing of MLE-bench ships with mlestar.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from mlestar.errors import InvalidSubmission, MlestarError
from mlestar.grading.submission import GradeResult, read_submission
from mlestar.task.profile import read_table

Grader = Callable[[pd.DataFrame, pd.DataFrame], float]


def competition_folder(checkout: Path, competition_id: str) -> Path:
    """``mlebench/competitions/<id>`` of a checkout, with a one-line error when it is not one."""
    checkout = Path(checkout).expanduser()
    if not (checkout / "mlebench" / "competitions").is_dir():
        raise MlestarError(f"{checkout} is not an MLE-bench checkout (no mlebench/competitions folder)")
    folder = checkout / "mlebench" / "competitions" / competition_id
    if not (folder / "grade.py").is_file():
        raise MlestarError(f"the MLE-bench checkout at {checkout} has no grader for '{competition_id}'")
    return folder


def load_grader(checkout: Path, competition_id: str) -> Grader:
    """The ``grade`` function of one competition's ``grade.py``."""
    folder = competition_folder(checkout, competition_id)
    root = str(Path(checkout).expanduser().resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    module_name = "mlestar_mlebench_grade_" + "".join(c if c.isalnum() else "_" for c in competition_id)
    spec = importlib.util.spec_from_file_location(module_name, folder / "grade.py")
    if spec is None or spec.loader is None:
        raise MlestarError(f"cannot load {folder / 'grade.py'}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a grader that cannot even be imported (missing dependency, syntax)
        raise MlestarError(f"{folder / 'grade.py'} failed to load: {type(exc).__name__}: {exc}") from None
    grade = getattr(module, "grade", None)
    if not callable(grade):
        raise MlestarError(f"{folder / 'grade.py'} defines no grade(submission, answers) function")
    return grade


def grade_with(
    grader: Grader, submission_path: Path, answers_path: Path, *, metric: str, lower_is_better: bool
) -> GradeResult:
    """Score a submission with an MLE-bench grader; its InvalidSubmissionError makes it invalid."""
    answers = read_table(Path(answers_path))
    try:
        submission = read_submission(Path(submission_path))
        score = float(grader(submission, answers))
    except Exception as exc:
        # MLE-bench graders signal a malformed submission with their own InvalidSubmissionError
        # (matched by name: the class lives in the user's checkout, not in mlestar).
        if not isinstance(exc, InvalidSubmission) and type(exc).__name__ != "InvalidSubmissionError":
            raise MlestarError(f"the MLE-bench grader failed: {type(exc).__name__}: {exc}") from None
        return GradeResult(valid=False, reason=str(exc) or "invalid submission", metric=metric,
                           lower_is_better=lower_is_better)
    return GradeResult(score=score, valid=True, metric=metric, lower_is_better=lower_is_better)
