"""``mlestar bench --mlebench``: a split of a (fake) MLE-bench checkout run on prepared data, graded by the
competitions' own graders; resumable; missing data and grader problems listed, not counted."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from competitions import mlebench_prepared
from console import run_cli as _cli
from mlebench_checkout import ABSENT_PACKAGE, AUC_BOARD, _leaderboard, make_checkout

from mlestar.bench.mlebench import REPORT_CSV, REPORT_JSON, SplitPlan, hard_timeout, headline, run_split
from mlestar.bench.suite import BenchPlan, SeedResult
from mlestar.errors import MlestarError


class FakeRunner:
    """Stands in for ``mlestar run``/``resume``: writes a run's summary.json and submission.csv.

    Seed 0 submits the answers themselves (a perfect score), seed 1 random numbers."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.calls: list[list[str]] = []
        self.timeouts: list[float] = []

    def __call__(self, argv: list[str], timeout: float) -> tuple[int, str]:
        self.calls.append(argv)
        self.timeouts.append(timeout)
        runs_dir = Path(argv[argv.index("--runs-dir") + 1])
        run_id = argv[argv.index("--run-id") + 1] if argv[3] == "run" else argv[4]
        competition, seed = run_id.rsplit("-s", 1)
        run_dir = runs_dir / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        answers = pd.read_csv(self.data / competition / "prepared" / "private" / "test.csv")
        if seed == "1":
            answers["target"] = np.random.default_rng(7).uniform(size=len(answers)).round(4)
        answers.to_csv(run_dir / "submission.csv", index=False)
        summary = {"status": "finished", "stop_reason": None, "llm": {"cost_usd": 0.25}}
        (run_dir / "summary.json").write_text(json.dumps(summary))
        return 0, ""


@pytest.fixture()
def checkout(tmp_path: Path) -> Path:
    return make_checkout(tmp_path / "mle-bench")


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    mlebench_prepared(root, "tiny-churn", "binary", n_rows=80)
    mlebench_prepared(root, "tiny-prices", "regression", n_rows=80)
    return root  # tiny-unprepared, the third competition of the lite split, is not prepared


def _bench(checkout: Path, data: Path, out: Path, runner: FakeRunner, *, split: str = "lite", seeds: int = 2):
    return run_split(
        SplitPlan(checkout, data, split), BenchPlan(time_limit=60, seeds=seeds), out, runner=runner
    )


def test_a_split_runs_what_is_prepared_and_reports_mle_bench_figures(
    checkout: Path, data: Path, tmp_path: Path
) -> None:
    runner, out = FakeRunner(data), tmp_path / "out"
    notices: list[str] = []
    outcome = run_split(
        SplitPlan(checkout, data, "lite"),
        BenchPlan(time_limit=60, seeds=2),
        out,
        runner=runner,
        notice=notices.append,
    )
    ran = sorted(argv[argv.index("--run-id") + 1] for argv in runner.calls)
    assert ran == ["tiny-churn-s0", "tiny-churn-s1", "tiny-prices-s0", "tiny-prices-s1"]
    assert len(notices) == 1 and notices[0].startswith("missing data: tiny-unprepared: no prepared data")

    report = json.loads((out / REPORT_JSON).read_text())
    assert report == json.loads(json.dumps(outcome.report, default=str))
    assert report["competitions"] == {"in_split": 3, "with_data": 2, "missing_data": 1}
    assert [m["competition_id"] for m in report["missing_data"]] == ["tiny-unprepared"]
    assert [m["competition_id"] for m in report["medals_unknown"]] == ["tiny-prices"]
    assert "git lfs pull" in report["medals_unknown"][0]["reason"]
    figures = report["headline"]
    assert (
        figures["valid_submission"]["per_seed"] == [100.0, 100.0]
        and figures["valid_submission"]["stderr"] == 0
    )
    # Medals are known for tiny-churn only: a perfect AUC is gold (seed 0), random numbers win nothing.
    assert figures["any_medal"]["competitions"] == 1 and figures["any_medal"]["per_seed"] == [100.0, 0.0]
    assert figures["any_medal"]["mean"] == 50.0 and figures["any_medal"]["stderr"] == pytest.approx(50.0)
    assert figures["gold_medal"]["per_seed"] == [100.0, 0.0] and figures["silver_medal"]["per_seed"] == [
        0.0,
        0.0,
    ]
    assert figures["above_median"]["per_seed"] == [100.0, 0.0]
    assert report["seed_totals"][0] == {
        "seed": 0,
        "total_runs": 2,
        "total_runs_with_submissions": 2,
        "total_valid_submissions": 2,
        "total_medals": 1,
        "total_gold_medals": 1,
        "total_silver_medals": 0,
        "total_bronze_medals": 0,
        "total_above_median": 1,
    }
    churn = next(
        r for r in report["competition_reports"] if r["competition_id"] == "tiny-churn" and r["seed"] == 0
    )
    assert churn["score"] == 1.0 and churn["gold_medal"] is True and churn["gold_threshold"] == 0.95
    assert churn["cost_usd"] == 0.25 and churn["submission_path"].endswith("tiny-churn-s0/submission.csv")
    prices = next(r for r in report["competition_reports"] if r["competition_id"] == "tiny-prices")
    assert prices["score"] == 0.0 and prices["any_medal"] is None
    csv_rows = pd.read_csv(out / REPORT_CSV)
    assert len(csv_rows) == 4 and {"competition_id", "seed", "gold_medal", "score"} <= set(csv_rows.columns)
    rows = {row.competition: row for row in outcome.rows}
    assert (
        rows["tiny-churn"].gold == 1
        and rows["tiny-churn"].any_medal == 1
        and rows["tiny-prices"].gold is None
    )


def test_rerun_runs_nothing_and_a_fetched_leaderboard_completes_the_medals(
    checkout: Path, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    _bench(checkout, data, out, FakeRunner(data))
    again = FakeRunner(data)
    outcome = _bench(checkout, data, out, again)
    assert again.calls == [] and outcome.report["medals_unknown"]
    # `git lfs pull` replaces the pointer with the real leaderboard (RMSE: lower is better, best first).
    board = checkout / "mlebench" / "competitions" / "tiny-prices" / "leaderboard.csv"
    board.write_text(_leaderboard([round(0.1 * (i + 1), 2) for i in range(50)]))
    third = FakeRunner(data)
    outcome = _bench(checkout, data, out, third)
    assert third.calls == [] and outcome.report["medals_unknown"] == []
    assert outcome.report["headline"]["any_medal"]["competitions"] == 2
    prices = [r for r in outcome.report["competition_reports"] if r["competition_id"] == "tiny-prices"]
    assert [r["gold_medal"] for r in sorted(prices, key=lambda r: r["seed"])] == [True, False]
    assert all(r["is_lower_better"] is True for r in prices)


def test_a_grader_that_cannot_load_is_listed_not_counted_and_graded_later(
    checkout: Path, data: Path, tmp_path: Path
) -> None:
    mlebench_prepared(data, "tiny-needs-package", "binary", n_rows=80)
    split = tmp_path / "mine.txt"
    split.write_text("tiny-churn\ntiny-needs-package\n")
    out = tmp_path / "out"
    outcome = _bench(checkout, data, out, FakeRunner(data), split=str(split), seeds=1)
    (not_graded,) = outcome.report["not_graded"]
    assert (
        not_graded["competition_id"] == "tiny-needs-package"
        and f"pip install {ABSENT_PACKAGE}" in (not_graded["reason"])
    )
    assert outcome.report["headline"]["valid_submission"]["competitions"] == 1  # tiny-churn alone
    grade_py = checkout / "mlebench" / "competitions" / "tiny-needs-package" / "grade.py"
    grade_py.write_text("def grade(submission, answers):\n    return 0.5\n")  # the package got installed
    later = FakeRunner(data)
    outcome = _bench(checkout, data, out, later, split=str(split), seeds=1)
    assert later.calls == [] and outcome.report["not_graded"] == []
    assert outcome.report["headline"]["valid_submission"]["competitions"] == 2


def test_competitions_mlestar_cannot_read_count_as_invalid(
    checkout: Path, data: Path, tmp_path: Path
) -> None:
    (data / "tiny-prices" / "prepared" / "public" / "train.csv").unlink()  # intake fails: no train file
    runner = FakeRunner(data)
    outcome = _bench(checkout, data, tmp_path / "out", runner, seeds=1)
    assert all("tiny-prices" not in " ".join(argv) for argv in runner.calls)
    prices = next(r for r in outcome.results if r.competition == "tiny-prices")
    assert (
        not prices.valid and "no train file" in prices.reason and prices.report["valid_submission"] is False
    )
    assert outcome.report["headline"]["valid_submission"]["per_seed"] == [50.0]


class KilledRunner(FakeRunner):
    """A run that is still going when its time is up: killed (exit 124), its store says crashed."""

    def __init__(self, data: Path, seconds: float) -> None:
        super().__init__(data)
        self.seconds = seconds

    def __call__(self, argv: list[str], timeout: float) -> tuple[int, str]:
        super().__call__(argv, timeout)
        time.sleep(self.seconds)
        run_id = argv[argv.index("--run-id") + 1] if argv[3] == "run" else argv[4]
        runs_dir = Path(argv[argv.index("--runs-dir") + 1])
        (runs_dir / run_id / "summary.json").write_text(json.dumps({"status": "crashed"}))
        return 124, f"no result within {timeout:.0f}s"


def test_a_run_out_of_time_is_graded_as_it_stands_and_never_resumed(
    checkout: Path, data: Path, tmp_path: Path
) -> None:
    out, plan = tmp_path / "out", BenchPlan(time_limit=60, timeout=0.2)
    split = SplitPlan(checkout, data, "lite")
    outcome = run_split(split, plan, out, only=["tiny-churn"], runner=KilledRunner(data, 0.25))
    (result,) = outcome.results
    assert result.complete and result.valid and result.report["gold_medal"] is True  # its last submission
    again = FakeRunner(data)
    run_split(split, plan, out, only=["tiny-churn"], runner=again)
    assert again.calls == []


def test_a_crashed_run_is_resumed_with_the_time_it_has_left(
    checkout: Path, data: Path, tmp_path: Path
) -> None:
    out, plan = tmp_path / "out", BenchPlan(time_limit=60, timeout=30.0)
    split = SplitPlan(checkout, data, "lite")
    first = KilledRunner(data, 0.2)
    (killed,) = run_split(split, plan, out, only=["tiny-churn"], runner=first).results
    assert first.timeouts == [30.0] and not killed.complete and killed.wall_s >= 0.2
    resumed = FakeRunner(data)
    (result,) = run_split(split, plan, out, only=["tiny-churn"], runner=resumed).results
    assert [argv[3] for argv in resumed.calls] == ["resume"]
    assert resumed.timeouts[0] == pytest.approx(30.0 - killed.wall_s)
    assert result.complete and result.wall_s > killed.wall_s


def test_headline_is_mean_and_standard_error_over_seeds() -> None:
    def run(competition: str, seed: int, medal: bool | None, valid: bool = True) -> SeedResult:
        report = {
            "valid_submission": valid,
            "any_medal": medal,
            "gold_medal": medal,
            "silver_medal": medal and False,
            "bronze_medal": medal and False,
            "above_median": medal,
        }
        return SeedResult(competition, seed, f"{competition}-s{seed}", report=report, complete=True)

    results = [
        run("a", 0, True),
        run("b", 0, False),
        run("c", 0, None),
        run("a", 1, True),
        run("b", 1, True),
        run("c", 1, None, valid=False),
        run("a", 2, False),
        run("b", 2, False),
        run("c", 2, None),
    ]
    figures = headline(results, seeds=3)
    assert (
        figures["any_medal"]["per_seed"] == [50.0, 100.0, 0.0] and figures["any_medal"]["competitions"] == 2
    )
    assert figures["any_medal"]["mean"] == pytest.approx(50.0)
    assert figures["any_medal"]["stderr"] == pytest.approx(50.0 / math.sqrt(3))  # sample sd 50, n = 3
    assert figures["valid_submission"]["per_seed"] == pytest.approx([100.0, 200 / 3, 100.0])
    assert figures["valid_submission"]["runs"] == 9


def test_bad_input_gives_one_line(checkout: Path, data: Path, tmp_path: Path) -> None:
    plan = BenchPlan(time_limit=60)
    with pytest.raises(MlestarError, match="MLE-bench data folder not found"):
        run_split(SplitPlan(checkout, tmp_path / "nowhere", "lite"), plan, tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        MlestarError, match="none of the 3 competitions of split 'lite' has prepared data"
    ) as info:
        run_split(SplitPlan(checkout, empty, "lite"), plan, tmp_path / "out")
    assert f"run: mlebench prepare --lite --data-dir {empty}" in str(info.value)
    with pytest.raises(MlestarError, match="mlebench prepare -l .*split75.txt --data-dir"):
        run_split(SplitPlan(checkout, empty, "all"), plan, tmp_path / "out")
    with pytest.raises(MlestarError, match="not a competition of split 'lite': tiny-strict"):
        run_split(SplitPlan(checkout, data, "lite"), plan, tmp_path / "out", only=["tiny-strict"])


# --- the command -------------------------------------------------------------------------------------


def test_cli_gives_each_run_mle_bench_time_limit_and_prints_the_report(
    checkout: Path, data: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    runner = FakeRunner(data)
    monkeypatch.setattr("mlestar.bench.suite.subprocess_runner", runner)
    out = tmp_path / "out"
    code, stdout, err = _cli(
        ["bench", "--mlebench", str(checkout), "--data", str(data), "--out", str(out)], capsys
    )
    assert code == 0, err
    assert all(argv[argv.index("--time-limit") + 1] == "86400" for argv in runner.calls)
    assert runner.timeouts == [hard_timeout(86400)] * 2 and hard_timeout(86400) == 86400 + 4320
    assert "missing data: tiny-unprepared" in err and "git lfs pull" in err
    assert "2 of 3 competitions have prepared data" in stdout and "any medal: 100.0%" in stdout
    assert (out / REPORT_JSON).is_file() and (out / "bench.json").is_file()

    code, stdout, _ = _cli(
        [
            "bench",
            "--mlebench",
            str(checkout),
            "--data",
            str(data),
            "--out",
            str(out),
            "--time-limit",
            "30",
            "--json",
        ],
        capsys,
    )
    payload = json.loads(stdout)
    assert code == 0 and payload["headline"]["gold_medal"]["mean"] == 100.0 and len(runner.calls) == 2
    assert {row["competition"] for row in payload["table"]} == {"tiny-churn", "tiny-prices"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "--mlebench needs --data DIR"),
        (["--data", "D", "S"], "pass either a SUITE folder or --mlebench CHECKOUT, not both"),
        (["--data", "D", "--split", "medium"], "unknown split 'medium'"),
    ],
)
def test_cli_bad_input(checkout: Path, data: Path, extra: list[str], message: str, capsys) -> None:
    extra = [str(data) if e == "D" else str(data / "S") if e == "S" else e for e in extra]
    code, _, err = _cli(["bench", "--mlebench", str(checkout), *extra], capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_cli_suite_needs_a_time_limit(tmp_path: Path, capsys) -> None:
    code, _, err = _cli(["bench", str(tmp_path)], capsys)
    assert code == 2 and "--time-limit is required" in err
    code, _, err = _cli(["bench", "--time-limit", "5"], capsys)
    assert code == 2 and "pass a SUITE folder" in err


# --- end to end -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_fixture_split_runs_end_to_end(checkout: Path, tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    mlebench_prepared(data, "tiny-churn", "binary", n_rows=200)
    mlebench_prepared(data, "tiny-prices", "regression", n_rows=200)
    # A real leaderboard for churn sized to this data: medals are then won or lost for real.
    board = checkout / "mlebench" / "competitions" / "tiny-churn" / "leaderboard.csv"
    board.write_text(_leaderboard(AUC_BOARD))
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "num_models: 1\nnum_tracks: 1\nouter_steps: 0\ninner_steps: 0\nensemble_rounds: 0\nextend: false\n"
        "script_timeout_s: 120\n"
    )
    out = tmp_path / "out"
    argv = [
        "bench",
        "--mlebench",
        str(checkout),
        "--data",
        str(data),
        "--split",
        "lite",
        "--config",
        str(config),
        "--time-limit",
        "120",
        "--out",
        str(out),
        "--json",
    ]
    code, stdout, err = _cli(argv, capsys)
    assert code == 0, err
    report = json.loads(stdout)
    assert report["competitions"] == {"in_split": 3, "with_data": 2, "missing_data": 1}
    churn = next(r for r in report["competition_reports"] if r["competition_id"] == "tiny-churn")
    assert churn["valid_submission"] and 0.6 < churn["score"] <= 1.0
    assert churn["any_medal"] is (churn["score"] >= 0.8) and churn["gold_threshold"] == 0.95
    prices = next(r for r in report["competition_reports"] if r["competition_id"] == "tiny-prices")
    assert prices["valid_submission"] and prices["score"] > 0 and prices["any_medal"] is None
    assert report["headline"]["valid_submission"]["mean"] == 100.0
    assert report["headline"]["any_medal"]["competitions"] == 1
    assert (out / "runs" / "tiny-churn-s0" / "submission.csv").is_file()
    code, stdout, _ = _cli(argv, capsys)  # everything is done: nothing runs again
    assert code == 0 and json.loads(stdout)["competition_reports"][0]["score"] == churn["score"]
