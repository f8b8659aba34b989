"""Starting, resuming and finishing a run: the glue between intake, store, brain, executor and phases."""

from __future__ import annotations

import importlib.util
import json
import re
import secrets
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mlestar.brain.protocol import Brain, BrainContext, ScoredScript
from mlestar.config import RunConfig
from mlestar.core.events import Event, EventType
from mlestar.core.task import Task
from mlestar.errors import AllCandidatesFailed, BudgetExhausted, MlestarError
from mlestar.exec.pool import LocalExecutor, ScriptExecutor
from mlestar.exec.workspace import build_input_dir
from mlestar.metrics import get_metric
from mlestar.pipeline import phases
from mlestar.pipeline.budget import Budget
from mlestar.pipeline.engine import Engine, RunStopped
from mlestar.pipeline.split import write_folds
from mlestar.store import Control, NodeStatus, RunStatus, RunStore, open_run
from mlestar.task import load_task

EventListener = Callable[[Event], None]
ML_PACKAGES = ("sklearn", "lightgbm", "xgboost", "catboost", "torch", "scipy", "pandas", "numpy")


class RunResult(BaseModel):
    """What a finished (or stopped) run hands back."""

    run_id: str
    run_dir: Path
    status: RunStatus
    metric: str
    lower_is_better: bool
    best_score: float | None
    submission_score: float | None  # validation score of the solution behind submission.csv
    submission_path: Path | None
    solution_path: Path | None
    report_path: Path | None
    summary_path: Path | None
    stop_reason: str | None = None  # "user" or "budget" when status is stopped


def new_run_id(task_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", task_name.lower()).strip("-")[:40] or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{secrets.token_hex(2)}"


def data_report(task: Task) -> str:
    """The data profile as text, for brains and the report."""
    lines = [task.summary(), "", "Columns of the train file (name, dtype, kind, missing share, unique values, examples):"]
    for col in task.columns[:200]:
        examples = ", ".join(col.examples[:3])
        lines.append(
            f"- {col.name}: {col.dtype}, {col.kind}, missing {col.missing_share:.1%}, "
            f"{col.n_unique} unique; e.g. {examples}"
        )
    if len(task.columns) > 200:
        lines.append(f"... and {len(task.columns) - 200} more columns")
    lines.append("")
    lines.append("Files:")
    for file in task.files:
        shape = f"{file.rows}x{file.columns}" if file.rows is not None else file.format
        lines.append(f"- {file.path} ({file.role.value}, {shape})")
    return "\n".join(lines)


def create_run(
    competition: Path | str,
    config: RunConfig,
    *,
    runs_dir: Path | str = "runs",
    run_id: str | None = None,
    metric: str | None = None,
    target: str | None = None,
    id_column: str | None = None,
) -> RunStore:
    """Read the competition, create the run folder and its fixed split. Nothing runs yet."""
    task = load_task(competition, metric=metric, target=target, id_column=id_column)
    run_id = run_id or new_run_id(task.name)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", run_id):
        raise MlestarError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-'")
    run_dir = Path(runs_dir).resolve() / run_id
    if run_dir.exists():
        raise MlestarError(f"run {run_id} already exists in {run_dir.parent}; use `mlestar resume {run_id}`")
    store = RunStore.create(
        run_dir,
        meta={
            "task": task.model_dump(mode="json"),
            "config": config.model_dump(mode="json"),
            "brain": f"llm:{config.llm}" if config.llm else "expert",
            "competition_path": str(Path(competition).resolve()),
            "data_report": data_report(task),
            "active_s": 0.0,
        },
    )
    folds = write_folds(task, run_dir / "data" / "folds.csv", seed=config.seed, n_folds=config.n_folds,
                        dev_max_rows=config.dev_max_rows)
    build_input_dir(task, run_dir / "data" / "dev", final=False, folds_csv=folds)
    build_input_dir(task, run_dir / "data" / "final", final=True, folds_csv=folds)
    return store


def make_brain(config: RunConfig, store: RunStore | None) -> Brain:
    if config.llm:
        from mlestar.brain.llm import build_llm_brain

        return build_llm_brain(config, store)
    from mlestar.brain.expert import ExpertBrain

    return ExpertBrain()


def make_searcher(config: RunConfig, store: RunStore) -> phases.Searcher | None:
    """Web search feeds the retriever of an LLM brain; the expert brain works from its knowledge base."""
    if not config.llm or config.search == "off":
        return None
    from mlestar.search import make_searcher as make_provider

    provider = make_provider(
        config.search or "auto", on_warning=lambda message: store.emit(EventType.WARNING, message)
    )

    def search(query: str) -> list[Any]:
        try:
            return provider.search(query, 5)
        except Exception as exc:  # search is a help, never a reason to fail a run
            store.emit(EventType.WARNING, f"web search failed, using the knowledge base: {exc}")
            return []

    return search


def _context(task: Task, config: RunConfig, store: RunStore) -> BrainContext:
    import pandas as pd

    folds = pd.read_csv(store.run_dir / "data" / "folds.csv")
    return BrainContext(
        task=task,
        data_report=str(store.get_meta("data_report", "")),
        seed=config.seed,
        dev_max_rows=config.dev_max_rows,
        n_dev_rows=int(folds["dev"].sum()),
        n_folds=int(folds["fold"].max()) + 1,
        script_timeout_s=config.script_timeout_s
        if config.time_limit_s is None
        else min(config.script_timeout_s, config.time_limit_s / 6),
        threads=config.resolved_threads(),
        available_packages=[name for name in ML_PACKAGES if importlib.util.find_spec(name) is not None],
    )


def execute(
    store: RunStore,
    *,
    listeners: list[EventListener] | None = None,
    executor: ScriptExecutor | None = None,
    brain: Brain | None = None,
) -> RunResult:
    """Run (or continue) the four phases of the run in ``store`` until done, stopped or failed.

    ``brain`` replaces the configured one (a custom policy); it must be the same on resume.
    """
    task = Task.model_validate(store.get_meta("task"))
    config = RunConfig(**store.get_meta("config"))  # the stored config is authoritative on resume
    resumed = store.get_meta("status") != RunStatus.CREATED.value
    # Built before the run is marked running: a missing key on resume leaves the run as it was.
    brain = brain or make_brain(config, store)
    store.request(Control.RUN)
    store.claim()
    store.set_status(RunStatus.RUNNING)
    own_executor = executor is None
    executor = executor or LocalExecutor(config.resolved_workers())
    budget = Budget(config.time_limit_s, spent_before_s=float(store.get_meta("active_s", 0.0)))
    store.set_meta("brain", f"llm:{config.llm}" if config.llm else brain.name)
    engine = Engine(
        store=store,
        task=task,
        config=config,
        brain=brain,
        executor=executor,
        budget=budget,
        ctx=_context(task, config, store),
        dev_input=store.run_dir / "data" / "dev",
        final_input=store.run_dir / "data" / "final",
    )
    engine.listeners.extend(listeners or [])
    store.set_meta(
        "budget",
        {"time_limit_s": config.time_limit_s, "spent_before_s": budget.spent_before_s, "started_at": time.time()},
    )
    if resumed:
        engine.emit(EventType.RUN_RESUMED, f"resumed {store.run_id}")
    else:
        engine.emit(EventType.RUN_STARTED, f"run {store.run_id} on {task.name} with the {brain.name} brain",
                    data={"brain": brain.name, "config": config.model_dump(mode="json")})

    def request_stop() -> None:
        engine.stop_requested.set()
        executor.cancel_all()

    watcher = _ControlWatcher(store, request_stop)
    restore = _install_signal_handlers(request_stop)
    status, error, stop_reason = RunStatus.FINISHED, None, None
    try:
        _phases(engine, searcher=make_searcher(config, store))
    except (RunStopped, KeyboardInterrupt):
        status, stop_reason = RunStatus.STOPPED, "user"
        engine.emit(EventType.RUN_STOPPED, "stopped; continue with `mlestar resume " + store.run_id + "`")
    except BudgetExhausted as exc:
        status, error, stop_reason = RunStatus.STOPPED, exc, "budget"
        engine.emit(EventType.RUN_STOPPED, f"budget exhausted: {exc}", data={"reason": "budget"})
    except AllCandidatesFailed as exc:
        status, error = RunStatus.FAILED, exc
        engine.emit(EventType.RUN_FAILED, str(exc))
    except Exception as exc:
        status, error = RunStatus.FAILED, exc
        engine.emit(EventType.RUN_FAILED, f"{type(exc).__name__}: {exc}")
    finally:
        restore()
        watcher.close()
        if own_executor:
            executor.shutdown()
        store.set_meta("active_s", budget.elapsed())
        _mark_interrupted_nodes(store)
        store.set_status(status)
    store.set_meta("stop_reason", stop_reason)
    result = _finish(store, task, config, budget, status).model_copy(update={"stop_reason": stop_reason})
    if status == RunStatus.FINISHED:
        engine.emit(EventType.RUN_FINISHED, f"finished; best {task.metric} {result.best_score}",
                    data={"best_score": result.best_score})
    if error is not None and not isinstance(error, BudgetExhausted):
        if isinstance(error, MlestarError):
            raise error
        raise error
    return result


def _phases(engine: Engine, *, searcher: phases.Searcher | None) -> None:
    try:
        _all_phases(engine, searcher=searcher)
    except BudgetExhausted:
        _submit_best_so_far(engine)
        raise


def _submit_best_so_far(engine: Engine) -> None:
    """On an LLM budget stop, publish the best solution if it beats the current submission.

    The LLM client keeps a reserved share of the budget for final-mode calls, so this usually works
    even when the stop came before the first submission.
    """
    best = engine.store.get_meta("best") or {}
    node = engine.store.get_node(int(best["node_id"])) if best.get("node_id") else None
    if node is None:
        return
    try:
        phases.publish_if_better(engine, "budget/submit", [engine.scored_from_node(node)], phase="phase4")
    except BudgetExhausted:
        engine.emit(EventType.WARNING, "no budget left to write a submission from the best solution")


def _all_phases(engine: Engine, *, searcher: phases.Searcher | None) -> None:
    cfg = engine.config
    winners = phases.initial_solutions(engine, searcher)
    best = engine.best_of(winners)
    if best is not None:  # a valid submission exists from here on
        phases.publish_if_better(engine, "p1/submit", [best], phase="phase1")
    engine.phase_started("phase2", "ablation-guided refinement")
    with ThreadPoolExecutor(max_workers=cfg.num_tracks) as pool:
        refined = list(pool.map(lambda args: phases.refine_track(engine, *args), enumerate(winners)))
    engine.phase_finished("phase2", data={"tracks": [{"node_id": r.node_id, "score": r.score} for r in refined]})
    engine.phase_started("phase3", "planned ensembling")
    ensembled = phases.ensemble(engine, refined)
    engine.phase_finished("phase3", data={"best": ensembled.score if ensembled else None})
    engine.phase_started("phase4", "final submission")
    candidates: list[ScoredScript] = [*refined, *([ensembled] if ensembled else [])]
    phases.publish_if_better(engine, "p4/submit", candidates, phase="phase4")
    engine.phase_finished("phase4")


class _ControlWatcher:
    """Polls the store for a stop request from another process (web UI) and acts at once."""

    def __init__(self, store: RunStore, on_stop: Callable[[], None], interval: float = 1.0) -> None:
        self._store, self._on_stop, self._interval = store, on_stop, interval
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlestar-control", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._closed.wait(self._interval):
            try:
                if self._store.control() == Control.STOP:
                    self._on_stop()
                    return
            except Exception:  # the store is busy or closing; try again next tick
                continue

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)


def _install_signal_handlers(request_stop: Callable[[], None]) -> Callable[[], None]:
    """Ctrl+C / SIGTERM: first one stops cleanly (scripts killed, run resumable), second one forces."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    presses = {"n": 0}

    def handler(signum: int, frame: Any) -> None:
        presses["n"] += 1
        request_stop()
        if presses["n"] > 1:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def _mark_interrupted_nodes(store: RunStore) -> None:
    for node in store.nodes(status=NodeStatus.RUNNING):
        store.update_node(node.id, status=NodeStatus.PENDING)


def _finish(store: RunStore, task: Task, config: RunConfig, budget: Budget, status: RunStatus) -> RunResult:
    run_dir = store.run_dir
    metric = get_metric(task.metric)
    nodes = store.nodes()
    best = store.get_meta("best") or {}
    submission = store.get_meta("submission") or {}
    by_phase: dict[str, Any] = {}
    for node in nodes:
        entry = by_phase.setdefault(node.phase, {"scripts": 0, "failed": 0, "best": None})
        entry["scripts"] += 1
        entry["failed"] += node.status == NodeStatus.FAILED
        if node.agent not in ("ablation", "submission") and node.score is not None:
            if metric.is_better(node.score, entry["best"]):
                entry["best"] = node.score
    calls = store.llm_calls()
    summary = {
        "run_id": store.run_id,
        "competition": task.name,
        "status": status.value,
        "metric": task.metric,
        "lower_is_better": task.lower_is_better,
        "best_score": best.get("score"),
        "best_node_id": best.get("node_id"),
        "submission": submission or None,
        "scores_by_phase": by_phase,
        "time_spent_s": round(budget.elapsed(), 1),
        "time_limit_s": config.time_limit_s,
        "scripts_run": len(nodes),
        "scripts_failed": sum(n.status == NodeStatus.FAILED for n in nodes),
        "brain": store.get_meta("brain"),
        "llm": {
            "calls": len(calls),
            "cached_calls": sum(c.cached for c in calls),
            "prompt_tokens": sum(c.prompt_tokens for c in calls),
            "completion_tokens": sum(c.completion_tokens for c in calls),
            "cost_usd": round(sum(c.cost_usd or 0.0 for c in calls), 6),
        },
    }
    store.set_meta("summary", summary)
    summary_path = run_dir / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2))
    report_path = None
    try:
        from mlestar.report import write_report

        report_path, _ = write_report(run_dir)
    except Exception as exc:  # the report is a view; a failure there must not lose the run
        store.emit(EventType.WARNING, f"report not written: {type(exc).__name__}: {exc}")
    submission_path = run_dir / "submission.csv"
    solution_path = run_dir / "solution.py"
    return RunResult(
        run_id=store.run_id,
        run_dir=run_dir,
        status=status,
        metric=task.metric,
        lower_is_better=task.lower_is_better,
        best_score=best.get("score"),
        submission_score=submission.get("dev_score"),
        submission_path=submission_path if submission_path.exists() else None,
        solution_path=solution_path if solution_path.exists() else None,
        report_path=report_path,
        summary_path=summary_path,
    )


def run(
    competition: Path | str,
    *,
    config: RunConfig | None = None,
    runs_dir: Path | str = "runs",
    run_id: str | None = None,
    metric: str | None = None,
    target: str | None = None,
    id_column: str | None = None,
    listeners: list[EventListener] | None = None,
    brain: Brain | None = None,
    **overrides: Any,
) -> RunResult:
    if config is None:
        config = RunConfig.load(**overrides)
    elif overrides:
        config = RunConfig.load(**{**config.model_dump(), **overrides})
    if brain is None and config.llm:
        make_brain(config, None)  # a missing key or bad model spec fails now, before a run folder exists
    store = create_run(
        competition, config, runs_dir=runs_dir, run_id=run_id, metric=metric, target=target, id_column=id_column
    )
    with store:
        return execute(store, listeners=listeners, brain=brain)


def resume(
    run_id: str,
    *,
    runs_dir: Path | str = "runs",
    time_limit_s: float | None = None,
    listeners: list[EventListener] | None = None,
    brain: Brain | None = None,
) -> RunResult:
    store = open_run(runs_dir, run_id)
    with store:
        status = store.status
        if status == RunStatus.RUNNING:
            raise MlestarError(f"run {store.run_id} is still running (pid {store.get_meta('owner', {}).get('pid')})")
        if status == RunStatus.FINISHED:
            raise MlestarError(f"run {store.run_id} has already finished; nothing to resume")
        if time_limit_s is not None:
            config = dict(store.get_meta("config"))
            config["time_limit_s"] = float(store.get_meta("active_s", 0.0)) + time_limit_s
            store.set_meta("config", RunConfig.load(**config).model_dump(mode="json"))
        return execute(store, listeners=listeners, brain=brain)
