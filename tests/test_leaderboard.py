"""Medal grading against crafted leaderboards of every size band, in both directions."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlestar.errors import MlestarError
from mlestar.grading.leaderboard import MedalReport, grade_against_leaderboard, medal_ranks

MLE_BENCH_FIELDS = {
    "score", "valid_submission", "is_lower_better", "above_median", "gold_medal", "silver_medal",
    "bronze_medal", "any_medal", "gold_threshold", "silver_threshold", "bronze_threshold", "median_threshold",
}


def board(tmp_path: Path, n: int, lower_is_better: bool = False, name: str = "lb.csv") -> Path:
    """A leaderboard of n teams in rank order whose scores make ranks easy to read.

    Higher is better: rank r scores 10_000 - r. Lower is better: rank r scores r / 1000.
    """
    scores = [r / 1000 for r in range(1, n + 1)] if lower_is_better else [10_000 - r for r in range(1, n + 1)]
    path = tmp_path / name
    rows = [f"team_{r},{s},2024-01-01" for r, s in enumerate(scores, start=1)]
    path.write_text("teamName,score,submissionDate\n" + "\n".join(rows) + "\n")
    return path


def score_at(rank: float, lower_is_better: bool) -> float:
    return rank / 1000 if lower_is_better else 10_000 - rank


@pytest.mark.parametrize(
    ("n", "ranks"),
    [
        (1, (1, 1, 1)),  # shares of a single team round up to rank 1
        (7, (1, 1, 2)),  # 0.7, 1.4, 2.8 -> rounded down, at least 1
        (50, (5, 10, 20)),  # < 100: 10% / 20% / 40%
        (99, (9, 19, 39)),
        (100, (10, 20, 40)),  # 100-249: top 10 places / 20% / 40%
        (150, (10, 30, 60)),
        (249, (10, 49, 99)),
        (250, (10, 50, 100)),  # 250-999: 10 + 0.2% / top 50 / top 100
        (500, (11, 50, 100)),
        (999, (11, 50, 100)),
        (1000, (12, 50, 100)),  # 1000+: 10 + 0.2% / 5% / 10%
        (2000, (14, 100, 200)),
        (4321, (18, 216, 432)),
    ],
)
def test_medal_ranks_follow_kaggle_bands_rounding_down(n: int, ranks: tuple[int, int, int]) -> None:
    assert medal_ranks(n) == ranks


@pytest.mark.parametrize("lower", [False, True], ids=["higher-better", "lower-better"])
@pytest.mark.parametrize("n", [50, 150, 500, 2000])
def test_thresholds_are_scores_at_the_medal_ranks(tmp_path: Path, n: int, lower: bool) -> None:
    gold, silver, bronze = medal_ranks(n)
    report = grade_against_leaderboard(score_at(gold, lower), board(tmp_path, n, lower))
    assert report.is_lower_better is lower  # inferred from the leaderboard's order
    assert report.gold_threshold == pytest.approx(score_at(gold, lower))
    assert report.silver_threshold == pytest.approx(score_at(silver, lower))
    assert report.bronze_threshold == pytest.approx(score_at(bronze, lower))
    # Median of ranks 1..n is rank (n + 1) / 2 (an average of the two middle scores when n is even).
    assert report.median_threshold == pytest.approx(score_at((n + 1) / 2, lower))


@pytest.mark.parametrize("lower", [False, True], ids=["higher-better", "lower-better"])
@pytest.mark.parametrize("n", [50, 150, 500, 2000])
def test_ties_at_a_threshold_win_and_one_rank_worse_does_not(tmp_path: Path, n: int, lower: bool) -> None:
    path = board(tmp_path, n, lower)
    gold, silver, bronze = medal_ranks(n)

    def medals(rank: float) -> tuple[bool, bool, bool, bool]:
        # A fractional rank is a score between two teams, e.g. 5.5 sits between ranks 5 and 6.
        r = grade_against_leaderboard(score_at(rank, lower), path)
        return r.gold_medal, r.silver_medal, r.bronze_medal, r.any_medal

    assert medals(gold) == (True, False, False, True)
    assert medals(gold + 0.5) == (False, True, False, True)
    assert medals(silver) == (False, True, False, True)
    assert medals(silver + 0.5) == (False, False, True, True)
    assert medals(bronze) == (False, False, True, True)
    assert medals(bronze + 0.5) == (False, False, False, False)


def test_only_the_best_medal_is_reported(tmp_path: Path) -> None:
    report = grade_against_leaderboard(1e9, board(tmp_path, 150))
    assert (report.gold_medal, report.silver_medal, report.bronze_medal, report.any_medal) == (True, False, False, True)
    assert report.above_median


def test_above_median_is_strict(tmp_path: Path) -> None:
    path = board(tmp_path, 51)  # odd: the median is rank 26's score exactly
    assert not grade_against_leaderboard(score_at(26, False), path).above_median
    assert grade_against_leaderboard(score_at(26, False) + 0.1, path).above_median
    lower = board(tmp_path, 51, lower_is_better=True, name="lower.csv")
    assert not grade_against_leaderboard(score_at(26, True), lower).above_median
    assert grade_against_leaderboard(score_at(26, True) - 1e-6, lower).above_median


def test_explicit_direction_overrides_the_file_order(tmp_path: Path) -> None:
    # Listed worst first, as if someone sorted ascending a higher-is-better board.
    path = tmp_path / "unsorted.csv"
    path.write_text("score\n" + "\n".join(str(v) for v in range(1, 51)) + "\n")
    inferred = grade_against_leaderboard(50, path)
    assert inferred.is_lower_better is True and not inferred.any_medal  # 50 is the worst when lower wins
    explicit = grade_against_leaderboard(50, path, lower_is_better=False)
    assert explicit.is_lower_better is False
    assert explicit.gold_medal and explicit.gold_threshold == 46  # rank 5 of 50, best first


@pytest.mark.parametrize("score", [None, float("nan"), float("inf")])
def test_missing_or_non_finite_score_gets_nothing(tmp_path: Path, score: float | None) -> None:
    report = grade_against_leaderboard(score, board(tmp_path, 50))
    assert report.score is None
    assert not report.valid_submission
    assert not (report.any_medal or report.gold_medal or report.silver_medal or report.bronze_medal)
    assert not report.above_median
    assert report.gold_threshold == score_at(5, False)  # thresholds are still reported


def test_invalid_submission_with_a_winning_score_gets_nothing(tmp_path: Path) -> None:
    report = grade_against_leaderboard(1e9, board(tmp_path, 50), valid=False)
    assert report.score == 1e9
    assert not report.valid_submission and not report.any_medal and not report.above_median


def test_model_dump_uses_mle_bench_field_names(tmp_path: Path) -> None:
    dumped = grade_against_leaderboard(9995.0, board(tmp_path, 50)).model_dump()
    assert set(dumped) == MLE_BENCH_FIELDS
    assert dumped["gold_medal"] is True and dumped["any_medal"] is True and dumped["valid_submission"] is True
    assert isinstance(MedalReport.model_validate(dumped), MedalReport)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("", "not a readable CSV"),
        ("team,points\na,1\n", "no 'score' column"),
        ("team,score\n", "no rows"),
        ("team,score\na,1\nb,oops\n", "non-numeric"),
        ("team,score\na,1\nb,\n", "missing"),
    ],
)
def test_bad_leaderboard_is_a_one_line_error(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "lb.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(MlestarError, match=message) as info:
        grade_against_leaderboard(1.0, path)
    assert "\n" not in str(info.value)
