"""``mlestar bench --mlebench``: mlestar on every competition of an MLE-bench split, graded by MLE-bench.

    mlestar bench --mlebench ~/src/mle-bench --data ~/.cache/mle-bench/data --split lite --seeds 3

The competitions are those ``mlebench prepare`` laid out in DATA (``DATA/<id>/prepared/public``, the
answers in ``prepared/private``). Each (competition, seed) is one ``mlestar run`` through the suite
runner (``bench/suite.py``: the same run folders, ``bench.json`` and resuming), with MLE-bench's time
limit of 24 hours per competition unless ``--time-limit`` says otherwise, graded by the competition's
own grader and leaderboard from the checkout. A competition whose data is missing is listed and left
out of the figures: that is no failure of the agent. A run whose grader cannot be loaded (a missing
package) is listed as not graded and graded again by the next invocation, as is one whose medals
were unknown (a Git LFS pointer leaderboard), so ``git lfs pull`` and a rerun complete the report.

``OUT/mlebench_report.json`` holds the headline figures (valid submission, above median, any medal,
gold, silver, bronze: percentages of the competitions with data, mean and standard error over
seeds), MLE-bench's totals per seed, and MLE-bench's report for every (competition, seed);
``OUT/mlebench_report.csv`` the per-run reports as a table.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlestar.bench.suite import (
    MEDALS,
    BenchPlan,
    CompetitionRow,
    Runner,
    SeedResult,
    _read_summary,
    load_results,
    mean_and_stderr,
    run_one,
    save_results,
    subprocess_runner,
)
from mlestar.errors import MlestarError
from mlestar.grading.mlebench import Checkout, data_file, grade, missing_data

MLEBENCH_TIME_LIMIT_S = 24 * 3600.0  # MLE-bench's rules: 24 hours per competition
REPORT_JSON = "mlebench_report.json"
REPORT_CSV = "mlebench_report.csv"
HEADLINE = ("valid_submission", "above_median", "any_medal", "gold_medal", "silver_medal", "bronze_medal")
TOTALS = {  # MLE-bench's names for the counts of its grading report
    "total_runs_with_submissions": "submission_exists",
    "total_valid_submissions": "valid_submission",
    "total_medals": "any_medal",
    "total_gold_medals": "gold_medal",
    "total_silver_medals": "silver_medal",
    "total_bronze_medals": "bronze_medal",
    "total_above_median": "above_median",
}


def hard_timeout(time_limit: float) -> float:
    """A run's wall time (over all its resumes) after which it is stopped and graded as it stands:
    mlestar plans to finish within its time limit, so only a small grace on top."""
    return time_limit + max(300.0, 0.05 * time_limit)


@dataclass
class SplitPlan:
    """Which split to run, from which checkout, on which data."""

    checkout: Path
    data: Path
    split: str = "lite"

    def as_dict(self, plan: BenchPlan) -> dict[str, Any]:
        return {
            "mlebench": str(self.checkout),
            "data": str(self.data),
            "split": self.split,
            "time_limit": plan.time_limit,
            "seeds": plan.seeds,
            "llm": plan.llm,
            "config": str(plan.config) if plan.config else None,
        }


@dataclass
class SplitResult:
    """What a bench over a split leaves: every run, the table, and the report written to OUT."""

    results: list[SeedResult]
    rows: list[CompetitionRow]
    report: dict[str, Any]
    missing: dict[str, str] = field(default_factory=dict)


def _data_folder(data: Path) -> Path:
    folder = Path(data).expanduser()
    if not folder.is_dir():
        prepare = f"mlebench prepare --lite --data-dir {data}"
        raise MlestarError(f"MLE-bench data folder not found: {data} (prepare it with: {prepare})")
    return folder.resolve()


def _medal(report: dict[str, Any]) -> str | None:
    if report.get("any_medal") is None:
        return None
    return next((m for m in MEDALS if report.get(f"{m}_medal")), "none")


def prepare_command(checkout: Checkout, split: str, data: Path) -> str:
    """The ``mlebench prepare`` command that lays out a split's data in ``data``."""
    listed = checkout.split_file(split)
    which = "--lite" if split == "lite" else "--all" if listed is None else f"-l {listed}"
    return f"mlebench prepare {which} --data-dir {data}"


def grader_hook(checkout: Checkout) -> Callable[[SeedResult, Path, Path], SeedResult]:
    """The suite runner's grading step, done by the competition's own MLE-bench grader."""

    def grade_run(result: SeedResult, competition: Path, run_dir: Path) -> SeedResult:
        summary = _read_summary(run_dir)
        llm = summary.get("llm") if isinstance(summary.get("llm"), dict) else {}
        result.cost_usd = float(llm.get("cost_usd") or 0.0)
        submission = run_dir / "submission.csv"
        result.submission = str(submission) if submission.is_file() else ""
        answers = data_file(competition, checkout.config(result.competition).answers)
        try:
            report = grade(checkout, result.competition, submission, answers)
        except MlestarError as exc:  # the grader's side (a missing package): the run is not graded
            result.report, result.score, result.valid = {}, None, False
            result.medal = result.above_median = None
            result.reason = f"not graded: {exc}"
            return result
        result.report = report.model_dump()
        result.score, result.valid = report.score, report.valid_submission
        result.medal, result.above_median = _medal(result.report), report.above_median
        if report.is_lower_better is not None:
            result.lower_is_better = report.is_lower_better
        if report.valid_submission:
            result.reason = ""
        elif report.submission_exists or not result.reason:
            result.reason = report.reason
        return result

    return grade_run


def _needs_grading(result: SeedResult) -> bool:
    """A finished run is graded again when its grader could not run or its medals were unknown."""
    return not result.report or bool(result.report.get("medals_unknown"))


def run_split(
    split: SplitPlan,
    plan: BenchPlan,
    out: Path,
    only: Iterable[str] | None = None,
    runner: Runner = subprocess_runner,
    progress: Callable[[SeedResult, bool], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> SplitResult:
    """Run and grade every (competition with data, seed) of the split not already done; save after each.

    ``progress(result, skipped)`` is called once per (competition, seed); ``notice(line)`` once per
    competition whose data is missing, before anything runs."""
    if plan.seeds < 1:
        raise MlestarError("--seeds must be at least 1")
    if plan.time_limit <= 0:
        raise MlestarError("--time-limit must be a positive number of seconds")
    if plan.config is not None and not Path(plan.config).is_file():
        raise MlestarError(f"config file not found: {plan.config}")
    checkout = Checkout(split.checkout)
    ids = checkout.split(split.split)
    wanted = [name for name in (only or []) if name]
    if wanted:
        unknown = sorted(set(wanted) - set(ids))
        if unknown:
            raise MlestarError(f"not a competition of split '{split.split}': {', '.join(unknown)}")
        ids = [i for i in ids if i in wanted]
    data = _data_folder(split.data)
    missing = {i: why for i in ids if (why := missing_data(checkout, i, data / i))}
    present = [i for i in ids if i not in missing]
    for competition, why in missing.items():
        if notice:
            notice(f"missing data: {competition}: {why}")
    if not present:
        raise MlestarError(
            f"none of the {len(ids)} competitions of split '{split.split}' has prepared data in {data} "
            f"(run: {prepare_command(checkout, split.split, data)})"
        )
    out = Path(out).resolve()
    meta = split.as_dict(plan)
    hook = grader_hook(checkout)
    known = {(r.competition, r.seed): r for r in load_results(out)}
    order = [(c, seed) for c in present for seed in range(plan.seeds)]
    extra = [r for key, r in known.items() if key not in set(order)]

    def current() -> list[SeedResult]:
        return [known[key] for key in order if key in known] + extra

    def save() -> SplitResult:
        results = current()
        rows = save_results(results, out, meta)
        ours = [r for r in results if (r.competition, r.seed) in set(order)]
        report = build_report(split, plan, ours, present, missing, checkout)
        write_report(report, out)
        return SplitResult(results, [r for r in rows if r.competition in present], report, missing)

    outcome = save()
    limit = plan.timeout or hard_timeout(plan.time_limit)
    for competition, seed in order:
        previous = known.get((competition, seed))
        folder = data / competition
        if previous is not None and not previous.complete and previous.wall_s >= limit:
            previous.complete = True  # its time is spent: graded as it stands, never resumed
        if previous is not None and previous.complete and not _needs_grading(previous):
            if progress:
                progress(previous, True)
            continue
        if previous is not None and previous.complete:
            result = hook(previous, folder, out / "runs" / previous.run_id)
        else:
            # A resumed run gets what is left of its time, so no run has more than MLE-bench allows.
            spent = previous.wall_s if previous is not None else 0.0
            result = run_one(
                folder,
                seed,
                out,
                replace(plan, timeout=limit - spent),
                previous=previous,
                runner=runner,
                grade=hook,
            )
            if not result.report and not result.reason.startswith("not graded"):
                # mlestar could not read the competition: no run, but still MLE-bench's report (invalid).
                result = hook(result, folder, out / "runs" / result.run_id)
            if result.wall_s >= limit:
                result.complete = True
        known[(competition, seed)] = result
        outcome = save()
        if progress:
            progress(result, False)
    return outcome


# ---------------------------------------------------------------------------------------------
# The report


def _percent(values: list[bool]) -> float:
    return 100.0 * sum(values) / len(values)


def headline(results: list[SeedResult], seeds: int) -> dict[str, dict[str, Any]]:
    """Per figure: the percentage of graded competitions per seed, their mean and standard error."""
    figures: dict[str, dict[str, Any]] = {}
    for name in HEADLINE:
        per_seed: list[float] = []
        competitions: set[str] = set()
        runs = 0
        for seed in range(seeds):
            values = [
                bool(r.report[name])
                for r in results
                if r.seed == seed and r.report and r.report.get(name) is not None
            ]
            competitions |= {
                r.competition
                for r in results
                if r.seed == seed and r.report and r.report.get(name) is not None
            }
            runs += len(values)
            if values:
                per_seed.append(_percent(values))
        mean, stderr = mean_and_stderr(per_seed)
        figures[name] = {
            "mean": mean,
            "stderr": stderr,
            "per_seed": per_seed,
            "competitions": len(competitions),
            "runs": runs,
        }
    return figures


def seed_totals(results: list[SeedResult], seeds: int) -> list[dict[str, Any]]:
    """MLE-bench's grading-report counts, one entry per seed."""
    totals = []
    for seed in range(seeds):
        reports = [r.report for r in results if r.seed == seed and r.report]
        entry: dict[str, Any] = {"seed": seed, "total_runs": len(reports)}
        for label, key in TOTALS.items():
            entry[label] = sum(bool(report.get(key)) for report in reports)
        totals.append(entry)
    return totals


def build_report(
    split: SplitPlan,
    plan: BenchPlan,
    results: list[SeedResult],
    present: list[str],
    missing: dict[str, str],
    checkout: Checkout,
) -> dict[str, Any]:
    graded = [r for r in results if r.report]
    unknown = {r.competition: r.report["medals_unknown"] for r in graded if r.report.get("medals_unknown")}
    return {
        "split": split.split,
        "checkout": str(checkout.root),
        "data": str(Path(split.data).expanduser().resolve()),
        "seeds": plan.seeds,
        "time_limit_s": plan.time_limit,
        "llm": plan.llm,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "competitions": {
            "in_split": len(present) + len(missing),
            "with_data": len(present),
            "missing_data": len(missing),
        },
        "headline": headline(graded, plan.seeds),
        "missing_data": [{"competition_id": c, "reason": why} for c, why in missing.items()],
        "medals_unknown": [{"competition_id": c, "reason": why} for c, why in unknown.items()],
        "not_graded": [
            {"competition_id": r.competition, "seed": r.seed, "reason": r.reason}
            for r in results
            if not r.report
        ],
        "incomplete": [
            {"competition_id": r.competition, "seed": r.seed, "reason": r.reason}
            for r in results
            if not r.complete
        ],
        "seed_totals": seed_totals(graded, plan.seeds),
        "competition_reports": [
            {
                **r.report,
                "seed": r.seed,
                "run_id": r.run_id,
                "run_status": r.run_status,
                "wall_s": round(r.wall_s, 1),
                "cost_usd": r.cost_usd,
            }
            for r in graded
        ],
    }


def write_report(report: dict[str, Any], out: Path) -> None:
    """``mlebench_report.json`` (written atomically) and ``mlebench_report.csv`` (one row per run)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (REPORT_JSON + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(out / REPORT_JSON)
    rows = report["competition_reports"]
    columns = list(dict.fromkeys(key for row in rows for key in row)) or ["competition_id", "seed"]
    with open(out / REPORT_CSV, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def headline_lines(report: dict[str, Any]) -> list[str]:
    """The headline figures as text: ``any medal: 31.8% ± 2.1 (22 competitions, 3 seeds)``."""
    lines = []
    for name, figure in report["headline"].items():
        if figure["mean"] is None:
            lines.append(f"{name.replace('_', ' ')}: -")
            continue
        se = "" if figure["stderr"] is None else f" ± {figure['stderr']:.1f}"
        seeds, competitions = len(figure["per_seed"]), figure["competitions"]
        lines.append(
            f"{name.replace('_', ' ')}: {figure['mean']:.1f}%{se} ({competitions} "
            f"competition{'s' * (competitions != 1)}, {seeds} seed{'s' * (seeds != 1)})"
        )
    return lines


def report_payload(outcome: SplitResult, out: Path) -> dict[str, Any]:
    return {**outcome.report, "table": [asdict(r) for r in outcome.rows], "out": str(Path(out).resolve())}
