"""mlestar bench: aggregation, resumability (with an injected runner), bad input, one real run."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from competitions import make_competition

from mlestar.bench.suite import (
    BenchPlan,
    SeedResult,
    aggregate,
    find_competitions,
    mean_and_stderr,
    medal_text,
    run_suite,
)
from mlestar.cli import main
from mlestar.errors import MlestarError


def _result(comp: str, seed: int, score: float | None, valid: bool = True, **kw) -> SeedResult:
    return SeedResult(comp, seed, f"{comp}-s{seed}", metric="auc", score=score, valid=valid, complete=True, **kw)


# --- aggregation ---------------------------------------------------------------------------------


def test_mean_and_stderr() -> None:
    assert mean_and_stderr([]) == (None, None)
    assert mean_and_stderr([0.7]) == (0.7, None)
    mean, se = mean_and_stderr([1.0, 2.0, 3.0, 4.0])
    assert mean == pytest.approx(2.5)
    # sample std = sqrt(5/3); se = std / sqrt(4)
    assert se == pytest.approx(math.sqrt(5 / 3) / 2)


def test_aggregate_skips_invalid_scores_and_counts_medals() -> None:
    results = [
        _result("a", 0, 0.8, wall_s=10, cost_usd=0.01, medal="gold", above_median=True),
        _result("a", 1, 0.6, wall_s=20, cost_usd=0.02, medal="none", above_median=False),
        _result("a", 2, None, valid=False, wall_s=30, medal="none", above_median=False),
        _result("a", 3, 0.1, valid=False, wall_s=40, medal="none", above_median=False),  # scored but invalid
        _result("b", 0, 0.5),
    ]
    rows = {row.competition: row for row in aggregate(results)}
    a = rows["a"]
    assert a.seeds == 4 and a.valid == 2 and a.valid_share == pytest.approx(0.5)
    assert a.mean_score == pytest.approx(0.7)
    assert a.stderr == pytest.approx(math.sqrt(0.02) / math.sqrt(2))
    assert a.mean_wall_s == pytest.approx(25.0)
    assert a.cost_usd == pytest.approx(0.03)
    assert (a.gold, a.silver, a.bronze, a.any_medal, a.above_median) == (1, 0, 0, 1, 1)
    assert medal_text(a) == "1/4 (1 gold)"
    b = rows["b"]
    assert b.stderr is None and b.valid_share == 1.0 and b.any_medal is None and medal_text(b) == "-"


# --- resumability with an injected runner -------------------------------------------------------


class FakeRunner:
    """Stands in for the mlestar subprocess: writes summary.json and submission.csv into the run folder."""

    def __init__(self, suite: Path, stop_seeds: set[int] = frozenset()) -> None:
        self.suite = suite
        self.stop_seeds = set(stop_seeds)
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], timeout: float) -> tuple[int, str]:
        self.calls.append(argv)
        verb = argv[3]
        runs_dir = Path(argv[argv.index("--runs-dir") + 1])
        run_id = argv[argv.index("--run-id") + 1] if verb == "run" else argv[4]
        comp, seed = run_id.rsplit("-s", 1)
        run_dir = runs_dir / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        stopped = verb == "run" and int(seed) in self.stop_seeds
        answers = pd.read_csv(self.suite / comp / "private" / "answers.csv")
        answers.to_csv(run_dir / "submission.csv", index=False)  # a perfect submission
        summary = {"status": "stopped" if stopped else "finished", "stop_reason": "user" if stopped else None,
                   "llm": {"cost_usd": 0.5}}
        (run_dir / "summary.json").write_text(json.dumps(summary))
        return (130 if stopped else 0), ""


@pytest.fixture()
def suite(tmp_path: Path) -> Path:
    root = tmp_path / "suite"
    make_competition(root / "alpha", "binary", n_rows=80)
    make_competition(root / "beta", "regression", n_rows=80)
    (root / "notes").mkdir()  # no train file: not a competition
    (root / "notes" / "readme.txt").write_text("hi")
    lines = ["teamName,score"] + [f"t{i},{1 - i / 100}" for i in range(1, 21)]
    (root / "alpha" / "leaderboard.csv").write_text("\n".join(lines) + "\n")
    return root


def test_find_competitions_skips_folders_without_train(suite: Path) -> None:
    assert [p.name for p in find_competitions(suite)] == ["alpha", "beta"]
    assert [p.name for p in find_competitions(suite, ["beta"])] == ["beta"]
    with pytest.raises(MlestarError, match="gamma"):
        find_competitions(suite, ["gamma"])


def test_second_invocation_runs_nothing_and_stopped_runs_are_resumed(suite: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    settings = BenchPlan(time_limit=5, seeds=2)
    first = FakeRunner(suite, stop_seeds={1})
    results, rows = run_suite(suite, settings, out, runner=first)
    assert len(first.calls) == 4 and all(call[3] == "run" for call in first.calls)
    assert {r.run_status for r in results if r.seed == 1} == {"stopped"}
    saved = json.loads((out / "bench.json").read_text())
    assert len(saved["runs"]) == 4 and (out / "bench.csv").is_file()
    alpha = next(r for r in rows if r.competition == "alpha")
    assert alpha.mean_score == pytest.approx(1.0) and alpha.gold == 2 and alpha.cost_usd == pytest.approx(1.0)
    beta = next(r for r in rows if r.competition == "beta")
    assert beta.any_medal is None and beta.mean_score == pytest.approx(0.0) and beta.lower_is_better

    second = FakeRunner(suite)
    results, _ = run_suite(suite, settings, out, runner=second)
    assert sorted(call[3:5] for call in second.calls) == [["resume", "alpha-s1"], ["resume", "beta-s1"]]
    assert all(r.complete and r.run_status == "finished" for r in results)

    third = FakeRunner(suite)
    results, rows = run_suite(suite, settings, out, runner=third)
    assert third.calls == []
    assert len(results) == 4 and all(r.valid_share == 1.0 for r in rows)


def test_failed_run_is_invalid_and_bench_goes_on(suite: Path, tmp_path: Path) -> None:
    calls = []

    def crashing(argv: list[str], timeout: float) -> tuple[int, str]:
        calls.append(argv)
        return 1, "error: boom"

    results, rows = run_suite(suite, BenchPlan(time_limit=5), tmp_path / "out", runner=crashing)
    assert len(calls) == 2
    assert all(r.score is None and not r.valid and "boom" in r.reason and not r.complete for r in results)
    assert all(r.valid_share == 0.0 and r.mean_score is None for r in rows)
    alpha = next(r for r in rows if r.competition == "alpha")
    assert alpha.any_medal == 0  # a leaderboard, no medal
    # Not complete, so a later bench tries again.
    again = FakeRunner(suite)
    results, _ = run_suite(suite, BenchPlan(time_limit=5), tmp_path / "out", runner=again)
    assert len(again.calls) == 2 and all(r.valid for r in results)


# --- CLI bad input -------------------------------------------------------------------------------


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.err


def test_cli_missing_suite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _cli(["bench", str(tmp_path / "nope"), "--time-limit", "5"], capsys)
    assert code == 2 and "error:" in err and "not found" in err and "Traceback" not in err


def test_cli_suite_without_competitions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty" / "junk").mkdir(parents=True)
    code, err = _cli(["bench", str(tmp_path / "empty"), "--time-limit", "5", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "no competitions" in err
    assert not (tmp_path / "o").exists()


def test_cli_unknown_only(suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _cli(["bench", str(suite), "--time-limit", "5", "--only", "zeta", "--out", str(tmp_path / "o")],
                     capsys)
    assert code == 2 and "zeta" in err


# --- one real run --------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_bench_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "suite"
    make_competition(suite / "tiny", "binary", n_rows=200)
    config = tmp_path / "cfg.yaml"
    config.write_text("num_models: 1\nnum_tracks: 1\nouter_steps: 0\ninner_steps: 0\nensemble_rounds: 0\nextend: false\n")
    out = tmp_path / "out"
    argv = ["bench", str(suite), "--time-limit", "120", "--config", str(config), "--out", str(out), "--json"]
    main(argv)
    payload = json.loads(capsys.readouterr().out)
    (row,) = payload["table"]
    assert row["competition"] == "tiny" and row["valid"] == 1 and row["mean_score"] > 0.6
    assert (out / "runs" / "tiny-s0" / "submission.csv").is_file()
    shutil.rmtree(out / "runs" / "tiny-s0" / "scripts", ignore_errors=True)
    main(argv)  # everything is done: nothing runs again
    assert json.loads(capsys.readouterr().out)["runs"][0]["score"] == pytest.approx(row["mean_score"])
