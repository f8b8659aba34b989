"""CLI commands: ``profile`` (what mlestar understands of a competition) and ``grade``."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from mlestar.core.task import Task
    from mlestar.grading import GradeResult


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("profile")(profile_command)
    app.command("grade")(grade_command)


def profile_command(
    path: Annotated[
        Path, typer.Argument(help="Competition folder (plain, MLE-bench prepared, or its public/).")
    ],
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the Task as JSON and nothing else.")
    ] = False,
    metric: Annotated[
        str | None, typer.Option("--metric", help="Metric to use instead of the detected one.")
    ] = None,
    target: Annotated[str | None, typer.Option("--target", help="Target column(s), comma-separated.")] = None,
    id_column: Annotated[str | None, typer.Option("--id", help="Id column of the submission.")] = None,
) -> None:
    """Profile a competition: files, columns, target, task type, metric and submission format."""
    from mlestar.task.intake import load_task

    task = load_task(path, metric=metric, target=target, id_column=id_column)
    if json_out:
        sys.stdout.write(task.model_dump_json(indent=2) + "\n")
        return
    _print_task(_console(), task)


def grade_command(
    submission: Annotated[Path, typer.Argument(help="The submission file (CSV or parquet).")],
    answers: Annotated[
        Path | None, typer.Option("--answers", help="Private answers file (needs --metric).")
    ] = None,
    competition: Annotated[
        Path | None,
        typer.Option("--competition", help="Competition folder: its private answers, sample and metric."),
    ] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", help="Metric name (overrides the competition's).")
    ] = None,
    id_column: Annotated[
        str | None, typer.Option("--id", help="Id column aligning submission and answers.")
    ] = None,
    leaderboard: Annotated[
        Path | None,
        typer.Option("--leaderboard", help="Kaggle leaderboard CSV: also report MLE-bench medals."),
    ] = None,
    mlebench: Annotated[
        Path | None,
        typer.Option(
            "--mlebench",
            help="An MLE-bench checkout: grade with the competition's own grade.py (and its leaderboard.csv).",
        ),
    ] = None,
    competition_id: Annotated[
        str | None,
        typer.Option("--competition-id", help="MLE-bench competition id (default: the competition's name)."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Score a submission; an invalid one prints its reason and exits with status 1.

    With a leaderboard the report follows MLE-bench: the direction comes from the leaderboard's
    order, medals from Kaggle's thresholds for its size, and --json uses MLE-bench's field names.
    """
    from mlestar.errors import ConfigError, InvalidSubmission, MetricError, TaskError
    from mlestar.grading import grade_competition, grade_submission

    if answers is not None and competition is not None:
        raise ConfigError("pass either --answers or --competition, not both")
    if leaderboard is not None and not leaderboard.is_file():
        raise TaskError(f"leaderboard file not found: {leaderboard}")
    if mlebench is not None and competition is None:
        raise ConfigError("--mlebench grades a competition folder: pass --competition DIR as well")
    name = competition_id
    if mlebench is not None:
        from mlestar.grading.mlebench import competition_folder, grade_with, load_grader
        from mlestar.task.intake import load_task

        task = load_task(competition, metric=metric, id_column=id_column)  # type: ignore[arg-type]
        name = competition_id or task.name
        if task.answers_file is None:
            raise TaskError(f"no private answers found for {task.name} (expected prepared/private/test.csv)")
        grader = load_grader(mlebench, name)
        result = grade_with(grader, submission, task.answers_file, metric=task.metric,
                            lower_is_better=task.lower_is_better)
        own_board = competition_folder(mlebench, name) / "leaderboard.csv"
        if leaderboard is None and own_board.is_file():
            leaderboard = own_board
    elif competition is not None:
        result = grade_competition(submission, competition, metric, id_column=id_column)
    elif answers is not None:
        if not metric:
            raise MetricError("--metric is required with --answers (or use --competition)")
        result = grade_submission(submission, answers, metric=metric, id_column=id_column)
    else:
        raise ConfigError("pass --answers FILE with --metric, or --competition DIR")
    if name is None and competition is not None:
        name = competition.resolve().name

    report: dict[str, Any] | None = None
    if leaderboard is not None:
        from mlestar.grading.leaderboard import grade_against_leaderboard

        # MLE-bench reads the direction from the leaderboard's order, whatever the metric's name says.
        medal = grade_against_leaderboard(result.score, leaderboard, valid=result.valid)
        report = {
            "competition_id": name,
            **medal.model_dump(),
            "submission_exists": submission.is_file(),
            "submission_path": str(submission),
            "created_at": datetime.now(timezone.utc).isoformat(),
        }

    if json_out:
        payload: dict[str, Any] = result.model_dump()
        if report is not None:
            payload = {**report, "metric": result.metric, "reason": result.reason}
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
        if not result.valid:
            sys.exit(InvalidSubmission.exit_code)
        return

    console = _console()
    if result.valid:
        _print_score(console, result)
    if report is not None:
        _print_report(console, report)
    if not result.valid:
        raise InvalidSubmission(f"invalid submission: {result.reason}")


# --- rendering -----------------------------------------------------------------------------------


def _console() -> Console:
    from rich.console import Console

    console = Console()
    # piped or captured output gets room for the tables instead of the 80-column fallback
    return console if console.is_terminal else Console(width=160)


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _print_score(console: Console, result: GradeResult) -> None:
    direction = "lower" if result.lower_is_better else "higher"
    console.print(f"score: {result.score:.6g}  ({result.metric}, {direction} is better)", highlight=False)


def _print_report(console: Console, report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="Leaderboard", show_header=True)
    table.add_column("field")
    table.add_column("value")
    for key, value in report.items():
        table.add_row(str(key), "" if value is None else str(value))
    console.print(table)


def _print_task(console: Console, task: Task) -> None:
    from rich.markup import escape
    from rich.table import Table

    from mlestar.core.task import FileRole

    summary = Table(title=f"Task: {escape(task.name)}", show_header=False, title_justify="left")
    summary.add_column("", style="bold")
    summary.add_column("")
    rows = [
        ("data folder", str(task.data_dir)),
        ("task type", task.task_type.value),
        ("modality", task.modality.value),
        ("target", ", ".join(task.target_columns)),
        ("id column", task.id_column or "-"),
        (
            "metric",
            f"{task.metric} ({'lower' if task.lower_is_better else 'higher'} is better, "
            f"from {task.metric_source})",
        ),
        ("submission", f"{task.submission_kind}: {', '.join(task.submission_columns[:12])}"),
        ("train rows", f"{task.n_train_rows:,}"),
        ("test rows", f"{task.n_test_rows:,}"),
    ]
    if task.classes:
        shown = ", ".join(task.classes[:15]) + (" ..." if len(task.classes) > 15 else "")
        rows.append(("classes", f"{len(task.classes)}: {shown}"))
    if task.answers_file:
        rows.append(("private answers", str(task.answers_file)))
    if task.media is not None:
        rows += [("media" if i == 0 else "", line) for i, line in enumerate(task.media.summary().splitlines())]
    for label, value in rows:
        summary.add_row(label, escape(value))
    console.print(summary)

    files = Table(title="Files", title_justify="left")
    for header in ("path", "role", "format", "rows", "columns", "size"):
        files.add_column(header, justify="right" if header in ("rows", "columns", "size") else "left")
    for item in task.files:
        if item.role is FileRole.ANSWERS:
            continue  # listed in the summary; never shown among the public files
        rows_text = "" if item.rows is None else f"{'~' if item.rows_estimated else ''}{item.rows:,}"
        files.add_row(
            escape(item.path),
            item.role.value,
            item.format,
            rows_text,
            "" if item.columns is None else str(item.columns),
            _size(item.size_bytes) if item.size_bytes else "",
        )
    console.print(files)

    if task.columns:
        columns = Table(title=f"Columns of {escape(task.train_file)}", title_justify="left")
        for header in ("column", "use", "dtype", "kind", "missing", "unique"):
            columns.add_column(header, justify="right" if header in ("missing", "unique") else "left")
        columns.add_column("examples", no_wrap=True, overflow="ellipsis", max_width=40)
        features = set(task.feature_columns)
        for col in task.columns:
            if col.name in task.target_columns:
                use = "target"
            elif col.name == task.id_column:
                use = "id"
            elif col.name in features:
                use = "feature"
            else:
                use = "unused"
            columns.add_row(
                escape(col.name),
                use,
                col.dtype,
                col.kind,
                f"{col.missing_share:.1%}",
                f"{col.n_unique:,}",
                escape(", ".join(e[:20] for e in col.examples[:3])),
            )
        console.print(columns)
