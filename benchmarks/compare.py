"""Run mlestar and the baselines on every competition of a suite, at the same budget, and compare.

    python benchmarks/build_suite.py .bench/suite
    python benchmarks/compare.py .bench/suite --time-limit 300 --out .bench/compare
    python benchmarks/compare.py .bench/suite --time-limit 60 --tools plain,flaml --only penguins,credit
    python benchmarks/compare.py .bench/suite --time-limit 90 --tools mlestar,autogluon \
        --python autogluon=.bench/venv-autogluon/bin/python

``benchmarks/results.sh`` builds everything and runs the comparison shown in the README.

Each (competition, tool) runs in its own process: mlestar through its CLI
(``mlestar run COMPETITION --time-limit S --runs-dir OUT/runs``), the baselines through
``python benchmarks/baselines.py``. Submissions are graded on the private answers. The table
shows each tool's score and wall time, and for every baseline the ratio of mlestar's score to
the baseline's in the "better" direction: higher-is-better metrics give mlestar / baseline,
lower-is-better ones baseline / mlestar, so > 1 always means mlestar did better. A ratio is left
empty when it would mean nothing (a missing score, or a zero or negative score such as R² < 0).

Written under OUT: ``results.json`` and ``results.csv`` (one row per run, saved after each run),
``table.csv`` (one row per competition), ``table.md`` (the same as Markdown, headed by the machine,
budget, date and tool versions of ``meta.json``) and ``scores.png`` (normalized scores; needs
matplotlib). A comparison is resumable: runs already in OUT's ``results.json`` are kept and
not run again, and so are failed ones (a tool that ran out of time failed as measured; pass
``--retry-failed`` after installing a missing tool, ``--fresh`` to start over), so tools can be
added or a crashed comparison continued.

AutoGluon pins older pandas than mlestar's own environment; give it an interpreter of its own
with ``--python autogluon=PATH`` (the interpreter must have mlestar installed as well).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_TOOLS = ("mlestar", "plain", "autogluon", "flaml")
BASELINE_TOOLS = ("plain", "autogluon", "autogluon-best", "flaml")

HERE = Path(__file__).resolve().parent


@dataclass
class RunResult:
    competition: str
    tool: str
    metric: str
    lower_is_better: bool
    score: float | None = None
    valid: bool = False
    wall_s: float = 0.0
    error: str = ""  # why there is no score: tool failed, not installed, invalid submission
    submission: str = ""
    # mlestar only, from its run's summary.json: kept here so that results.json alone rebuilds the
    # budget-use table after the run folders are gone (a comparison continued on another checkout).
    budget_use: dict | None = None


# ---------------------------------------------------------------------------------------------
# Scores and ratios


def better_ratio(ours: float | None, theirs: float | None, lower_is_better: bool) -> float | None:
    """How much better ``ours`` is than ``theirs``: > 1 better, 1 equal, < 1 worse; None if meaningless."""
    if ours is None or theirs is None or not (math.isfinite(ours) and math.isfinite(theirs)):
        return None
    if ours == theirs:
        return 1.0
    if ours < 0 or theirs < 0:
        return None
    if lower_is_better:
        return math.inf if ours == 0 else theirs / ours
    return math.inf if theirs == 0 else ours / theirs


def build_table(results: list[RunResult], tools: list[str], reference: str = "mlestar") -> list[dict]:
    """One row per competition: score and time per tool, and the reference's ratio to each other tool."""
    by_comp: dict[str, dict[str, RunResult]] = {}
    for result in results:
        by_comp.setdefault(result.competition, {})[result.tool] = result
    rows = []
    for competition in sorted(by_comp):
        runs = by_comp[competition]
        first = next(iter(runs.values()))
        row: dict = {
            "competition": competition,
            "metric": first.metric,
            "direction": "lower" if first.lower_is_better else "higher",
        }
        for tool in tools:
            run = runs.get(tool)
            row[f"{tool}_score"] = run.score if run else None
            row[f"{tool}_time_s"] = round(run.wall_s, 1) if run else None
        if reference in tools:
            ours = runs.get(reference)
            for tool in tools:
                if tool != reference:
                    theirs = runs.get(tool)
                    row[f"{reference}_vs_{tool}"] = better_ratio(
                        ours.score if ours else None, theirs.score if theirs else None, first.lower_is_better
                    )
        rows.append(row)
    return rows


def normalized_scores(results: list[RunResult]) -> dict[str, dict[str, float | None]]:
    """Per competition, each tool's score as a ratio to the best tool's (1 = best, lower = worse)."""
    by_comp: dict[str, list[RunResult]] = {}
    for result in results:
        by_comp.setdefault(result.competition, []).append(result)
    out: dict[str, dict[str, float | None]] = {}
    for competition, runs in sorted(by_comp.items()):
        scored = [r.score for r in runs if r.score is not None and math.isfinite(r.score)]
        lower = runs[0].lower_is_better
        best = (min(scored) if lower else max(scored)) if scored else None
        out[competition] = {}
        for run in runs:
            ratio = better_ratio(run.score, best, lower)
            # better_ratio(run, best) is <= 1; inf only when best is 0 for a higher-is-better metric.
            out[competition][run.tool] = ratio if ratio is None or math.isfinite(ratio) else None
    return out


# ---------------------------------------------------------------------------------------------
# Running the tools


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _run_mlestar(competition: Path, time_limit: float, out: Path, timeout: float) -> tuple[Path | None, str]:
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in runs_dir.iterdir()}
    started = time.time()
    command = [
        sys.executable, "-m", "mlestar", "run", str(competition),
        "--time-limit", str(int(time_limit)), "--runs-dir", str(runs_dir),
    ]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"mlestar not available: no result within {timeout:.0f}s"
    if proc.returncode != 0:
        return None, f"mlestar not available: exit {proc.returncode}: {_last_line(proc.stderr or proc.stdout)}"
    fresh = [p for p in runs_dir.iterdir() if p.is_dir() and (p.name not in before or p.stat().st_mtime >= started)]
    candidates = sorted(
        (s for run in fresh for s in [run / "submission.csv", *run.glob("*/submission.csv")] if s.is_file()),
        key=lambda s: s.stat().st_mtime,
    )
    if not candidates:
        return None, f"mlestar not available: the run left no submission.csv under {runs_dir}"
    return candidates[-1], ""


def _run_baseline(
    tool: str, competition: Path, time_limit: float, out: Path, timeout: float, python: str
) -> tuple[Path | None, str]:
    command = [
        python, str(HERE / "baselines.py"), tool, str(competition),
        "--time-limit", str(time_limit), "--out", str(out),
    ]
    out.mkdir(parents=True, exist_ok=True)
    try:
        # In its own folder: some learners (FLAML's CatBoost) leave training logs in the current one.
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=out)
    except subprocess.TimeoutExpired:
        return None, f"no result within {timeout:.0f}s"
    submission = out / "submission.csv"
    if proc.returncode != 0 or not submission.is_file():
        message = _last_line(proc.stderr or proc.stdout).removeprefix("error: ")
        return None, message or f"exit {proc.returncode}"
    return submission, ""


def run_one(tool: str, competition: Path, time_limit: float, out: Path, python: str | None = None) -> RunResult:
    from mlestar.grading import grade_submission
    from mlestar.task.intake import load_task

    task = load_task(competition)
    result = RunResult(competition.name, tool, task.metric, task.lower_is_better)
    # The tools are asked to respect the budget; the hard stop leaves room for start-up and final fits.
    timeout = time_limit * 2 + 300
    started = time.monotonic()
    if tool == "mlestar":
        submission, error = _run_mlestar(competition, time_limit, out, timeout)
    else:
        submission, error = _run_baseline(
            tool, competition, time_limit, out / competition.name / tool, timeout, python or sys.executable
        )
    result.wall_s = time.monotonic() - started
    if submission is None:
        result.error = error
        return result
    result.submission = str(submission)
    sample = task.data_path(task.sample_submission_file) if task.sample_submission_file else None
    grade = grade_submission(
        submission, task.answers_file, metric=task.metric, sample_path=sample, id_column=task.id_column
    )
    result.score, result.valid, result.error = grade.score, grade.valid, grade.reason
    return result


def competitions_in(suite: Path, only: list[str] | None = None) -> list[Path]:
    found = sorted(p for p in suite.iterdir() if p.is_dir() and (p / "private").is_dir())
    if only:
        unknown = set(only) - {p.name for p in found}
        if unknown:
            raise SystemExit(f"error: not in {suite}: {', '.join(sorted(unknown))}")
        found = [p for p in found if p.name in only]
    return found


# ---------------------------------------------------------------------------------------------
# Output


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return f"{value:.4g}"
    return str(value)


def format_table(rows: list[dict], tools: list[str], reference: str = "mlestar") -> str:
    """A plain-text table: score (wall seconds) per tool, then the reference's ratio to each tool."""
    header = ["competition", "metric", *tools]
    others = [t for t in tools if t != reference] if reference in tools else []
    header += [f"{reference}/{t}" for t in others]
    lines = [header]
    for row in rows:
        cells = [row["competition"], f"{row['metric']} ({'min' if row['direction'] == 'lower' else 'max'})"]
        for tool in tools:
            score, seconds = row.get(f"{tool}_score"), row.get(f"{tool}_time_s")
            cells.append("-" if score is None else f"{_fmt(score)} ({seconds:.0f}s)")
        cells += [_fmt(row.get(f"{reference}_vs_{t}")) for t in others]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def print_table(rows: list[dict], results: list[RunResult], tools: list[str]) -> None:
    if not rows:
        return
    print()
    print(format_table(rows, tools))
    if "mlestar" in tools:
        print("(mlestar ratios: > 1 means mlestar scored better than that tool, in the metric's direction)")
    failures = [r for r in results if r.error]
    for result in failures:
        print(f"note: {result.competition} / {result.tool}: {result.error}")


def save(results: list[RunResult], tools: list[str], out: Path) -> list[dict]:
    import csv

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n", encoding="utf-8")
    fields = list(RunResult.__dataclass_fields__)
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(asdict(r) for r in results)
    rows = build_table(results, tools)
    if rows:
        with open(out / "table.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return rows


def plot(results: list[RunResult], tools: list[str], path: Path) -> Path | None:
    """Grouped bars of normalized scores (1 = best tool on that competition); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    norm = normalized_scores(results)
    competitions = list(norm)
    if not competitions:
        return None
    width = 0.8 / max(1, len(tools))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(competitions) + 2), 4.5))
    for i, tool in enumerate(tools):
        values = [norm[c].get(tool) for c in competitions]
        xs = [j + i * width for j in range(len(competitions))]
        ax.bar(xs, [v if v is not None else 0.0 for v in values], width, label=tool)
    ax.set_xticks([j + width * (len(tools) - 1) / 2 for j in range(len(competitions))])
    ax.set_xticklabels(competitions, rotation=30, ha="right")
    ax.set_ylabel("score / best score (better direction)")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    ax.set_title("Normalized scores (1 = best tool on the competition)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# Provenance: what the figures were measured on


_PACKAGES = {
    "mlestar": "mlestar",
    "plain": "scikit-learn",
    "autogluon": "autogluon.tabular",
    "autogluon-best": "autogluon.tabular",
    "flaml": "flaml",
}


def _package_version(python: str, package: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    return proc.stdout.strip() if proc.returncode == 0 else "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_meta(time_limit: float, tools: list[str], pythons: dict[str, str]) -> dict:
    """Machine, budget, date and tool versions, stated with the table so the figures can be judged."""
    import psutil

    return {
        "date": dt.date.today().isoformat(),
        "time_limit_s": time_limit,
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30),
        "gpu": "none used",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": tool_versions(tools, pythons),
    }


def tool_versions(tools: list[str], pythons: dict[str, str]) -> dict[str, str]:
    return {tool: _package_version(pythons.get(tool, sys.executable), _PACKAGES[tool]) for tool in tools}


def _versus(ratio: float) -> int:
    """1 win, -1 loss, 0 tie: a ratio that shows as 1.000 at three decimals is a tie."""
    shown = round(ratio, 3) if math.isfinite(ratio) else ratio
    return (shown > 1) - (shown < 1)


def format_markdown(rows: list[dict], tools: list[str], meta: dict, reference: str = "mlestar") -> str:
    """The comparison as a Markdown table with its provenance and a win/loss summary per baseline."""
    others = [t for t in tools if t != reference] if reference in tools else []
    versions = ", ".join(f"{t} {v}" for t, v in meta.get("versions", {}).items())
    lines = [
        f"Measured {meta.get('date', '?')} on {meta.get('cpu', '?')} ({meta.get('cores', '?')} cores, "
        f"{meta.get('memory_gib', '?')} GiB, no GPU), {meta.get('time_limit_s', 0):g} s per tool and competition, "
        f"one seed. Versions: {versions}.",
        "",
        "| competition | metric | " + " | ".join(tools) + "".join(f" | {reference}/{t}" for t in others) + " |",
        "|---|---|" + "---|" * (len(tools) + len(others)),
    ]
    for row in rows:
        arrow = "↓" if row["direction"] == "lower" else "↑"
        cells = [row["competition"], f"{row['metric']} {arrow}"]
        for tool in tools:
            score, seconds = row.get(f"{tool}_score"), row.get(f"{tool}_time_s")
            cells.append("failed" if score is None else f"{score:.4g} ({seconds:.0f} s)")
        for tool in others:
            ratio = row.get(f"{reference}_vs_{tool}")
            shown = "-" if ratio is None else f"{ratio:.3f}"
            cells.append(f"**{shown}**" if ratio is not None and _versus(ratio) > 0 else shown)
        lines.append("| " + " | ".join(cells) + " |")
    if others:
        lines.append("")
        for tool in others:
            ratios = [row[f"{reference}_vs_{tool}"] for row in rows if row.get(f"{reference}_vs_{tool}") is not None]
            finite = [r for r in ratios if math.isfinite(r) and r > 0]
            wins = sum(_versus(r) > 0 for r in ratios)
            losses = sum(_versus(r) < 0 for r in ratios)
            geo = math.exp(sum(math.log(r) for r in finite) / len(finite)) if finite else None
            lines.append(
                f"- {reference} vs {tool}: better on {wins}, worse on {losses}, tied on {len(ratios) - wins - losses}"
                + (f"; geometric mean ratio {geo:.3f}" if geo is not None else "")
            )
    return "\n".join(lines) + "\n"


PHASES = ("phase1", "phase2", "phase3", "phase4")


def run_summary(result: RunResult) -> dict | None:
    """The ``summary.json`` of the mlestar run behind ``result`` (beside its submission), if any."""
    if result.tool != "mlestar" or not result.submission:
        return None
    submission = Path(result.submission)
    for folder in (submission.parent, submission.parent.parent):
        path = folder / "summary.json"
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                return None
    return None


def budget_use_of(summary: dict) -> dict:
    """What the budget-use table shows of a run's summary."""
    used = summary.get("time_used") or {}
    by_phase = summary.get("scores_by_phase") or {}
    final = summary.get("final_evaluation") or {}
    return {
        "time_spent_s": used.get("time_spent_s"),
        "time_limit_s": used.get("time_limit_s"),
        "share": used.get("share"),
        "ended_because": used.get("ended_because", ""),
        "loops": used.get("loops") or {},
        "scripts": {phase: (by_phase.get(phase) or {}).get("scripts", 0) for phase in PHASES},
        "seeds": final.get("seeds"),
        "mean": final.get("mean"),
        "ci95": final.get("ci95"),
    }


def fill_budget_use(results: list[RunResult]) -> None:
    """Give every mlestar result whose run folder still holds its summary its budget use."""
    for result in results:
        if result.budget_use is None and (summary := run_summary(result)) is not None:
            result.budget_use = budget_use_of(summary)


def budget_use_rows(results: list[RunResult]) -> list[dict]:
    """Per mlestar run: the share of its time limit it used, why it ended, the scripts each phase
    ran, and its multi-seed final evaluation (as its own summary recorded them)."""
    fill_budget_use(results)
    return [
        {"competition": r.competition, **r.budget_use}
        for r in sorted(results, key=lambda r: r.competition)
        if r.tool == "mlestar" and r.budget_use
    ]


def format_budget_use(rows: list[dict]) -> str:
    """The budget-use rows as Markdown, with a line on how many runs used >= 90% and ran every phase."""
    if not rows:
        return ""
    lines = [
        "| competition | time used | scripts per phase (1 / 2 / 3 / 4) | ended because | final evaluation |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        share = row["share"]
        used = f"{row['time_spent_s']:.0f} s of {row['time_limit_s']:g} ({share:.0%})" if share is not None else "-"
        scripts = " / ".join(str(row["scripts"][phase]) for phase in PHASES)
        ci = row["ci95"]
        final = (
            f"{row['seeds']} seeds, mean {row['mean']:.4g}, 95% CI [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else "none"
        )
        lines.append(f"| {row['competition']} | {used} | {scripts} | {row['ended_because']} | {final} |")
    full = sum(row["share"] is not None and row["share"] >= 0.9 for row in rows)
    every_phase = sum(all(row["scripts"][phase] > 0 for phase in PHASES) for row in rows)
    with_ci = sum(row["ci95"] is not None for row in rows)
    lines += [
        "",
        f"- mlestar runs: {full} of {len(rows)} used >= 90% of the time limit; {every_phase} of {len(rows)} "
        f"ran all four phases; {with_ci} of {len(rows)} carry a 95% interval",
    ]
    return "\n".join(lines) + "\n"


def load_previous(out: Path, retry_failed: bool = False) -> list[RunResult]:
    """Runs of an earlier comparison in OUT: kept as measured, failures too unless they are to be retried."""
    path = out / "results.json"
    if not path.is_file():
        return []
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SystemExit(f"error: {path} is not valid JSON ({exc}); move it away or pass --fresh")
    fields = set(RunResult.__dataclass_fields__)
    results = [RunResult(**{k: v for k, v in r.items() if k in fields}) for r in records]
    return [r for r in results if r.score is not None or not retry_failed]


def parse_pythons(values: list[str]) -> dict[str, str]:
    pythons: dict[str, str] = {}
    for value in values:
        tool, sep, path = value.partition("=")
        if not sep or tool not in BASELINE_TOOLS or not path:
            raise SystemExit(f"error: --python takes TOOL=PATH with TOOL one of {', '.join(BASELINE_TOOLS)}; got {value!r}")
        if not Path(path).is_file():
            raise SystemExit(f"error: --python {tool}: no interpreter at {path}")
        pythons[tool] = os.path.abspath(path)  # not resolve(): a venv's python is a symlink that must stay one
    # best_quality is the same package as medium_quality; one interpreter serves both.
    if "autogluon" in pythons and "autogluon-best" not in pythons:
        pythons["autogluon-best"] = pythons["autogluon"]
    return pythons


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", type=Path, help="folder of competition folders (benchmarks/build_suite.py DEST)")
    parser.add_argument("--time-limit", type=float, required=True, help="seconds per tool and competition")
    parser.add_argument("--tools", default=",".join(DEFAULT_TOOLS), help=f"comma-separated, from: mlestar, {', '.join(BASELINE_TOOLS)}")
    parser.add_argument("--out", type=Path, default=Path(".bench/compare"), help="output folder")
    parser.add_argument("--only", default="", help="comma-separated competition names (default: all)")
    parser.add_argument("--python", action="append", default=[], metavar="TOOL=PATH", help="interpreter for a baseline")
    parser.add_argument("--fresh", action="store_true", help="ignore the results already in OUT")
    parser.add_argument("--retry-failed", action="store_true", help="run again the runs in OUT that failed")
    args = parser.parse_args(argv)

    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in tools if t != "mlestar" and t not in BASELINE_TOOLS]
    if unknown:
        print(f"error: unknown tools: {', '.join(unknown)}", file=sys.stderr)
        return 2
    if not args.suite.is_dir():
        print(f"error: {args.suite} is not a folder; build it with benchmarks/build_suite.py", file=sys.stderr)
        return 2
    pythons = parse_pythons(args.python)
    competitions = competitions_in(args.suite, [n for n in args.only.split(",") if n])
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    previous = [] if args.fresh else load_previous(out, retry_failed=args.retry_failed)
    fill_budget_use(previous)  # runs recorded before results kept their budget use
    meta_path = out / "meta.json"
    if previous and meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("time_limit_s") != args.time_limit:
            raise SystemExit(
                f"error: {out} holds runs at {meta.get('time_limit_s')} s, not {args.time_limit:g} s; "
                "use another --out or pass --fresh"
            )
        meta.setdefault("versions", {}).update(tool_versions(tools, pythons))
    else:
        meta = machine_meta(args.time_limit, tools, pythons)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    done = {(r.competition, r.tool) for r in previous}
    results: list[RunResult] = list(previous)
    for competition in competitions:
        for tool in tools:
            if (competition.name, tool) in done:
                continue
            result = run_one(tool, competition.resolve(), args.time_limit, out, pythons.get(tool))
            fill_budget_use([result])
            results.append(result)
            shown = _fmt(result.score) if result.score is not None else f"no score ({result.error})"
            print(f"{competition.name:14s} {tool:14s} {result.wall_s:7.1f}s  {result.metric}: {shown}", flush=True)
            save(results, tools, out)  # after every run, so an interrupted comparison keeps its results

    names = {c.name for c in competitions}
    shown_results = [r for r in results if r.competition in names and r.tool in tools]
    rows = save(results, tools, out)
    rows = [row for row in rows if row["competition"] in names]
    print_table(rows, shown_results, tools)
    use = format_budget_use(budget_use_rows(shown_results))
    markdown = format_markdown(rows, tools, meta) + (f"\nHow each mlestar run used its budget:\n\n{use}" if use else "")
    (out / "table.md").write_text(markdown, encoding="utf-8")
    png = plot(shown_results, tools, out / "scores.png")
    print(f"results in {out}" + (f" (plot: {png.name})" if png else " (no plot: matplotlib not installed)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
