"""CLI command: ``predict`` (a run's final solution applied to new rows)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from mlestar.commands.options import with_settings

console = Console(soft_wrap=True)  # paths and URLs stay whole when the output is piped


@with_settings("storage")
def predict_command(
    run_id: Annotated[str, typer.Argument(help="run id (or unique prefix) or run folder")],
    rows: Annotated[
        Path, typer.Option("--input", "-i", help="new rows: CSV, TSV or parquet with the test file's columns")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="where to write the predictions (CSV)")],
    *,
    overrides: dict[str, Any],
) -> None:
    """Predict new rows with a run's final solution, in the submission's format."""
    from mlestar.pipeline.predict import predict
    from mlestar.settings import Settings

    result = predict(run_id, rows, output, runs_dir=Settings.load(**overrides).runs_dir)
    how = "with the final run's models" if result.loaded_models else "after training the final script again"
    console.print(f"wrote {result.rows} predictions to {result.output} ({how}, {result.wall_s:.1f}s)")
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_command)
