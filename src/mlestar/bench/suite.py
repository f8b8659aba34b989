"""Run mlestar on every competition of a suite, over several seeds, and grade the submissions.

    mlestar bench .bench/suite --time-limit 300 --seeds 3 --out .bench/results

Each (competition, seed) is one ``mlestar run`` in its own process (run id ``<competition>-s<seed>``
under ``OUT/runs``). Its submission is graded on the competition's private answers and, where the
competition folder holds a ``leaderboard.csv``, placed on that leaderboard for a medal. Results are
written to ``OUT/bench.json`` (every run and the per-competition table) and ``OUT/bench.csv`` (the
table) after every run, so an interrupted bench keeps what it has.

Resuming: a (competition, seed) already in ``bench.json`` whose run is complete (finished, failed,
or stopped by its budget) is not run again; a run folder that exists but was stopped by the user or
crashed is continued with ``mlestar resume``; a finished run that ``bench.json`` does not know yet is
only graded. A run that fails counts as an invalid submission (no score) and the bench goes on.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mlestar.errors import MlestarError

# (argv, timeout seconds) -> (exit code, tail of the output). Tests inject their own.
Runner = Callable[[list[str], float], tuple[int, str]]

LEADERBOARD_NAME = "leaderboard.csv"
MEDALS = ("gold", "silver", "bronze")
# Run states after which nothing more will happen to the run.
_DONE_STATES = {"finished", "failed"}


@dataclass
class SeedResult:
    """One (competition, seed) run, graded."""

    competition: str
    seed: int
    run_id: str
    metric: str = ""
    lower_is_better: bool = False
    score: float | None = None
    valid: bool = False
    reason: str = ""  # why there is no valid score
    run_status: str = ""  # the run store's status; empty when no run folder was created
    stop_reason: str | None = None
    complete: bool = False  # the run has ended for good (not to be resumed or re-run)
    wall_s: float = 0.0  # the bench's wall time for this run, summed over resumes
    cost_usd: float = 0.0
    medal: str | None = None  # gold / silver / bronze / none; None without a leaderboard
    above_median: bool | None = None
    submission: str = ""
    report: dict[str, Any] = field(default_factory=dict)  # the grader's own report (MLE-bench's fields)


@dataclass
class CompetitionRow:
    """The per-competition line of the bench table."""

    competition: str
    metric: str
    lower_is_better: bool
    seeds: int
    valid: int
    valid_share: float
    mean_score: float | None
    stderr: float | None
    scores: list[float] = field(default_factory=list)
    gold: int | None = None
    silver: int | None = None
    bronze: int | None = None
    any_medal: int | None = None
    above_median: int | None = None
    mean_wall_s: float = 0.0
    cost_usd: float = 0.0


# ---------------------------------------------------------------------------------------------
# Finding competitions


def has_train_file(folder: Path) -> bool:
    """Whether ``folder`` looks like a competition: intake finds a train table (or train image folder)."""
    from mlestar.task.intake import _locate, _read_config, _resolve_layout

    try:
        layout = _resolve_layout(folder)
        _locate(layout, _read_config(layout))
    except (MlestarError, OSError):
        return False
    return True


def find_competitions(suite: Path, only: Iterable[str] | None = None) -> list[Path]:
    """Competition folders of ``suite`` (sorted by name), restricted to ``only`` when given."""
    suite = Path(suite).expanduser()
    if not suite.exists():
        raise MlestarError(f"suite folder not found: {suite}")
    if not suite.is_dir():
        raise MlestarError(f"expected a suite folder of competitions, got a file: {suite}")
    found = sorted(
        (p for p in suite.iterdir() if p.is_dir() and not p.name.startswith(".") and has_train_file(p)),
        key=lambda p: p.name,
    )
    wanted = [name for name in (only or []) if name]
    if wanted:
        unknown = sorted(set(wanted) - {p.name for p in found})
        if unknown:
            raise MlestarError(f"not a competition of {suite}: {', '.join(unknown)}")
        found = [p for p in found if p.name in wanted]
    if not found:
        raise MlestarError(f"no competitions in {suite} (a competition is a subfolder with a train file)")
    return found


# ---------------------------------------------------------------------------------------------
# Aggregation


def mean_and_stderr(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and standard error of the mean (sample std / sqrt(n)); stderr is None below two values."""
    if not values:
        return None, None
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def _finite(score: float | None) -> bool:
    return score is not None and math.isfinite(score)


def aggregate(results: list[SeedResult]) -> list[CompetitionRow]:
    """One row per competition (in first-seen order): score mean and standard error over the valid seeds."""
    by_comp: dict[str, list[SeedResult]] = {}
    for result in results:
        by_comp.setdefault(result.competition, []).append(result)
    rows = []
    for competition, runs in by_comp.items():
        scores = [float(r.score) for r in runs if r.valid and _finite(r.score)]  # type: ignore[arg-type]
        mean, stderr = mean_and_stderr(scores)
        metric = next((r.metric for r in runs if r.metric), "")
        row = CompetitionRow(
            competition=competition,
            metric=metric,
            lower_is_better=next((r.lower_is_better for r in runs if r.metric), False),
            seeds=len(runs),
            valid=len(scores),
            valid_share=len(scores) / len(runs),
            mean_score=mean,
            stderr=stderr,
            scores=scores,
            mean_wall_s=sum(r.wall_s for r in runs) / len(runs),
            cost_usd=round(sum(r.cost_usd for r in runs), 6),
        )
        if any(r.medal is not None for r in runs):
            medals = [r.medal for r in runs]
            row.gold, row.silver, row.bronze = (medals.count(m) for m in MEDALS)
            row.any_medal = row.gold + row.silver + row.bronze
            row.above_median = sum(bool(r.above_median) for r in runs)
        rows.append(row)
    return rows


def medal_text(row: CompetitionRow) -> str:
    """``2/3 (1 gold, 1 bronze)``: seeds with a medal; ``-`` without a leaderboard."""
    if row.any_medal is None:
        return "-"
    won = [f"{count} {name}" for name, count in zip(MEDALS, (row.gold, row.silver, row.bronze)) if count]
    return f"{row.any_medal}/{row.seeds}" + (f" ({', '.join(won)})" if won else "")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.5g}"


def score_text(row: CompetitionRow) -> str:
    if row.mean_score is None:
        return "-"
    return _fmt(row.mean_score) + ("" if row.stderr is None else f" ± {row.stderr:.2g}")


def rich_table(rows: list[CompetitionRow], title: str = "mlestar bench") -> Any:
    from rich.table import Table

    table = Table(title=title)
    for column in ("competition", "metric", "score (mean ± se)", "valid", "medal", "wall (mean)", "cost"):
        table.add_column(column, justify="right" if column not in ("competition", "metric") else "left")
    for row in rows:
        table.add_row(
            row.competition,
            f"{row.metric} ({'min' if row.lower_is_better else 'max'})" if row.metric else "-",
            score_text(row),
            f"{row.valid}/{row.seeds}",
            medal_text(row),
            f"{row.mean_wall_s:,.0f}s",
            f"${row.cost_usd:.4f}",
        )
    return table


# ---------------------------------------------------------------------------------------------
# Saving and loading


def load_results(out: Path) -> list[SeedResult]:
    """The runs recorded in ``OUT/bench.json`` (none when it does not exist)."""
    path = Path(out) / "bench.json"
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in fields(SeedResult)}
        return [SeedResult(**{k: v for k, v in item.items() if k in known}) for item in data.get("runs", [])]
    except (json.JSONDecodeError, TypeError, AttributeError) as exc:
        raise MlestarError(f"{path} is not a bench result file ({exc}); move it away or pick another --out") from None


def save_results(results: list[SeedResult], out: Path, settings: dict[str, Any] | None = None) -> list[CompetitionRow]:
    """Write ``bench.json`` (settings, runs, table) and ``bench.csv`` (the table); returns the table."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = aggregate(results)
    payload = {
        "settings": settings or {},
        "runs": [asdict(r) for r in results],
        "table": [asdict(r) for r in rows],
    }
    tmp = out / "bench.json.tmp"
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / "bench.json")
    columns = [f.name for f in fields(CompetitionRow) if f.name != "scores"]
    with open(out / "bench.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*columns, "medal"])
        writer.writeheader()
        for row in rows:
            record = {k: v for k, v in asdict(row).items() if k in columns}
            writer.writerow({**record, "medal": medal_text(row)})
    return rows


# ---------------------------------------------------------------------------------------------
# Running


def subprocess_runner(argv: list[str], timeout: float) -> tuple[int, str]:
    """Run ``argv``; returns its exit code and the last lines of its output."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, f"no result within {timeout:.0f}s"
    return proc.returncode, _last_line(proc.stderr) or _last_line(proc.stdout)


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def run_state(run_dir: Path) -> tuple[str | None, str | None]:
    """(status, stop reason) of a run folder, from its store (crash-aware) or else its summary.json."""
    from mlestar.store.db import DB_NAME, RunStore

    if (run_dir / DB_NAME).is_file():
        try:
            with RunStore(run_dir) as store:
                return store.status.value, store.get_meta("stop_reason")
        except Exception:  # an unreadable store is as good as no run
            return None, None
    summary = _read_summary(run_dir)
    return summary.get("status"), summary.get("stop_reason")


def _read_summary(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_complete(status: str | None, stop_reason: str | None) -> bool:
    return status in _DONE_STATES or (status == "stopped" and stop_reason == "budget")


@dataclass
class BenchPlan:
    time_limit: float
    seeds: int = 1
    llm: str | None = None
    config: Path | None = None
    timeout: float | None = None  # hard stop per process; default 2 x time limit + 300 s

    def as_dict(self, suite: Path) -> dict[str, Any]:
        return {
            "suite": str(suite),
            "time_limit": self.time_limit,
            "seeds": self.seeds,
            "llm": self.llm,
            "config": str(self.config) if self.config else None,
        }


def _run_argv(competition: Path, run_id: str, seed: int, runs_dir: Path, settings: BenchPlan) -> list[str]:
    argv = [
        sys.executable, "-m", "mlestar", "run", str(competition),
        "--runs-dir", str(runs_dir), "--run-id", run_id,
        "--time-limit", f"{settings.time_limit:g}", "--seed", str(seed),
    ]
    if settings.llm:
        argv += ["--llm", settings.llm]
    if settings.config:
        argv += ["--config", str(settings.config)]
    return argv


def _resume_argv(run_id: str, runs_dir: Path) -> list[str]:
    return [sys.executable, "-m", "mlestar", "resume", run_id, "--runs-dir", str(runs_dir)]


def _task_info(competition: Path) -> tuple[str, bool, str]:
    """(metric, lower_is_better, error) of a competition."""
    from mlestar.task.intake import load_task

    try:
        task = load_task(competition)
    except MlestarError as exc:
        return "", False, str(exc)
    return task.metric, task.lower_is_better, ""


def grade_run(result: SeedResult, competition: Path, run_dir: Path) -> SeedResult:
    """Fill score, validity, medal and cost of ``result`` from the run folder's submission."""
    from mlestar.grading import grade_competition
    from mlestar.grading.leaderboard import grade_against_leaderboard

    summary = _read_summary(run_dir)
    llm = summary.get("llm") if isinstance(summary.get("llm"), dict) else {}
    result.cost_usd = float(llm.get("cost_usd") or 0.0)
    result.score, result.valid, result.medal, result.above_median = None, False, None, None
    submission = run_dir / "submission.csv"
    if submission.is_file():
        result.submission = str(submission)
        try:
            grade = grade_competition(submission, competition)
        except MlestarError as exc:
            result.reason = f"not graded: {exc}"
        else:
            result.score, result.valid, result.metric = grade.score, grade.valid, grade.metric
            result.lower_is_better = grade.lower_is_better
            result.reason = grade.reason if not grade.valid else ""
    elif not result.reason:
        result.reason = "the run left no submission.csv"
    leaderboard = competition / LEADERBOARD_NAME
    if leaderboard.is_file():
        try:
            # As in MLE-bench, the leaderboard's own order says which direction is better.
            report = grade_against_leaderboard(result.score, leaderboard, valid=result.valid)
        except MlestarError as exc:
            result.reason = (result.reason + "; " if result.reason else "") + str(exc)
        else:
            result.medal = next((m for m in MEDALS if getattr(report, f"{m}_medal")), "none")
            result.above_median = report.above_median
    return result


# (result, competition folder, run folder) -> the result, graded.
GradeHook = Callable[[SeedResult, Path, Path], SeedResult]


def run_one(
    competition: Path,
    seed: int,
    out: Path,
    settings: BenchPlan,
    previous: SeedResult | None = None,
    runner: Runner = subprocess_runner,
    grade: GradeHook | None = None,
) -> SeedResult:
    """Run (or resume, or just grade) one (competition, seed) and return its graded result.

    ``grade(result, competition, run_dir)`` grades the run (default: ``grade_run``)."""
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    run_id = f"{competition.name}-s{seed}"
    run_dir = runs_dir / run_id
    result = SeedResult(competition.name, seed, run_id)
    result.metric, result.lower_is_better, task_error = _task_info(competition)
    if previous is not None:
        result.wall_s = previous.wall_s
    if task_error:
        result.reason, result.complete = task_error, True
        return result
    timeout = settings.timeout or settings.time_limit * 2 + 300

    status, stop_reason = run_state(run_dir) if run_dir.exists() else (None, None)
    if status == "running":
        result.reason = f"run {run_id} is running in another process; left alone"
    elif not _is_complete(status, stop_reason):
        if status is None and run_dir.exists():
            # A folder without a readable run (killed before the store was written): start over.
            shutil.move(str(run_dir), str(run_dir.with_name(f"{run_id}.stale-{int(time.time())}")))
        resuming = status is not None and status != "running"
        argv = _resume_argv(run_id, runs_dir) if resuming else _run_argv(competition, run_id, seed, runs_dir, settings)
        started = time.monotonic()
        code, tail = runner(argv, timeout)
        result.wall_s += time.monotonic() - started
        status, stop_reason = run_state(run_dir) if run_dir.exists() else (None, None)
        if code not in (0, 130) or status is None:
            result.reason = f"mlestar {'resume' if resuming else 'run'} exited {code}" + (f": {tail}" if tail else "")
    result.run_status, result.stop_reason = status or "", stop_reason
    result.complete = _is_complete(status, stop_reason)
    return (grade or grade_run)(result, competition, run_dir)


def run_suite(
    suite: Path,
    settings: BenchPlan,
    out: Path,
    only: Iterable[str] | None = None,
    runner: Runner = subprocess_runner,
    progress: Callable[[SeedResult, bool], None] | None = None,
    parallel: int = 1,
) -> tuple[list[SeedResult], list[CompetitionRow]]:
    """Run every (competition, seed) not already complete in ``OUT/bench.json``; save after each one.

    ``progress(result, skipped)`` is called once per (competition, seed). ``parallel``: how many
    runs go at once (a cluster runner holds several; each still saves as it ends).
    """
    if settings.seeds < 1:
        raise MlestarError("--seeds must be at least 1")
    if settings.time_limit <= 0:
        raise MlestarError("--time-limit must be a positive number of seconds")
    if settings.config is not None and not Path(settings.config).is_file():
        raise MlestarError(f"config file not found: {settings.config}")
    competitions = find_competitions(suite, only)
    out = Path(out).resolve()
    meta = settings.as_dict(Path(suite))
    known = {(r.competition, r.seed): r for r in load_results(out)}
    order = [(c.name, seed) for c in competitions for seed in range(settings.seeds)]
    # Keep results of other competitions/seeds already in the file (an --only run must not drop them).
    extra = [r for key, r in known.items() if key not in set(order)]

    def current() -> list[SeedResult]:
        return [known[key] for key in order if key in known] + extra

    rows = save_results(current(), out, meta)
    saving = threading.Lock()

    def one(competition: Path, seed: int) -> None:
        nonlocal rows
        key = (competition.name, seed)
        previous = known.get(key)
        if previous is not None and previous.complete:
            if progress:
                progress(previous, True)
            return
        result = run_one(competition.resolve(), seed, out, settings, previous=previous, runner=runner)
        with saving:
            known[key] = result
            rows = save_results(current(), out, meta)  # after every run
            if progress:
                progress(result, False)

    pairs = [(competition, seed) for competition in competitions for seed in range(settings.seeds)]
    if parallel <= 1:
        for competition, seed in pairs:
            one(competition, seed)
    else:
        pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="mlestar-bench")
        try:
            for future in [pool.submit(one, competition, seed) for competition, seed in pairs]:
                future.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)  # Ctrl+C: the caller stops the runs in flight
            raise
        pool.shutdown()
    return current(), [r for r in rows if r.competition in {c.name for c in competitions}]
