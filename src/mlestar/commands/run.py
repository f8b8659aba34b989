"""CLI commands: run, resume, ls, show."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from mlestar.commands.options import with_settings
from mlestar.core.events import Event, EventType
from mlestar.store import NodeRecord, NodeStatus, RunStatus, list_runs, open_run

console = Console()

_QUIET_EVENTS = {EventType.LLM_CALL, EventType.SCRIPT_STARTED, EventType.STEP_STARTED}


class ProgressView:
    """Live terminal view of a run, fed by the pipeline's events (from any thread)."""

    def __init__(self, *, live: bool, time_limit_s: float | None) -> None:
        self.live_enabled = live
        self.time_limit_s = time_limit_s
        self.started = time.monotonic()
        self.phase = "starting"
        self.best: float | None = None
        self.scripts = 0
        self.failed = 0
        self.recent: list[str] = []
        self.cost = 0.0
        self._lock = threading.Lock()
        self._live: Live | None = None

    def __enter__(self) -> ProgressView:
        if self.live_enabled:
            self._live = Live(self.render(), console=console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self.render())
            self._live.__exit__(None, None, None)

    def __call__(self, event: Event) -> None:
        with self._lock:
            if event.type == EventType.PHASE_STARTED and event.phase:
                self.phase = f"{event.phase}: {event.message}"
            elif event.type == EventType.SCRIPT_FINISHED:
                self.scripts += 1
                self.failed += event.data.get("status") == NodeStatus.FAILED.value
            elif event.type == EventType.BEST_UPDATED:
                self.best = event.data.get("score")
            elif event.type == EventType.LLM_CALL:
                self.cost += float(event.data.get("cost_usd") or 0.0)
            if event.type not in _QUIET_EVENTS:
                stamp = time.strftime("%H:%M:%S", time.localtime(event.ts))
                self.recent = [*self.recent[-7:], f"{stamp} {event.message}"]
                if self._live is None:
                    print(f"{stamp} [{event.type.value}] {event.message}", flush=True)
            if self._live is not None:
                self._live.update(self.render())

    def render(self) -> Panel:
        elapsed = time.monotonic() - self.started
        budget = f"{elapsed:,.0f}s elapsed"
        if self.time_limit_s:
            budget += f", {max(0.0, self.time_limit_s - elapsed):,.0f}s left of {self.time_limit_s:,.0f}s"
        head = Table.grid(padding=(0, 2))
        head.add_row("phase", self.phase)
        head.add_row("best score", "-" if self.best is None else f"{self.best:.6g}")
        head.add_row("scripts", f"{self.scripts} run, {self.failed} failed")
        head.add_row("time", budget)
        if self.cost:
            head.add_row("LLM cost", f"${self.cost:.4f}")
        return Panel(Group(head, Text("\n".join(self.recent), style="dim")), title="mlestar", expand=False)


def _print_result(result: Any) -> None:
    style = "green" if result.status == RunStatus.FINISHED else "yellow"
    console.print(f"[{style}]run {result.run_id}: {result.status.value}[/]")
    if result.stop_detail:
        console.print(
            f"[yellow]paused: {result.stop_detail}; continue with `mlestar resume {result.run_id}`[/]",
            highlight=False,
        )
    direction = "lower is better" if result.lower_is_better else "higher is better"
    console.print(f"best validation {result.metric}: {result.best_score} ({direction})")
    if result.submission_path:
        console.print(f"submission: {result.submission_path} (validation {result.submission_score})")
    else:
        console.print("[yellow]no submission was written[/]")
    evaluation = result.final_evaluation
    if evaluation and evaluation.get("ci95"):
        low, high = evaluation["ci95"]
        whose = f"solution #{evaluation['node_id']}" + (" (submitted)" if evaluation.get("submitted") else "")
        spread = f"{evaluation['mean']:.6g} ± {evaluation['std']:.2g}"
        console.print(
            f"final evaluation of {whose}: {result.metric} {spread} over {evaluation['seeds']} seeds, "
            f"95% interval [{low:.6g}, {high:.6g}]"
        )
    elif evaluation:
        why = evaluation.get("note") or "no seed run finished"
        console.print(f"final evaluation: one score only ({why})")
    goal = result.goal
    if goal:
        verdict = f"reached after {goal['at_s']:.0f}s" if goal.get("reached") else "not reached"
        console.print(f"target {result.metric} {goal['target_score']:g}: {verdict}")
    used = result.time_used
    if used.get("time_limit_s"):
        console.print(
            f"time used: {used['time_spent_s']:.0f}s of {used['time_limit_s']:.0f}s "
            f"({used['share']:.0%}); ended because: {used['ended_because']}"
        )
    for label, path in (("solution", result.solution_path), ("report", result.report_path)):
        if path:
            console.print(f"{label}: {path}")


@with_settings("method", "checks", "resources", "data", "llm", "storage", "cluster", "tracking")
def run_command(
    competition: Annotated[
        Path, typer.Argument(help="competition folder (plain or MLE-bench prepared), or kaggle:NAME")
    ],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML file of settings")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="name of the run folder")] = None,
    metric: Annotated[str | None, typer.Option("--metric", help="override the detected metric")] = None,
    target: Annotated[str | None, typer.Option("--target", help="override the detected target column")] = None,
    id_column: Annotated[str | None, typer.Option("--id", help="override the detected id column")] = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """Run the whole MLE-STAR pipeline on a competition and leave a submission."""
    from mlestar.commands.kaggle import download
    from mlestar.integrations import kaggle
    from mlestar.pipeline import run as run_pipeline
    from mlestar.settings import Settings

    settings = Settings.load(config, **overrides)
    if kaggle.is_reference(competition):  # downloaded once into the cache, then a local folder
        name = kaggle.competition_name(str(competition))
        competition = download(name, kaggle.cache_folder(name, settings.kaggle_cache_dir)).path
    with ProgressView(live=console.is_terminal, time_limit_s=settings.time_limit_s) as view:
        result = run_pipeline(
            competition, settings=settings, run_id=run_id, metric=metric, target=target, id_column=id_column,
            listeners=[view],
        )
    _print_result(result)
    _exit_for(result.status, result.stop_reason)


@with_settings("storage", "cluster")
def resume_command(
    run_id: Annotated[str, typer.Argument(help="run id (or unique prefix) or run folder")],
    time_limit: Annotated[
        float | None, typer.Option("--time-limit", help="extra seconds on top of the time already spent")
    ] = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """Continue a stopped or crashed run without redoing finished scripts."""
    from mlestar.pipeline import resume

    with ProgressView(live=console.is_terminal, time_limit_s=None) as view:
        result = resume(run_id, time_limit_s=time_limit, listeners=[view], **overrides)
    _print_result(result)
    _exit_for(result.status, result.stop_reason)


@with_settings("storage")
def stop_command(
    run_id: Annotated[str, typer.Argument(help="run id (or unique prefix) or run folder")],
    *,
    overrides: dict[str, Any],
) -> None:
    """Stop a running run, as the web UI's stop does: its scripts are killed, it stays resumable."""
    from mlestar.errors import MlestarError
    from mlestar.store import Control

    with open_run(_runs_dir(overrides), run_id) as store:
        status = store.status
        if status not in (RunStatus.RUNNING, RunStatus.PAUSED):
            raise MlestarError(f"run {store.run_id} is not running (status {status.value})")
        store.request(Control.STOP)
        console.print(f"stop requested for {store.run_id}: its scripts are cancelled within a second or two")


def _runs_dir(overrides: dict[str, Any]) -> Path:
    from mlestar.settings import Settings

    return Settings.load(**overrides).runs_dir


def _exit_for(status: RunStatus, stop_reason: str | None) -> None:
    if status == RunStatus.STOPPED:
        # A budget stop is a normal end (the best submission is there); a user stop is an interrupt;
        # a run that paused itself (its LLM kept failing) or whose executor kept failing is to be
        # tried again later (75, EX_TEMPFAIL).
        raise typer.Exit({"budget": 0, "llm": 75, "infrastructure": 75}.get(stop_reason or "", 130))
    if status != RunStatus.FINISHED:
        raise typer.Exit(1)


@with_settings("storage")
def ls_command(*, overrides: dict[str, Any]) -> None:
    """List runs with their status and best score."""
    runs_dir = _runs_dir(overrides)
    runs = list_runs(runs_dir)
    if not runs:
        console.print(f"no runs in {runs_dir}")
        return
    table = Table(title=f"runs in {runs_dir}")
    for column in ("run id", "competition", "status", "best", "metric", "scripts", "brain", "created"):
        table.add_column(column)
    for item in runs:
        table.add_row(
            item.run_id,
            item.competition,
            item.status.value,
            "-" if item.best_score is None else f"{item.best_score:.6g}",
            f"{item.metric} ({'min' if item.lower_is_better else 'max'})" if item.metric else "",
            str(item.n_scripts),
            item.brain,
            datetime.fromtimestamp(item.created_at).strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)


def _node_label(node: NodeRecord, best_id: int | None) -> Text:
    score = "failed" if node.status == NodeStatus.FAILED else ("-" if node.score is None else f"{node.score:.6g}")
    style = "red" if node.status == NodeStatus.FAILED else ("bold green" if node.id == best_id else "")
    track = "" if node.track is None else f" t{node.track}"
    return Text(f"#{node.id} {node.phase}{track} {node.agent}: {node.label} -> {score}", style=style)


@with_settings("storage")
def show_command(
    run_id: Annotated[str, typer.Argument(help="run id (or unique prefix) or run folder")],
    *,
    overrides: dict[str, Any],
) -> None:
    """Print a run's solution tree (parent -> child, agent, score) and where its best script is."""
    with open_run(_runs_dir(overrides), run_id) as store:
        summary = store.summary()
        nodes = store.nodes()
        best = store.get_meta("best") or {}
        best_id = best.get("node_id")
        tree = Tree(f"{summary.run_id} [{summary.status.value}] {summary.competition}")
        branches: dict[int, Tree] = {}
        for node in nodes:  # ids grow with time, so parents come first
            parent = next((branches[p] for p in node.parent_ids if p in branches), tree)
            branches[node.id] = parent.add(_node_label(node, best_id))
        console.print(tree)
        if best_id is not None:
            node = store.get_node(int(best_id))
            if node is not None:
                console.print(f"best script: {store.run_dir / node.script_path} ({summary.metric} {node.score})")
        for name in ("submission.csv", "solution.py", "report.html"):
            if (store.run_dir / name).exists():
                console.print(f"{name}: {store.run_dir / name}")


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("resume")(resume_command)
    app.command("stop")(stop_command)
    app.command("ls")(ls_command)
    app.command("show")(show_command)
