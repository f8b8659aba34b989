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
            help="An MLE-bench checkout: grade with the competition's own grader (and its leaderboard.csv).",
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
    from mlestar.errors import ConfigError, MetricError, TaskError
    from mlestar.grading import grade_competition, grade_submission

    if answers is not None and competition is not None:
        raise ConfigError("pass either --answers or --competition, not both")
    if leaderboard is not None and not leaderboard.is_file():
        raise TaskError(f"leaderboard file not found: {leaderboard}")
    if mlebench is not None:
        _grade_mlebench(submission, mlebench, competition, answers, competition_id, leaderboard, json_out)
        return
    if competition is not None:
        result = grade_competition(submission, competition, metric, id_column=id_column)
    elif answers is not None:
        if not metric:
            raise MetricError("--metric is required with --answers (or use --competition)")
        result = grade_submission(submission, answers, metric=metric, id_column=id_column)
    else:
        raise ConfigError("pass --answers FILE with --metric, or --competition DIR")
    name = competition_id or (competition.resolve().name if competition is not None else None)

    report: dict[str, Any] | None = None
    if leaderboard is not None:
        report = {
            "competition_id": name,
            **_leaderboard_fields(result.score, result.valid, leaderboard),
            "submission_exists": submission.is_file(),
            "submission_path": str(submission),
            "created_at": datetime.now(timezone.utc).isoformat(),
        }
    payload: dict[str, Any] = result.model_dump()
    if report is not None:
        payload = {**report, "metric": result.metric, "reason": result.reason}
    known = report if report is not None and not report.get("medals_unknown") else None
    _finish(payload, valid=result.valid, json_out=json_out,
            score_line=_score_line(result.score, result.metric, result.lower_is_better), table=known)


def _grade_mlebench(
    submission: Path,
    checkout_path: Path,
    competition: Path | None,
    answers: Path | None,
    competition_id: str | None,
    leaderboard: Path | None,
    json_out: bool,
) -> None:
    """``mlestar grade --mlebench``: the competition's own grader; only the answers are needed."""
    from mlestar.errors import ConfigError, TaskError
    from mlestar.grading.mlebench import Checkout, data_file, grade, prepared_root

    if competition is None and (answers is None or competition_id is None):
        raise ConfigError("--mlebench grades a competition folder: pass --competition DIR as well "
                          "(or --answers FILE with --competition-id ID)")
    checkout = Checkout(checkout_path)
    root = prepared_root(competition) if competition is not None else None
    name = competition_id or (root.name if root is not None else "")
    if answers is None and root is not None:
        answers = data_file(root, checkout.config(name).answers)
        if not answers.is_file():
            prepare = f"mlebench prepare -c {name} --data-dir {root.parent}"
            raise TaskError(f"no answers for '{name}' at {answers} (run: {prepare})")
    report = grade(checkout, name, submission, answers, leaderboard=leaderboard)  # type: ignore[arg-type]
    payload = report.model_dump()
    table = {k: v for k, v in payload.items() if k not in ("reason", "medals_unknown")}
    _finish(payload, valid=report.valid_submission, json_out=json_out,
            score_line=_score_line(report.score, report.grader or "MLE-bench grader", report.is_lower_better),
            table=None if report.medals_unknown else table, reason=report.reason)


def _leaderboard_fields(score: float | None, valid: bool, leaderboard: Path) -> dict[str, Any]:
    """MLE-bench's medal fields for a score, or None fields and ``medals_unknown`` for a pointer file."""
    from mlestar.grading.leaderboard import LeaderboardUnavailable, MedalReport, grade_against_leaderboard

    try:
        return grade_against_leaderboard(score, leaderboard, valid=valid).model_dump()
    except LeaderboardUnavailable as exc:
        unknown = dict.fromkeys(MedalReport.model_fields)
        return {**unknown, "score": score, "valid_submission": valid, "medals_unknown": str(exc)}


def _score_line(score: float | None, metric: str, lower_is_better: bool | None) -> str:
    if score is None:
        return ""
    direction = "" if lower_is_better is None else f", {'lower' if lower_is_better else 'higher'} is better"
    return f"score: {score:.6g}  ({metric}{direction})"


def _finish(
    payload: dict[str, Any],
    *,
    valid: bool,
    json_out: bool,
    score_line: str,
    table: dict[str, Any] | None,
    reason: str | None = None,
    note: str | None = None,
) -> None:
    """Print a grade (JSON or text), the medals note on stderr; exit 1 for an invalid submission."""
    from mlestar.errors import InvalidSubmission

    note = note or payload.get("medals_unknown") or ""
    if note:
        typer.echo(f"warning: {note}", err=True)
    if json_out:
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
        if not valid:
            sys.exit(InvalidSubmission.exit_code)
        return
    console = _console()
    if valid and score_line:
        console.print(score_line, highlight=False)
    if table is not None:
        _print_report(console, table)
    if not valid:
        why = reason if reason is not None else payload.get("reason")
        raise InvalidSubmission(f"invalid submission: {why}")


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


def _print_report(console: Console, report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="Leaderboard", show_header=True)
    table.add_column("field")
    table.add_column("value")
    for key, value in report.items():
        table.add_row(str(key), "" if value is None else str(value))
    console.print(table)


def _print_joins(console: Console, task: Task) -> None:
    """How each auxiliary table joins to the train rows, as intake measured on samples."""
    from rich.markup import escape
    from rich.table import Table

    profiled = [f for f in task.files if f.table is not None]
    if not profiled:
        return
    joins = Table(title="Auxiliary tables: join keys", title_justify="left")
    for header in ("table", "key (train = table)", "rows per key", "train rows matched", "test rows matched"):
        joins.add_column(header, justify="right" if "rows" in header else "left")
    for item in profiled:
        assert item.table is not None
        if not item.table.links:
            joins.add_row(escape(item.path), escape(item.table.note or "no key found"), "", "", "")
        for link in item.table.links:
            test = "" if link.test_coverage is None else f"{link.test_coverage:.1%}"
            rows = f"{link.rows_per_key:.3g}"
            joins.add_row(escape(item.path), escape(link.describe()), rows, f"{link.coverage:.1%}", test)
    console.print(joins)


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
    _print_joins(console, task)

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
