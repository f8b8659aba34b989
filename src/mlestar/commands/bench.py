"""CLI commands: bench (run mlestar over a suite of competitions and seeds, graded, with medals), and
bench --mlebench (over an MLE-bench split, graded by MLE-bench's own graders)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from mlestar.commands.options import with_settings

if TYPE_CHECKING:
    from mlestar.bench.suite import SeedResult

console = Console()
if not console.is_terminal:  # piped or captured output gets room for the table
    console = Console(width=160)
err_console = Console(stderr=True)


@with_settings("cluster")
def bench_command(
    suite: Annotated[
        Path | None, typer.Argument(help="folder of competition folders (not with --mlebench)")
    ] = None,
    time_limit: Annotated[
        float | None,
        typer.Option(
            "--time-limit",
            help="wall-clock budget per run, in seconds (with --mlebench: 86400, MLE-bench's 24 hours)",
        ),
    ] = None,
    llm: Annotated[
        str | None, typer.Option("--llm", help="provider:model; omit for the offline expert")
    ] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="runs per competition, with seeds 0..N-1")] = 1,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="output folder (bench.json, bench.csv, runs/); "
            "default .bench/results, or .bench/mlebench-SPLIT",
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML config file passed to each run")
    ] = None,
    only: Annotated[
        str, typer.Option("--only", help="comma-separated competition names (default: all)")
    ] = "",
    mlebench: Annotated[
        Path | None,
        typer.Option("--mlebench", help="an MLE-bench checkout: run a split, graded by its own graders"),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="with --mlebench: the folder `mlebench prepare` filled (<id>/prepared)"),
    ] = None,
    split: Annotated[
        str,
        typer.Option("--split", help="with --mlebench: lite, all, low, medium, high, or a file of ids"),
    ] = "lite",
    as_json: Annotated[
        bool, typer.Option("--json", help="print the results as JSON instead of a table")
    ] = False,
    *,
    overrides: dict[str, Any],
) -> None:
    """Run mlestar on every competition of SUITE (or of an MLE-bench split) for each seed, grade, tabulate.

    Resumable: complete runs already in OUT/bench.json are kept; stopped or crashed runs are resumed.
    With --executor ray, every run is a Ray task on the cluster, as many at once as it holds.
    """
    from mlestar.errors import ConfigError

    names = [name.strip() for name in only.split(",") if name.strip()]
    if mlebench is not None:
        if suite is not None:
            raise ConfigError("pass either a SUITE folder or --mlebench CHECKOUT, not both")
        if data is None:
            raise ConfigError("--mlebench needs --data DIR, where `mlebench prepare --data-dir DIR` wrote")
        _bench_mlebench(mlebench, data, split, time_limit, llm, seeds, out, config, names, as_json)
        return
    if data is not None:
        raise ConfigError("--data belongs to --mlebench CHECKOUT")
    if suite is None:
        raise ConfigError("pass a SUITE folder of competitions (or --mlebench CHECKOUT --data DIR)")
    if time_limit is None:
        raise ConfigError("--time-limit is required: the wall-clock budget of each run, in seconds")
    _bench_suite(
        suite, time_limit, llm, seeds, out or Path(".bench/results"), config, names, as_json, overrides
    )


def _progress(result: SeedResult, skipped: bool) -> None:
    valid = result.valid and result.score is not None
    shown = f"{result.score:.6g}" if valid else f"no score ({result.reason})"
    note = "already done" if skipped else f"{result.wall_s:,.0f}s"
    err_console.print(
        f"{result.competition} seed {result.seed}: {result.metric or '?'} {shown} [{note}]",
        highlight=False,
        soft_wrap=True,
        markup=False,  # "[already done]" is text, not markup
    )


def _bench_suite(
    suite: Path,
    time_limit: float,
    llm: str | None,
    seeds: int,
    out: Path,
    config: Path | None,
    names: list[str],
    as_json: bool,
    overrides: dict[str, Any],
) -> None:
    from mlestar.bench.suite import BenchPlan, rich_table, run_suite, score_text

    settings = BenchPlan(time_limit=time_limit, seeds=seeds, llm=llm, config=config)
    runner = _cluster_runner(suite, out, config, overrides)
    if runner is None:
        results, rows = run_suite(suite, settings, out, only=names, progress=_progress)
    else:
        for note in runner.notes:
            err_console.print(note, highlight=False, soft_wrap=True, markup=False)
        err_console.print(f"Ray: up to {runner.slots} runs at once, {runner.cpus} CPUs each", highlight=False)
        try:
            results, rows = run_suite(
                suite, settings, out, only=names, progress=_progress, runner=runner, parallel=runner.slots
            )
        except KeyboardInterrupt:
            err_console.print("stopping the runs on the cluster (they stay resumable)...")
            runner.cancel_all()
            raise typer.Exit(130) from None
        finally:
            runner.close()
    if as_json:
        shown = {r.competition for r in rows}
        payload = {
            "table": [{**asdict(r), "score_text": score_text(r)} for r in rows],
            "runs": [asdict(r) for r in results if r.competition in shown],
            "out": str(out.resolve()),
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    console.print(
        rich_table(
            rows,
            title=f"mlestar bench: {suite.name} ({seeds} seed{'s' * (seeds != 1)}, {time_limit:g}s each)",
        )
    )
    console.print(f"results in {out.resolve()} (bench.json, bench.csv)")


def _bench_mlebench(
    checkout: Path,
    data: Path,
    split: str,
    time_limit: float | None,
    llm: str | None,
    seeds: int,
    out: Path | None,
    config: Path | None,
    names: list[str],
    as_json: bool,
) -> None:
    from mlestar.bench import suite as suite_runner
    from mlestar.bench.mlebench import (
        MLEBENCH_TIME_LIMIT_S,
        REPORT_CSV,
        REPORT_JSON,
        SplitPlan,
        hard_timeout,
        headline_lines,
        report_payload,
        run_split,
    )
    from mlestar.bench.suite import BenchPlan, rich_table

    limit = time_limit if time_limit is not None else MLEBENCH_TIME_LIMIT_S
    plan = BenchPlan(time_limit=limit, seeds=seeds, llm=llm, config=config, timeout=hard_timeout(limit))
    out = out or Path(".bench") / f"mlebench-{Path(split).stem}"
    announced: set[str] = set()

    def progress(result: SeedResult, skipped: bool) -> None:
        _progress(result, skipped)
        note = result.report.get("medals_unknown") if result.report else ""
        if note and result.competition not in announced:
            announced.add(result.competition)
            err_console.print(f"warning: {note}", highlight=False, soft_wrap=True)

    def notice(line: str) -> None:
        err_console.print(line, highlight=False, soft_wrap=True)

    split_plan = SplitPlan(checkout=checkout, data=data, split=split)
    outcome = run_split(
        split_plan,
        plan,
        out,
        only=names,
        runner=suite_runner.subprocess_runner,
        progress=progress,
        notice=notice,
    )
    if as_json:
        typer.echo(json.dumps(report_payload(outcome, out), indent=2, default=str))
        return
    console.print(
        rich_table(
            outcome.rows,
            title=f"mlestar bench --mlebench: {split} ({seeds} seed{'s' * (seeds != 1)}, {limit:g}s each)",
        )
    )
    counts = outcome.report["competitions"]
    console.print(
        f"{counts['with_data']} of {counts['in_split']} competitions have prepared data; "
        "figures are over those:",
        highlight=False,
    )
    for line in headline_lines(outcome.report):
        console.print(f"  {line}", highlight=False)
    where = Path(out).resolve()
    console.print(f"report in {where / REPORT_JSON} ({REPORT_CSV}, bench.json, runs/)", highlight=False)


def _cluster_runner(suite: Path, out: Path, config: Path | None, overrides: dict[str, Any]) -> Any:
    """The Ray runner when ``--executor ray`` was asked for (None: runs go one by one, locally)."""
    from mlestar.settings import Settings

    chosen = Settings.load(config if config and config.is_file() else None, **overrides)
    if chosen.executor != "ray":
        return None
    from mlestar.bench.ray_runner import RayRunner

    out.mkdir(parents=True, exist_ok=True)
    shared = [out, suite] + ([config.resolve().parent] if config else [])
    return RayRunner(
        chosen.ray_address,
        workers=chosen.resolved_workers(),
        threads=chosen.resolved_threads(),
        shared=shared,
        retries=chosen.infra_retries,
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("bench")(bench_command)
