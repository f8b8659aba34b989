"""Medal grading against a Kaggle leaderboard, following MLE-bench's rules.

Thresholds follow Kaggle's progression system, by the number of teams N:

=============  =====================  ==============  ==============
N              gold                   silver          bronze
=============  =====================  ==============  ==============
1 - 99         top 10%                top 20%         top 40%
100 - 249      top 10 places          top 20%         top 40%
250 - 999      top 10 + 0.2% of N     top 50 places   top 100 places
1000 and more  top 10 + 0.2% of N     top 5%          top 10%
=============  =====================  ==============  ==============

Rounding rule (MLE-bench's): a fractional rank is rounded *down* (``int(N * share)``), and never
below rank 1. The threshold is the score of the team at that rank (1-based) on the leaderboard
sorted best first, so N = 50 gives gold = the 5th score, silver = the 10th, bronze = the 20th;
N = 2000 gives gold = the 14th, silver = the 100th, bronze = the 200th. A score that ties or
beats a threshold wins that medal, and only the best medal won is reported. ``above_median``
needs a score strictly better than the median of all leaderboard scores.

A repository cloned without git-lfs (MLE-bench's is one) holds a small pointer text in place of each
leaderboard; such a file raises ``LeaderboardUnavailable``, which says how to fetch the real ones,
so callers can still report the score with the medals marked unknown.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from mlestar.errors import MlestarError


class MedalReport(BaseModel):
    """One graded submission; ``model_dump()`` uses MLE-bench's field names."""

    score: float | None
    valid_submission: bool
    is_lower_better: bool
    above_median: bool
    gold_medal: bool
    silver_medal: bool
    bronze_medal: bool
    any_medal: bool
    gold_threshold: float
    silver_threshold: float
    bronze_threshold: float
    median_threshold: float


def medal_ranks(num_teams: int) -> tuple[int, int, int]:
    """1-based leaderboard ranks whose scores are the (gold, silver, bronze) thresholds."""
    if num_teams < 1:
        raise ValueError("a leaderboard needs at least one team")

    def share(fraction: float) -> int:
        return max(1, int(num_teams * fraction))

    if num_teams < 100:
        ranks = (share(0.1), share(0.2), share(0.4))
    elif num_teams < 250:
        ranks = (10, share(0.2), share(0.4))
    elif num_teams < 1000:
        ranks = (10 + int(num_teams * 0.002), 50, 100)
    else:
        ranks = (10 + int(num_teams * 0.002), share(0.05), share(0.1))
    return ranks


# The first line of every Git LFS pointer file (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md).
LFS_POINTER_START = b"version https://git-lfs.github.com/spec/"


class LeaderboardUnavailable(MlestarError):
    """The leaderboard file is a Git LFS pointer: the score stands, the medals are unknown."""


def is_lfs_pointer(path: Path) -> bool:
    """Whether ``path`` holds a Git LFS pointer instead of the file's content."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(LFS_POINTER_START)) == LFS_POINTER_START
    except OSError:
        return False


def _repository_of(path: Path) -> Path | None:
    for folder in Path(path).resolve().parents:
        if (folder / ".git").exists():
            return folder
    return None


def lfs_pointer_message(path: Path) -> str:
    """One line: which leaderboard is a pointer, and the command that fetches the real files."""
    repository = _repository_of(path)
    fetch = (
        f"cd {repository} && git lfs install && git lfs pull"
        if repository is not None
        else "git lfs install && git lfs pull, in the repository it came from"
    )
    return (
        f"medals unknown: {path} is a Git LFS pointer, not the leaderboard (cloned without git-lfs); "
        f"fetch the leaderboards with: {fetch}"
    )


def read_leaderboard(path: Path) -> pd.Series:
    """The ``score`` column of a leaderboard CSV as floats, in file order."""
    path = Path(path)
    if not path.is_file():
        raise MlestarError(f"leaderboard {path} does not exist")
    if is_lfs_pointer(path):
        raise LeaderboardUnavailable(lfs_pointer_message(path))
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise MlestarError(f"leaderboard {path} is not a readable CSV: {str(exc).splitlines()[0]}") from None
    if "score" not in frame.columns:
        raise MlestarError(f"leaderboard {path} has no 'score' column (columns: {', '.join(map(str, frame.columns))})")
    scores = pd.to_numeric(frame["score"], errors="coerce")
    if scores.empty:
        raise MlestarError(f"leaderboard {path} has no rows")
    bad = int((~np.isfinite(scores.to_numpy(dtype=float))).sum())
    if bad:
        raise MlestarError(f"leaderboard {path} has {bad} missing or non-numeric scores")
    return scores.astype(float).reset_index(drop=True)


def infer_lower_is_better(scores: pd.Series) -> bool:
    """Leaderboards list the best team first, so lower is better when the first score is the smaller."""
    return bool(scores.iloc[0] < scores.iloc[-1])


def grade_against_leaderboard(
    score: float | None,
    leaderboard_csv: Path,
    lower_is_better: bool | None = None,
    valid: bool = True,
) -> MedalReport:
    """Place ``score`` on the leaderboard and say which medal it earns."""
    scores = read_leaderboard(leaderboard_csv)
    if lower_is_better is None:
        lower_is_better = infer_lower_is_better(scores)
    # Sort best first (stable, so ties keep file order); a well-formed file is already in that order.
    ranked = scores.sort_values(ascending=lower_is_better, kind="stable").reset_index(drop=True)
    gold_rank, silver_rank, bronze_rank = medal_ranks(len(ranked))

    def at(rank: int) -> float:
        return float(ranked.iloc[rank - 1])

    thresholds = {
        "gold_threshold": at(gold_rank),
        "silver_threshold": at(silver_rank),
        "bronze_threshold": at(bronze_rank),
        "median_threshold": float(ranked.median()),
    }

    finite = score is not None and math.isfinite(float(score))
    if not (valid and finite):
        return MedalReport(
            score=float(score) if finite else None,  # type: ignore[arg-type]
            valid_submission=False,
            is_lower_better=lower_is_better,
            above_median=False,
            gold_medal=False,
            silver_medal=False,
            bronze_medal=False,
            any_medal=False,
            **thresholds,
        )

    value = float(score)  # type: ignore[arg-type]

    def reaches(threshold: float) -> bool:
        return value <= threshold if lower_is_better else value >= threshold

    gold = reaches(thresholds["gold_threshold"])
    silver = not gold and reaches(thresholds["silver_threshold"])
    bronze = not gold and not silver and reaches(thresholds["bronze_threshold"])
    median = thresholds["median_threshold"]
    return MedalReport(
        score=value,
        valid_submission=True,
        is_lower_better=lower_is_better,
        above_median=value < median if lower_is_better else value > median,
        gold_medal=gold,
        silver_medal=silver,
        bronze_medal=bronze,
        any_medal=gold or silver or bronze,
        **thresholds,
    )
