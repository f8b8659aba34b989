"""Grading: submissions checked against the sample and scored on private answers, medals on a
leaderboard by Kaggle's rules, and MLE-bench competitions' own graders."""

from mlestar.grading.submission import (
    GradeResult,
    grade_competition,
    grade_submission,
    read_submission,
    score_submission,
    validate_submission,
)

__all__ = [
    "GradeResult",
    "grade_competition",
    "grade_submission",
    "read_submission",
    "score_submission",
    "validate_submission",
]
