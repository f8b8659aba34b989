"""CLI commands: bench (run mlestar over a suite of competitions and seeds, graded, with medals)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


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
) -> None:
    """Run mlestar on every competition of SUITE for each seed, grade on private answers, tabulate.

    Resumable: complete runs already in OUT/bench.json are kept; stopped or crashed runs are resumed.
    """
    from mlestar.bench.suite import BenchPlan, SeedResult, rich_table, run_suite, score_text

    settings = BenchPlan(time_limit=time_limit, seeds=seeds, llm=llm, config=config)

    def progress(result: SeedResult, skipped: bool) -> None:
        shown = f"{result.score:.6g}" if result.valid and result.score is not None else f"no score ({result.reason})"
        note = "already done" if skipped else f"{result.wall_s:,.0f}s"
        err_console.print(
            f"{result.competition} seed {result.seed}: {result.metric or '?'} {shown} [{note}]",
            highlight=False, soft_wrap=True,
        )

    names = [name.strip() for name in only.split(",") if name.strip()]
    results, rows = run_suite(suite, settings, out, only=names, progress=progress)
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


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("bench")(bench_command)
