"""Grading with MLE-bench's own graders, loaded from a checkout as MLE-bench loads them (package modules
named by config.yaml), and ``mlestar grade --mlebench``."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from competitions import mlebench_prepared
from mlebench_checkout import ABSENT_PACKAGE, ALL, LITE, make_checkout
from sklearn.metrics import roc_auc_score

from mlestar.cli import main
from mlestar.errors import MlestarError
from mlestar.grading.mlebench import Checkout, MissingDependency, data_file, grade, missing_data, pypi_name


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def checkout(tmp_path: Path) -> Path:
    return make_checkout(tmp_path / "mle-bench")


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    mlebench_prepared(root, "tiny-churn", "binary", n_rows=200)
    mlebench_prepared(root, "tiny-prices", "regression", n_rows=200)
    mlebench_prepared(root, "tiny-strict", "binary", n_rows=200)
    return root


def _answers(data: Path, competition_id: str) -> pd.DataFrame:
    return pd.read_csv(data / competition_id / "prepared" / "private" / "test.csv")


def _submission(
    data: Path, competition_id: str, values: np.ndarray | pd.Series, name: str = "sub.csv"
) -> Path:
    answers = _answers(data, competition_id)
    path = data / competition_id / name
    pd.DataFrame({"id": answers["id"], "target": values}).to_csv(path, index=False)
    return path


def _noisy_scores(data: Path) -> np.ndarray:
    truth = _answers(data, "tiny-churn")["target"].to_numpy()
    rng = np.random.default_rng(1)
    return np.clip(truth * 0.35 + rng.uniform(0, 0.65, size=len(truth)), 0, 1).round(4)


# --- loading graders as MLE-bench does -----------------------------------------------------------


@pytest.mark.parametrize("namespace", [False, True], ids=["package", "namespace-package"])
def test_graders_with_relative_imports_and_helper_modules_load_and_score(
    tmp_path: Path, data: Path, namespace: bool
) -> None:
    checkout = Checkout(make_checkout(tmp_path / "mle-bench", namespace=namespace))
    root_handlers = list(logging.getLogger().handlers)
    scores = _noisy_scores(data)
    churn = checkout.grader("tiny-churn")  # grade.py: from .columns import ID, TARGET
    score, reason = churn.score(
        pd.read_csv(_submission(data, "tiny-churn", scores)), _answers(data, "tiny-churn")
    )
    assert reason == "" and score == round(roc_auc_score(_answers(data, "tiny-churn")["target"], scores), 5)

    answers = _answers(data, "tiny-prices")
    predictions = answers["target"] + 2.0
    prices = checkout.grader("tiny-prices")  # the helper module is imported relatively, inside grade()
    score, reason = prices.score(pd.read_csv(_submission(data, "tiny-prices", predictions)), answers)
    assert reason == "" and score == pytest.approx(2.0, abs=1e-5)
    # Nothing of the checkout stays imported, and its logging.basicConfig did not touch mlestar's logging.
    assert not [name for name in sys.modules if name == "mlebench" or name.startswith("mlebench.")]
    assert logging.getLogger().handlers == root_handlers


def test_invalid_submission_error_and_other_grader_failures_make_a_submission_invalid(
    checkout: Path, data: Path
) -> None:
    mle = Checkout(checkout)
    answers = _answers(data, "tiny-strict")
    strict = mle.grader("tiny-strict")
    probabilities = pd.read_csv(_submission(data, "tiny-strict", np.full(len(answers), 0.5)))
    assert strict.score(probabilities, answers) == (None, "predictions must be 0 or 1 labels")
    labels = pd.read_csv(_submission(data, "tiny-strict", answers["target"]))
    assert strict.score(labels, answers) == (1.0, "")

    churn = mle.grader("tiny-churn")
    short = pd.read_csv(_submission(data, "tiny-churn", _noisy_scores(data))).iloc[:-3]
    assert churn.score(short, _answers(data, "tiny-churn")) == (None, "expected 50 rows, got 47")
    words = pd.read_csv(_submission(data, "tiny-churn", ["yes"] * len(answers)))
    score, reason = churn.score(words, _answers(data, "tiny-churn"))  # roc_auc_score itself fails
    assert score is None and reason.startswith("the grader raised ValueError")


def test_a_missing_package_is_one_line_naming_what_to_install(checkout: Path) -> None:
    with pytest.raises(MissingDependency) as info:
        Checkout(checkout).grader("tiny-needs-package")
    message = str(info.value)
    assert "\n" not in message and f"pip install {ABSENT_PACKAGE}" in message
    assert "pip install 'mlestar[mlebench]'" in message and "tiny-needs-package" in message
    assert pypi_name("Levenshtein") == "levenshtein" and pypi_name("PIL.Image") == "pillow"
    assert pypi_name("py7zr") == "py7zr"


def test_two_checkouts_and_an_installed_mlebench_never_mix(tmp_path: Path, data: Path, monkeypatch) -> None:
    # A decoy `mlebench` on sys.path, as an installed package would be: it must never be used, even for
    # checkouts whose mlebench/ has no __init__.py (a regular package elsewhere wins a sys.path search).
    decoy = tmp_path / "site" / "mlebench"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise RuntimeError('the installed mlebench was imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    first = Checkout(make_checkout(tmp_path / "first", namespace=True))
    second = Checkout(make_checkout(tmp_path / "second", namespace=True, prices_offset=100.0))
    answers = _answers(data, "tiny-prices")
    submission = pd.read_csv(_submission(data, "tiny-prices", answers["target"] + 1.0))
    grader_one, grader_two = first.grader("tiny-prices"), second.grader("tiny-prices")
    assert grader_one.score(submission, answers)[0] == pytest.approx(1.0)
    assert grader_two.score(submission, answers)[0] == pytest.approx(101.0)
    assert first.grader("tiny-prices").score(submission, answers)[0] == pytest.approx(1.0)


def test_checkout_errors_are_one_line(tmp_path: Path, checkout: Path, data: Path) -> None:
    with pytest.raises(MlestarError, match="is not an MLE-bench checkout"):
        Checkout(tmp_path)
    mle = Checkout(checkout)
    with pytest.raises(MlestarError, match="has no competition 'spaceship-titanic'"):
        mle.grader("spaceship-titanic")
    (checkout / "mlebench" / "competitions" / "tiny-strict" / "grade.py").write_text("def grade(:\n")
    with pytest.raises(MlestarError, match="failed to load: SyntaxError"):
        mle.grader("tiny-strict")
    assert missing_data(mle, "tiny-churn", data / "tiny-churn") == ""
    why = missing_data(mle, "tiny-unprepared", data / "tiny-unprepared")
    assert (
        why.startswith("no prepared data") and f"mlebench prepare -c tiny-unprepared --data-dir {data}" in why
    )
    (data / "tiny-strict" / "prepared" / "private" / "test.csv").unlink()
    assert "answers file" in missing_data(mle, "tiny-strict", data / "tiny-strict")


def test_splits_by_name_and_file(checkout: Path, tmp_path: Path) -> None:
    mle = Checkout(checkout)
    assert mle.split("lite") == LITE and mle.split("low") == LITE and mle.split("all") == ALL
    (checkout / "experiments" / "splits" / "split75.txt").unlink()
    assert mle.split("all") == mle.competition_ids() == ALL  # no split75.txt: every competition
    mine = tmp_path / "mine.txt"
    mine.write_text("# two of them\ntiny-prices\n\ntiny-churn  # the churn one\ntiny-prices\n")
    assert mle.split(str(mine)) == ["tiny-prices", "tiny-churn"]
    with pytest.raises(MlestarError, match="unknown split 'medium'"):
        mle.split("medium")
    mine.write_text("tiny-churn\nspaceship-titanic\n")
    with pytest.raises(MlestarError, match="lacks: spaceship-titanic"):
        mle.split(str(mine))


# --- the report and the command ------------------------------------------------------------------

REPORT_FIELDS = [
    "competition_id",
    "score",
    "gold_threshold",
    "silver_threshold",
    "bronze_threshold",
    "median_threshold",
    "any_medal",
    "gold_medal",
    "silver_medal",
    "bronze_medal",
    "above_median",
    "submission_exists",
    "valid_submission",
    "is_lower_better",
    "created_at",
    "submission_path",
]


def test_cli_report_has_mle_bench_fields_and_medals(checkout: Path, data: Path, capsys) -> None:
    scores = _noisy_scores(data)
    expected = round(roc_auc_score(_answers(data, "tiny-churn")["target"], scores), 5)
    submission = _submission(data, "tiny-churn", scores)
    code, out, err = _run(
        [
            "grade",
            str(submission),
            "--competition",
            str(data / "tiny-churn"),
            "--mlebench",
            str(checkout),
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    report = json.loads(out)  # stdout is JSON only: the grader's own print went to stderr
    assert list(report)[: len(REPORT_FIELDS)] == REPORT_FIELDS
    assert report["competition_id"] == "tiny-churn" and report["score"] == expected
    # 50 teams from 0.99 down: gold = 5th (0.95), silver = 10th (0.90), bronze = 20th (0.80).
    assert (report["gold_threshold"], report["silver_threshold"], report["bronze_threshold"]) == (
        0.95,
        0.9,
        0.8,
    )
    medal = (
        "gold" if expected >= 0.95 else "silver" if expected >= 0.9 else "bronze" if expected >= 0.8 else None
    )
    assert report["any_medal"] is (medal is not None) and report["is_lower_better"] is False
    for name in ("gold", "silver", "bronze"):
        assert report[f"{name}_medal"] is (medal == name)
    assert report["above_median"] is (expected > 0.745) and report["grader"] == "auc-roc"

    perfect = _submission(data, "tiny-churn", _answers(data, "tiny-churn")["target"], "perfect.csv")
    code, out, _ = _run(
        [
            "grade",
            str(perfect),
            "--competition",
            str(data / "tiny-churn" / "prepared" / "public"),
            "--mlebench",
            str(checkout),
        ],
        capsys,
    )
    assert code == 0 and "score: 1" in out and "gold_medal" in out


def test_cli_invalid_submission_exits_1_with_the_graders_reason(checkout: Path, data: Path, capsys) -> None:
    submission = _submission(data, "tiny-strict", np.full(50, 0.5))
    code, out, _ = _run(
        [
            "grade",
            str(submission),
            "--competition",
            str(data / "tiny-strict"),
            "--mlebench",
            str(checkout),
            "--json",
        ],
        capsys,
    )
    report = json.loads(out)
    assert code == 1 and report["valid_submission"] is False and report["score"] is None
    assert report["reason"] == "predictions must be 0 or 1 labels" and report["any_medal"] is False
    code, _, err = _run(
        ["grade", str(submission), "--competition", str(data / "tiny-strict"), "--mlebench", str(checkout)],
        capsys,
    )
    assert code == 1 and "invalid submission: predictions must be 0 or 1 labels" in err


def test_cli_pointer_leaderboard_grades_the_score_and_marks_medals_unknown(
    checkout: Path, data: Path, capsys
) -> None:
    (checkout / ".git").mkdir()  # a clone: the message says where to fetch the leaderboards
    answers = _answers(data, "tiny-prices")
    submission = _submission(data, "tiny-prices", answers["target"] + 0.5)
    code, out, err = _run(
        [
            "grade",
            str(submission),
            "--competition",
            str(data / "tiny-prices"),
            "--mlebench",
            str(checkout),
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["score"] == pytest.approx(0.5) and report["valid_submission"] is True
    assert all(
        report[key] is None for key in ("gold_medal", "any_medal", "gold_threshold", "is_lower_better")
    )
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "Git LFS pointer" in warnings[0]
    assert f"cd {checkout.resolve()} && git lfs install && git lfs pull" in warnings[0]
    assert "Traceback" not in err and report["medals_unknown"] in warnings[0]
    code, out, err = _run(
        ["grade", str(submission), "--competition", str(data / "tiny-prices"), "--mlebench", str(checkout)],
        capsys,
    )
    assert code == 0 and "score: 0.5" in out and "gold_medal" not in out and "git lfs pull" in err


def test_cli_grades_with_the_answers_alone(checkout: Path, data: Path, capsys) -> None:
    public = data / "tiny-churn" / "prepared" / "public"
    for name in ("train.csv", "test.csv", "description.md"):
        (public / name).unlink()
    submission = _submission(data, "tiny-churn", _noisy_scores(data))
    code, out, err = _run(
        [
            "grade",
            str(submission),
            "--competition",
            str(data / "tiny-churn"),
            "--mlebench",
            str(checkout),
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads(out)["valid_submission"] is True
    answers = data / "tiny-churn" / "prepared" / "private" / "test.csv"
    code, out, _ = _run(
        [
            "grade",
            str(submission),
            "--answers",
            str(answers),
            "--competition-id",
            "tiny-churn",
            "--mlebench",
            str(checkout),
            "--json",
        ],
        capsys,
    )
    assert code == 0 and json.loads(out)["competition_id"] == "tiny-churn"
    answers.unlink()
    code, _, err = _run(
        ["grade", str(submission), "--competition", str(data / "tiny-churn"), "--mlebench", str(checkout)],
        capsys,
    )
    assert code == 2 and "no answers for 'tiny-churn'" in err and "mlebench prepare -c tiny-churn" in err


def test_cli_missing_package_is_one_line(checkout: Path, data: Path, capsys) -> None:
    mlebench_prepared(data, "tiny-needs-package", "binary", n_rows=100)
    submission = _submission(data, "tiny-needs-package", np.zeros(25))
    code, _, err = _run(
        [
            "grade",
            str(submission),
            "--competition",
            str(data / "tiny-needs-package"),
            "--mlebench",
            str(checkout),
        ],
        capsys,
    )
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and f"pip install {ABSENT_PACKAGE}" in lines[0]


def test_non_csv_and_absent_submissions(checkout: Path, data: Path) -> None:
    mle = Checkout(checkout)
    answers = data_file(data / "tiny-churn", mle.config("tiny-churn").answers)
    parquet = data / "tiny-churn" / "sub.parquet"
    pd.read_csv(_submission(data, "tiny-churn", _noisy_scores(data))).to_parquet(parquet)
    report = grade(mle, "tiny-churn", parquet, answers)
    assert not report.valid_submission and not report.submission_exists and "CSV" in report.reason
    report = grade(mle, "tiny-churn", data / "nothing.csv", answers)
    assert not report.valid_submission and report.reason.startswith("no submission file")
    assert report.gold_threshold == 0.95  # the thresholds are reported all the same


# --- plain leaderboards ---------------------------------------------------------------------------


def test_leaderboard_direction_comes_from_its_order(tiny_binary: Path, tmp_path: Path, capsys) -> None:
    answers = pd.read_csv(tiny_binary / "private" / "answers.csv")
    submission = tmp_path / "sub.csv"
    pd.DataFrame({"id": answers["id"], "target": answers["target"].astype(float)}).to_csv(
        submission, index=False
    )
    # ROC AUC is higher-is-better, but this leaderboard lists its best (lowest) score first.
    board = tmp_path / "leaderboard.csv"
    pd.DataFrame({"teamName": ["a", "b", "c"], "score": [0.5, 0.9, 1.2]}).to_csv(board, index=False)
    code, out, _ = _run(
        ["grade", str(submission), "--competition", str(tiny_binary), "--leaderboard", str(board), "--json"],
        capsys,
    )
    report = json.loads(out)
    assert code == 0 and report["score"] == pytest.approx(1.0)
    assert report["is_lower_better"] is True and not report["above_median"] and not report["any_medal"]
    assert report["competition_id"] == tiny_binary.name
    code, out, _ = _run(
        ["grade", str(submission), "--competition", str(tiny_binary), "--leaderboard", str(board)], capsys
    )
    assert code == 0 and "gold_medal" in out and "is_lower_better" in out

    board.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00ff\nsize 10\n")
    code, out, err = _run(
        ["grade", str(submission), "--competition", str(tiny_binary), "--leaderboard", str(board), "--json"],
        capsys,
    )
    report = json.loads(out)
    assert code == 0 and report["score"] == pytest.approx(1.0) and report["any_medal"] is None
    assert "git lfs pull" in err and "has no 'score' column" not in err


def test_mlebench_needs_a_competition_folder(tmp_path: Path, capsys) -> None:
    code, _, err = _run(
        [
            "grade",
            str(tmp_path / "s.csv"),
            "--answers",
            str(tmp_path / "a.csv"),
            "--metric",
            "rmse",
            "--mlebench",
            str(tmp_path),
        ],
        capsys,
    )
    assert code != 0 and "pass --competition DIR as well" in err
