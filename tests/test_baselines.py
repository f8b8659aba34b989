"""Baselines write gradable submissions in the task's format; the comparison table reads scores right."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest
from baselines import BASELINES, run_baseline
from builders import build_competition
from competitions import make_competition

from mlestar.errors import MlestarError
from mlestar.grading import grade_submission
from mlestar.task.intake import load_task

REPO = Path(__file__).resolve().parents[1]


def _load_compare():
    spec = importlib.util.spec_from_file_location("bench_compare", REPO / "benchmarks" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_compare"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


compare = _load_compare()


@pytest.fixture(autouse=True)
def _one_thread():
    """Models train on one thread: OpenMP spinning on a busy shared machine costs far more than it gains."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def _grade(folder: Path, submission: Path):
    task = load_task(folder)
    sample = task.data_path(task.sample_submission_file)
    return grade_submission(submission, task.answers_file, metric=task.metric, sample_path=sample, id_column=task.id_column)


# ---------------------------------------------------------------------------------------------
# plain


@pytest.mark.parametrize(
    ("name", "beats"),
    [
        ("penguins", math.log(3)),  # class probabilities, log loss: beat the uniform guess
        ("titanic", 809 / 1309),  # labels, accuracy: beat always answering "died"
        ("hpc-jobs", 0.25),  # labels, macro F1
    ],
)
def test_plain_beats_a_trivial_guess(tmp_path: Path, name: str, beats: float) -> None:
    folder = build_competition(name, tmp_path / name)
    submission = run_baseline("plain", folder, 30, tmp_path / "out")
    grade = _grade(folder, submission)
    assert grade.valid, grade.reason
    assert (grade.score < beats) if grade.lower_is_better else (grade.score > beats)
    sample = pd.read_csv(folder / "sample_submission.csv")
    written = pd.read_csv(submission)
    assert list(written.columns) == list(sample.columns)
    assert written["id"].tolist() == sample["id"].tolist()


def test_plain_text_task_uses_tfidf_and_writes_probabilities(tmp_path: Path) -> None:
    folder = build_competition("reviews", tmp_path / "reviews")
    submission = run_baseline("plain", folder, 30, tmp_path / "out")
    written = pd.read_csv(submission)
    assert written["score"].between(0, 1).all() and written["score"].nunique() > 100
    grade = _grade(folder, submission)
    assert grade.valid and grade.score > 0.8  # TF-IDF + logistic regression reaches ~0.86 AUC


def test_plain_binary_and_regression_on_tiny_competitions(tiny_binary: Path, tiny_regression: Path, tmp_path: Path) -> None:
    binary = _grade(tiny_binary, run_baseline("plain", tiny_binary, 10, tmp_path / "b"))
    assert binary.valid and binary.score > 0.75
    regression = _grade(tiny_regression, run_baseline("plain", tiny_regression, 10, tmp_path / "r"))
    answers = pd.read_csv(tiny_regression / "private" / "answers.csv")["target"]
    assert regression.valid and regression.score < answers.std()  # better than predicting the mean


def test_plain_follows_the_sample_row_order(tmp_path: Path) -> None:
    folder = make_competition(tmp_path / "reordered", "binary", n_rows=200)
    sample = pd.read_csv(folder / "sample_submission.csv")
    sample.iloc[::-1].to_csv(folder / "sample_submission.csv", index=False)
    written = pd.read_csv(run_baseline("plain", folder, 10, tmp_path / "out"))
    assert written["id"].tolist() == sample["id"].tolist()[::-1]
    assert _grade(folder, tmp_path / "out" / "submission.csv").valid


def test_rmsle_task_is_fitted_on_the_log_scale(tmp_path: Path) -> None:
    folder = build_competition("house-prices", tmp_path / "house")
    grade = _grade(folder, run_baseline("plain", folder, 30, tmp_path / "out"))
    assert grade.valid and grade.score < 0.2


def test_missing_tools_and_bad_arguments_are_one_line_errors(tiny_binary: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("autogluon") is None:
        with pytest.raises(MlestarError, match="autogluon is not installed"):
            run_baseline("autogluon", tiny_binary, 5, tmp_path / "ag")
    with pytest.raises(MlestarError, match="unknown baseline"):
        run_baseline("magic", tiny_binary, 5, tmp_path)
    with pytest.raises(MlestarError, match="time limit"):
        run_baseline("plain", tiny_binary, 0, tmp_path)
    assert set(BASELINES) == {"plain", "autogluon", "autogluon-best", "flaml"}


# ---------------------------------------------------------------------------------------------
# comparison table


def test_better_ratio_reads_both_directions() -> None:
    ratio = compare.better_ratio
    assert ratio(0.9, 0.8, lower_is_better=False) == pytest.approx(1.125)  # higher AUC: mlestar better
    assert ratio(0.8, 0.9, lower_is_better=False) == pytest.approx(0.8 / 0.9)
    assert ratio(0.2, 0.4, lower_is_better=True) == pytest.approx(2.0)  # lower loss: mlestar better
    assert ratio(0.4, 0.2, lower_is_better=True) == pytest.approx(0.5)
    assert ratio(0.5, 0.5, lower_is_better=True) == 1.0
    assert ratio(0.0, 0.3, lower_is_better=True) == math.inf  # a perfect error beats any other
    assert ratio(None, 0.3, lower_is_better=True) is None
    assert ratio(0.1, -0.2, lower_is_better=False) is None  # negative R²: a ratio would mislead


def _result(competition: str, tool: str, score: float | None, lower: bool, metric: str) -> object:
    return compare.RunResult(competition, tool, metric, lower, score=score, valid=score is not None, wall_s=12.34)


def test_table_puts_mlestar_ratios_in_the_better_direction() -> None:
    results = [
        _result("auc-task", "mlestar", 0.90, False, "roc_auc"),
        _result("auc-task", "plain", 0.80, False, "roc_auc"),
        _result("auc-task", "flaml", None, False, "roc_auc"),
        _result("loss-task", "mlestar", 0.30, True, "log_loss"),
        _result("loss-task", "plain", 0.60, True, "log_loss"),
        _result("loss-task", "flaml", 0.15, True, "log_loss"),
    ]
    tools = ["mlestar", "plain", "flaml"]
    rows = {row["competition"]: row for row in compare.build_table(results, tools)}
    assert rows["auc-task"]["mlestar_vs_plain"] == pytest.approx(0.90 / 0.80)
    assert rows["auc-task"]["mlestar_vs_flaml"] is None  # flaml has no score
    assert rows["loss-task"]["mlestar_vs_plain"] == pytest.approx(2.0)
    assert rows["loss-task"]["mlestar_vs_flaml"] == pytest.approx(0.5)
    assert rows["loss-task"]["direction"] == "lower" and rows["auc-task"]["plain_time_s"] == 12.3

    norm = compare.normalized_scores(results)
    assert norm["loss-task"] == pytest.approx({"mlestar": 0.5, "plain": 0.25, "flaml": 1.0})
    assert norm["auc-task"]["mlestar"] == 1.0 and norm["auc-task"]["flaml"] is None

    text = compare.format_table(compare.build_table(results, tools), tools)
    header, first, second = text.splitlines()
    assert header.split() == ["competition", "metric", "mlestar", "plain", "flaml", "mlestar/plain", "mlestar/flaml"]
    assert first.startswith("auc-task") and "1.125" in first and "(12s)" in first
    assert second.split()[-2:] == ["2", "0.5"]


def test_table_without_mlestar_has_no_ratio_columns() -> None:
    results = [_result("t", "plain", 0.5, False, "accuracy"), _result("t", "flaml", 0.6, False, "accuracy")]
    (row,) = compare.build_table(results, ["plain", "flaml"])
    assert not [key for key in row if "_vs_" in key]


def test_markdown_table_states_provenance_and_counts_wins_and_losses() -> None:
    results = [
        _result("auc-task", "mlestar", 0.90, False, "roc_auc"),
        _result("auc-task", "plain", 0.80, False, "roc_auc"),
        _result("loss-task", "mlestar", 0.30, True, "log_loss"),
        _result("loss-task", "plain", 0.15, True, "log_loss"),
        _result("r2-task", "mlestar", 0.5, False, "r2"),
        _result("r2-task", "plain", None, False, "r2"),
        _result("tie-task", "mlestar", 0.8, False, "accuracy"),
        _result("tie-task", "plain", 0.79992, False, "accuracy"),
    ]
    meta = {"date": "2026-12-01", "cpu": "Test CPU", "cores": 2, "memory_gib": 24, "time_limit_s": 90.0,
            "versions": {"mlestar": "0.1.0", "plain": "1.9.1"}}
    text = compare.format_markdown(compare.build_table(results, ["mlestar", "plain"]), ["mlestar", "plain"], meta)
    assert text.startswith("Measured 2026-12-01 on Test CPU (2 cores, 24 GiB, no GPU), 90 s per tool and competition")
    assert "mlestar 0.1.0, plain 1.9.1" in text
    lines = text.splitlines()
    assert "| auc-task | roc_auc ↑ | 0.9 (12 s) | 0.8 (12 s) | **1.125** |" in lines  # a win is bold
    assert "| loss-task | log_loss ↓ | 0.3 (12 s) | 0.15 (12 s) | 0.500 |" in lines  # a loss is shown as a loss
    assert "| r2-task | r2 ↑ | 0.5 (12 s) | failed | - |" in lines
    assert "| tie-task | accuracy ↑ | 0.8 (12 s) | 0.7999 (12 s) | 1.000 |" in lines  # 1.0001 reads as a tie
    assert "- mlestar vs plain: better on 1, worse on 1, tied on 1; geometric mean ratio 0.826" in lines


def test_comparison_resumes_keeping_scored_runs_and_retrying_failed_ones(tiny_binary: Path, tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / tiny_binary.name).symlink_to(tiny_binary, target_is_directory=True)
    out = tmp_path / "out"
    out.mkdir()
    failed = compare.RunResult(tiny_binary.name, "flaml", "roc_auc", False, error="flaml is not installed")
    kept = compare.RunResult(tiny_binary.name, "plain", "roc_auc", False, score=0.123, valid=True, wall_s=1.0)
    (out / "results.json").write_text(json.dumps([asdict(kept), asdict(failed)]))
    (out / "meta.json").write_text(json.dumps({"time_limit_s": 20.0, "versions": {}}))

    assert compare.main([str(suite), "--time-limit", "20", "--tools", "plain,flaml", "--out", str(out)]) == 0
    records = json.loads((out / "results.json").read_text())
    # Both runs are kept as measured, the failure too: nothing runs again.
    assert [(r["tool"], r["score"], r["error"]) for r in records] == [
        ("plain", 0.123, ""), ("flaml", None, "flaml is not installed")
    ]
    assert not (out / tiny_binary.name / "plain").exists()
    table = (out / "table.md").read_text()
    assert "| 0.123 (1 s) | failed |" in table

    # --retry-failed runs the failed one again and keeps the scored one.
    assert compare.main([str(suite), "--time-limit", "20", "--tools", "plain", "--out", str(out), "--retry-failed"]) == 0
    records = json.loads((out / "results.json").read_text())
    assert [(r["tool"], r["score"]) for r in records] == [("plain", 0.123)]

    with pytest.raises(SystemExit, match="holds runs at 20.0 s, not 30 s"):
        compare.main([str(suite), "--time-limit", "30", "--tools", "plain", "--out", str(out)])
    with pytest.raises(SystemExit, match="TOOL=PATH"):
        compare.parse_pythons(["autogluon"])
    with pytest.raises(SystemExit, match="no interpreter at"):
        compare.parse_pythons([f"autogluon={tmp_path / 'missing' / 'python'}"])
    pythons = compare.parse_pythons([f"autogluon={sys.executable}"])
    assert pythons == {"autogluon": sys.executable, "autogluon-best": sys.executable}
    # A relative interpreter is made absolute (baselines run in their own folder), symlinks kept.
    relative = os.path.relpath(sys.executable)
    assert compare.parse_pythons([f"flaml={relative}"]) == {"flaml": os.path.abspath(relative)}


def test_budget_use_table_reads_each_mlestar_run_summary(tmp_path: Path) -> None:
    def run(name: str, share: float, scripts: dict[str, int], ci95: list[float] | None) -> compare.RunResult:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "submission.csv").write_text("id,y\n")
        summary = {
            "time_used": {"time_spent_s": 300 * share, "time_limit_s": 300, "share": share, "ended_because": "time limit"},
            "scores_by_phase": {phase: {"scripts": n} for phase, n in scripts.items()},
            "final_evaluation": {"seeds": 3, "mean": 0.9, "ci95": ci95} if ci95 else None,
        }
        (folder / "summary.json").write_text(json.dumps(summary))
        return compare.RunResult(name, "mlestar", "roc_auc", False, score=0.9, submission=str(folder / "submission.csv"))

    results = [
        run("b", 0.97, {"phase1": 10, "phase2": 7, "phase4": 3}, [0.89, 0.91]),
        run("a", 0.80, {"phase1": 8, "phase2": 30, "phase3": 1, "phase4": 3}, None),
        compare.RunResult("a", "plain", "roc_auc", False, score=0.8, submission=str(tmp_path / "x.csv")),
    ]
    rows = compare.budget_use_rows(results)
    assert [row["competition"] for row in rows] == ["a", "b"]  # baselines have no summary
    assert rows[1]["scripts"] == {"phase1": 10, "phase2": 7, "phase3": 0, "phase4": 3}
    table = compare.format_budget_use(rows)
    assert "| b | 291 s of 300 (97%) | 10 / 7 / 0 / 3 | time limit | 3 seeds, mean 0.9, 95% CI [0.89, 0.91] |" in table
    assert "1 of 2 used >= 90% of the time limit; 1 of 2 ran all four phases; 1 of 2 carry a 95% interval" in table
    # results.json keeps what the table needs: it is rebuilt once the run folders are gone.
    for folder in ("a", "b"):
        (tmp_path / folder / "summary.json").unlink()
    reloaded = [compare.RunResult(**json.loads(json.dumps(asdict(r)))) for r in results]
    assert compare.format_budget_use(compare.budget_use_rows(reloaded)) == table
