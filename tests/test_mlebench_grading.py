"""``mlestar grade`` with MLE-bench: a competition's own grade.py, its leaderboard, MLE-bench's report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from competitions import mlebench_competition

from mlestar.cli import main
from mlestar.errors import MlestarError
from mlestar.grading.mlebench import competition_folder, grade_with, load_grader

COMPETITION_ID = "house-prices-lite"

# A checkout laid out like MLE-bench's: the grader imports helpers from the checkout's own package.
HELPERS = '''
class InvalidSubmissionError(Exception):
    """Raised by graders for a submission that cannot be scored."""
'''
UTILS = '''
import numpy as np
from mlebench.grade_helpers import InvalidSubmissionError


def aligned(submission, answers, id_column, target):
    if len(submission) != len(answers):
        raise InvalidSubmissionError(f"expected {len(answers)} rows, got {len(submission)}")
    merged = answers.merge(submission, on=id_column, suffixes=("_true", "_pred"))
    return merged[target + "_true"].to_numpy(), merged[target + "_pred"].to_numpy()
'''
GRADE = '''
import numpy as np
from mlebench.competitions.utils import aligned


def grade(submission, answers):
    y_true, y_pred = aligned(submission, answers, "Id", "SalePrice")
    return float(np.sqrt(np.mean((np.log(y_true) - np.log(y_pred)) ** 2)))
'''


def make_checkout(root: Path, leaderboard: list[float]) -> Path:
    package = root / "mlebench"
    folder = package / "competitions" / COMPETITION_ID
    folder.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "grade_helpers.py").write_text(HELPERS)
    (package / "competitions" / "__init__.py").write_text("")
    (package / "competitions" / "utils.py").write_text(UTILS)
    (folder / "grade.py").write_text(GRADE)
    pd.DataFrame({"teamName": [f"t{i}" for i in range(len(leaderboard))], "score": leaderboard}).to_csv(
        folder / "leaderboard.csv", index=False
    )
    return root


@pytest.fixture()
def competition(tmp_path: Path) -> Path:
    return mlebench_competition(tmp_path / COMPETITION_ID)


def _submission(competition: Path, factor: float, drop: int = 0) -> Path:
    answers = pd.read_csv(competition / "prepared" / "private" / "test.csv")
    rng = np.random.default_rng(0)
    noisy = answers["SalePrice"] * np.exp(factor * rng.normal(size=len(answers)))
    path = competition / f"submission-{factor}-{drop}.csv"
    pd.DataFrame({"Id": answers["Id"], "SalePrice": noisy}).iloc[: len(answers) - drop].to_csv(path, index=False)
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_own_grader_scores_and_its_invalid_submission_error_means_invalid(competition: Path, tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "mle-bench", [0.1])
    grader = load_grader(checkout, COMPETITION_ID)
    answers = competition / "prepared" / "private" / "test.csv"
    good = grade_with(grader, _submission(competition, 0.2), answers, metric="rmsle", lower_is_better=True)
    truth = pd.read_csv(answers)["SalePrice"].to_numpy()
    noisy = pd.read_csv(_submission(competition, 0.2))["SalePrice"].to_numpy()
    assert good.valid and good.score == pytest.approx(np.sqrt(np.mean((np.log(truth) - np.log(noisy)) ** 2)))
    short = grade_with(grader, _submission(competition, 0.2, drop=3), answers, metric="rmsle", lower_is_better=True)
    assert not short.valid and "expected 50 rows, got 47" in short.reason


def test_checkout_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(MlestarError, match="is not an MLE-bench checkout"):
        competition_folder(tmp_path, COMPETITION_ID)
    checkout = make_checkout(tmp_path / "mle-bench", [0.1])
    with pytest.raises(MlestarError, match="has no grader for 'spaceship'"):
        load_grader(checkout, "spaceship")
    (checkout / "mlebench" / "competitions" / COMPETITION_ID / "grade.py").write_text("import not_a_package\n")
    with pytest.raises(MlestarError, match="failed to load: ModuleNotFoundError"):
        load_grader(checkout, COMPETITION_ID)


def test_cli_uses_the_checkout_grader_and_leaderboard_with_mle_bench_field_names(
    competition: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 60 teams, lower is better (best first): gold = 6th score, silver = 12th, bronze = 24th.
    board = [0.01 * (i + 1) for i in range(60)]
    checkout = make_checkout(tmp_path / "mle-bench", board)
    submission = _submission(competition, 0.1)  # an RMSLE near 0.1: between silver (0.12) and gold (0.06)
    code, out, err = _run(
        ["grade", str(submission), "--competition", str(competition), "--mlebench", str(checkout), "--json"], capsys
    )
    assert code == 0, err
    report = json.loads(out)
    expected = {"competition_id", "score", "valid_submission", "is_lower_better", "above_median", "gold_medal",
                "silver_medal", "bronze_medal", "any_medal", "gold_threshold", "silver_threshold",
                "bronze_threshold", "median_threshold", "submission_exists", "submission_path", "created_at"}
    assert expected <= set(report)
    assert report["competition_id"] == COMPETITION_ID and report["is_lower_better"] is True
    assert report["gold_threshold"] == pytest.approx(0.06) and report["silver_threshold"] == pytest.approx(0.12)
    assert 0.06 < report["score"] <= 0.12
    assert report["silver_medal"] and report["any_medal"] and not report["gold_medal"] and report["above_median"]

    code, out, _ = _run(
        ["grade", str(_submission(competition, 0.1, drop=1)), "--competition", str(competition),
         "--mlebench", str(checkout), "--json"],
        capsys,
    )
    report = json.loads(out)
    assert code == 1 and report["valid_submission"] is False and not report["any_medal"]
    assert "expected 50 rows" in report["reason"]


def test_leaderboard_direction_comes_from_its_order(tiny_binary: Path, tmp_path: Path, capsys) -> None:
    answers = pd.read_csv(tiny_binary / "private" / "answers.csv")
    submission = tmp_path / "sub.csv"
    pd.DataFrame({"id": answers["id"], "target": answers["target"].astype(float)}).to_csv(submission, index=False)
    # ROC AUC is higher-is-better, but this leaderboard lists its best (lowest) score first.
    board = tmp_path / "leaderboard.csv"
    pd.DataFrame({"teamName": ["a", "b", "c"], "score": [0.5, 0.9, 1.2]}).to_csv(board, index=False)
    code, out, _ = _run(["grade", str(submission), "--competition", str(tiny_binary), "--leaderboard", str(board),
                         "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["score"] == pytest.approx(1.0)
    assert report["is_lower_better"] is True and not report["above_median"] and not report["any_medal"]
    assert report["competition_id"] == tiny_binary.name
    code, out, _ = _run(["grade", str(submission), "--competition", str(tiny_binary), "--leaderboard", str(board)],
                        capsys)
    assert code == 0 and "gold_medal" in out and "is_lower_better" in out


def test_mlebench_needs_a_competition_folder(tmp_path: Path, capsys) -> None:
    code, _, err = _run(["grade", str(tmp_path / "s.csv"), "--answers", str(tmp_path / "a.csv"), "--metric",
                         "rmse", "--mlebench", str(tmp_path)], capsys)
    assert code != 0 and "pass --competition DIR as well" in err
