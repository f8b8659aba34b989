"""CLI commands: bench (run mlestar over a suite of competitions and seeds, graded, with medals)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from mlestar.commands.options import with_settings

console = Console()
err_console = Console(stderr=True)


@with_settings("cluster")
def bench_command(
    suite: Annotated[Path, typer.Argument(help="folder of competition folders")],
    time_limit: Annotated[float, typer.Option("--time-limit", help="wall-clock budget per run, in seconds")],
    llm: Annotated[str | None, typer.Option("--llm", help="provider:model; omit for the offline expert")] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="runs per competition, with seeds 0..N-1")] = 1,
    out: Annotated[Path, typer.Option("--out", help="output folder (bench.json, bench.csv, runs/)")] = Path(
        ".bench/results"
    ),
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file passed to each run")] = None,
    only: Annotated[str, typer.Option("--only", help="comma-separated competition names (default: all)")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON instead of a table")] = False,
    *,
    overrides: dict[str, Any],
) -> None:
    """Run mlestar on every competition of SUITE for each seed, grade on private answers, tabulate.

    Resumable: complete runs already in OUT/bench.json are kept; stopped or crashed runs are resumed.
    With --executor ray, every run is a Ray task on the cluster, as many at once as it holds.
    """
    from mlestar.bench.suite import BenchPlan, SeedResult, rich_table, run_suite, score_text

    settings = BenchPlan(time_limit=time_limit, seeds=seeds, llm=llm, config=config)

    def progress(result: SeedResult, skipped: bool) -> None:
        shown = f"{result.score:.6g}" if result.valid and result.score is not None else f"no score ({result.reason})"
        note = "already done" if skipped else f"{result.wall_s:,.0f}s"
        err_console.print(
            f"{result.competition} seed {result.seed}: {result.metric or '?'} {shown} [{note}]",
            highlight=False, soft_wrap=True, markup=False,  # "[already done]" is text, not markup
        )

    names = [name.strip() for name in only.split(",") if name.strip()]
    runner = _cluster_runner(suite, out, config, overrides)
    if runner is None:
        results, rows = run_suite(suite, settings, out, only=names, progress=progress)
    else:
        for note in runner.notes:
            err_console.print(note, highlight=False, soft_wrap=True, markup=False)
        err_console.print(f"Ray: up to {runner.slots} runs at once, {runner.cpus} CPUs each", highlight=False)
        try:
            results, rows = run_suite(
                suite, settings, out, only=names, progress=progress, runner=runner, parallel=runner.slots
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
    console.print(rich_table(rows, title=f"mlestar bench: {suite.name} ({seeds} seed{'s' * (seeds != 1)}, "
                                         f"{time_limit:g}s each)"))
    console.print(f"results in {out.resolve()} (bench.json, bench.csv)")


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
