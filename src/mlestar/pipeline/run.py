"""Starting, resuming and finishing a run: the glue between intake, store, brain, executor and phases.

create_run   intake, the run folder, its store, the fixed split and the scripts' input views
execute      the event bus, the brain, the executor and the four phases, until done or stopped
run, resume  the Python API (``mlestar.run``, ``mlestar.resume``)
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlestar.brain.protocol import Brain, BrainContext, ScoredScript
from mlestar.core.contract import FOLDS_NAME
from mlestar.core.events import Event, EventBus, EventType
from mlestar.core.records import SearchResult
from mlestar.core.steps import Phase, Step
from mlestar.core.task import ColumnProfile, DataFile, FileRole, Task
from mlestar.errors import (
    AllCandidatesFailed,
    BudgetExhausted,
    ConfigError,
    InfrastructureError,
    MlestarError,
    TaskError,
    UnsupportedTask,
)
from mlestar.exec.gpus import resolve_gpus
from mlestar.exec.pool import Executor, LocalExecutor
from mlestar.exec.workspace import build_input_dir, make_writable
from mlestar.integrations import kaggle
from mlestar.integrations.mlflow_tracking import make_tracker
from mlestar.pipeline import evaluation, phases
from mlestar.pipeline.budget import Budget, LoopPlan, script_allowance
from mlestar.pipeline.control import ControlWatcher, install_signal_handlers
from mlestar.pipeline.engine import Engine, RunStopped
from mlestar.pipeline.split import write_folds
from mlestar.pipeline.summary import RunResult, finish
from mlestar.settings import Settings, fields_of
from mlestar.store import Control, NodeStatus, RunStatus, RunStore, open_run
from mlestar.task import load_task
from mlestar.task.profile import profile_columns, read_table_sample, table_format
from mlestar.task.sanity import readable_by_scripts
from mlestar.task.views import input_view, private_paths

EventListener = Callable[[Event], None]
ML_PACKAGES = (
    "sklearn", "lightgbm", "xgboost", "catboost", "torch", "torchvision", "timm", "scipy", "pandas", "numpy"
)
DEV_INPUT, FINAL_INPUT = Path("data") / "dev", Path("data") / "final"
FOLDS_PATH = Path("data") / "folds.csv"


def new_run_id(task_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", task_name.lower()).strip("-")[:40] or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{secrets.token_hex(2)}"


def _column_lines(columns: list[ColumnProfile], limit: int) -> list[str]:
    lines = [
        f"- {col.name}: {col.dtype}, {col.kind}, missing {col.missing_share:.1%}, "
        f"{col.n_unique} unique; e.g. {', '.join(col.examples[:3])}"
        for col in columns[:limit]
    ]
    if len(columns) > limit:
        lines.append(f"... and {len(columns) - limit} more columns")
    return lines


def _table_columns(task: Task, file: DataFile) -> list[ColumnProfile]:
    """The columns of an auxiliary table (profiled from its head when it is large)."""
    path = task.data_path(file.path)
    if file.format in ("dir", "other") or table_format(path) is None:
        return []
    try:
        return profile_columns(read_table_sample(path).frame)
    except MlestarError:
        return []


def data_report(task: Task) -> str:
    """The data profile as text, for brains and the report: the train file's columns, then every
    file a script may read, with the columns of auxiliary tables.

    Paths are relative to the input folder and the private answers are not named: what brains
    read must not point them at anything outside ``./input/``."""
    lines = [
        "Columns of the train file (name, dtype, kind, missing share, unique values, examples):",
        *_column_lines(task.columns, 200),
        "",
        "Files in ./input/:",
    ]
    for file in task.files:
        if file.role in (FileRole.ANSWERS, FileRole.DESCRIPTION) or Path(file.path).is_absolute():
            continue
        shape = f"{file.rows} rows x {file.columns} columns" if file.rows is not None else file.format
        lines.append(f"- {file.path} ({file.role.value}, {shape})")
        if file.role == FileRole.AUXILIARY:
            lines += ["  " + line for line in _column_lines(_table_columns(task, file), 60)]
    # Written by mlestar into every input folder: the one split every script scores on.
    lines.append(f"- {FOLDS_NAME} (the run's fixed split: row, fold, dev)")
    return "\n".join(lines)


def machine_hardware(threads: int) -> tuple[str, list[str]]:
    """The machine as scripts get it: a sentence for prompts, and the GPUs ``nvidia-smi`` lists."""
    gpus: list[str] = []
    if shutil.which("nvidia-smi"):
        try:
            listed = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            gpus = [line.strip() for line in listed.stdout.splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError):
            gpus = []
    memory_gb = _total_memory_gb()
    cores = os.cpu_count() or 1
    text = f"{cores} CPU cores ({threads} for each script), {memory_gb:.0f} GB of memory, "
    text += f"GPUs: {'; '.join(gpus)}" if gpus else "no GPU"
    return text, gpus


def _total_memory_gb() -> float:
    try:
        import psutil

        return psutil.virtual_memory().total / 2**30
    except Exception:  # psutil missing or no /proc
        return 0.0


def brain_context(task: Task, settings: Settings, run_dir: Path, report: str) -> BrainContext:
    """What every agent role may know; fixed when the run is created, so a resume asks the same."""
    import pandas as pd

    folds = pd.read_csv(run_dir / FOLDS_PATH)
    n_dev = int(folds["dev"].sum())
    timeout = script_allowance(
        settings.time_limit_s, settings.script_timeout_s, LoopPlan.of(settings), final_rows_ratio(task, n_dev)
    )
    hardware, _names = machine_hardware(settings.resolved_threads())
    return BrainContext(
        task=task,
        data_report=report,
        hardware=hardware,
        seed=settings.seed,
        dev_max_rows=settings.dev_max_rows,
        n_dev_rows=n_dev,
        class_counts=_class_counts(task, folds),
        n_folds=int(folds["fold"].max()) + 1,
        script_timeout_s=timeout,
        threads=settings.resolved_threads(),
        gpu=bool(resolve_gpus(settings.gpus)),
        available_packages=[name for name in ML_PACKAGES if importlib.util.find_spec(name) is not None],
    )


def final_rows_ratio(task: Task, n_dev_rows: int) -> float:
    """How many more rows the final script learns from than a development script."""
    return max(1.0, (task.n_train_rows or n_dev_rows) / max(1, n_dev_rows))


def _class_counts(task: Task, folds: Any) -> dict[str, int]:
    """Development rows per class (classification), so brains can judge how noisy a hold-out is."""
    if task.task_type.value not in ("binary", "multiclass"):
        return {}
    from mlestar.pipeline.split import read_train_columns

    labels = read_train_columns(task, [task.target])[task.target]
    if len(labels) != len(folds):
        return {}
    counts = labels[folds["dev"].to_numpy() == 1].dropna().astype(str).value_counts()
    return {str(label): int(count) for label, count in counts.items()}


def create_run(
    competition: Path | str,
    settings: Settings,
    *,
    run_id: str | None = None,
    metric: str | None = None,
    target: str | None = None,
    id_column: str | None = None,
) -> RunStore:
    """Read the competition, create the run folder, its fixed split and input views. Nothing runs yet.

    The folder is built under a hidden name and renamed into place at the end, so a failure (bad
    data found by the split, Ctrl+C, a full disk) never leaves a half-made run behind.
    """
    task = load_task(competition, metric=metric, target=target, id_column=id_column)
    if not settings.llm:
        check_offline_scope(task)
    run_id = run_id or new_run_id(task.name)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", run_id):
        raise MlestarError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-'")
    runs_dir = _runs_dir(Path(settings.runs_dir))
    run_dir = runs_dir / run_id
    if run_dir.exists():
        raise MlestarError(f"run {run_id} already exists in {run_dir.parent}; use `mlestar resume {run_id}`")
    views = {DEV_INPUT: input_view(task, final=False), FINAL_INPUT: input_view(task, final=True)}
    for source, _inside in views[FINAL_INPUT].links:
        if not readable_by_scripts(source):
            raise TaskError(
                f"{source.name} cannot be read by the scripts, which run without root's privileges: "
                f"make it readable (chmod a+r {source})"
            )
    report = data_report(task)
    with _staging(runs_dir, run_id) as staging:
        store = RunStore.create(
            staging,
            meta={
                "run_id": run_id,
                "task": task.model_dump(mode="json"),
                "config": settings.run_values(),
                "brain": settings.brain_name,
                "competition_path": str(Path(competition).resolve()),
                "data_report": report,
                "active_s": 0.0,
            },
        )
        with store:
            folds = write_folds(
                task,
                staging / FOLDS_PATH,
                seed=settings.seed,
                n_folds=settings.n_folds,
                dev_max_rows=settings.dev_max_rows,
            )
            for folder, view in views.items():
                build_input_dir(staging / folder, view.links, folds_csv=folds)
            store.set_meta("context", brain_context(task, settings, staging, report).model_dump(mode="json"))
        try:
            staging.rename(run_dir)
        except OSError as exc:
            raise MlestarError(f"cannot create the run folder {run_dir}: {exc.strerror}") from None
    return RunStore(run_dir)


def _runs_dir(path: Path) -> Path:
    """The folder holding the runs, made if needed; one clear error when it cannot be."""
    path = path.expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise MlestarError(f"cannot use {path} as the runs folder: it is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MlestarError(f"cannot use {path} as the runs folder: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise MlestarError(f"cannot use {path} as the runs folder: it is not writable")
    return path


@contextmanager
def _staging(runs_dir: Path, run_id: str) -> Iterator[Path]:
    """A hidden folder next to the runs (``mlestar ls`` skips it), removed unless renamed away."""
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{run_id}.", suffix=".creating", dir=runs_dir))
    except OSError as exc:
        raise MlestarError(f"cannot create a run in {runs_dir}: {exc.strerror}") from None
    try:
        yield staging
    finally:
        if staging.exists():
            for folder in (DEV_INPUT, FINAL_INPUT):
                make_writable(staging / folder)
            shutil.rmtree(staging, ignore_errors=True)


def check_offline_scope(task: Task) -> None:
    """Fail before anything is written when the offline expert cannot solve the task."""
    from mlestar.brain.expert.scope import unsupported_reason

    reason = unsupported_reason(task)
    if reason is not None:
        raise UnsupportedTask(
            f"the offline expert cannot solve {task.name}: {reason}; "
            "run it with an LLM (--llm PROVIDER:MODEL)"
        )


def make_brain(settings: Settings, store: RunStore | None = None, bus: EventBus | None = None) -> Brain:
    if settings.llm:
        from mlestar.brain.llm import build_llm_brain

        return build_llm_brain(settings, store, bus)
    from mlestar.brain.expert import ExpertBrain

    return ExpertBrain()


def make_executor(settings: Settings) -> Executor:
    """The executor the settings name: this machine's process pool, or a Ray cluster."""
    if settings.executor == "ray":
        from mlestar.exec.ray_pool import RayExecutor

        return RayExecutor(settings.ray_address, shared_fs=settings.ray_shared_fs)
    return LocalExecutor(
        settings.resolved_workers(), gpus=resolve_gpus(settings.gpus), scripts_per_gpu=settings.scripts_per_gpu
    )


def make_searcher(settings: Settings, bus: EventBus) -> phases.Searcher | None:
    """Web search feeds the retriever of an LLM brain; the expert brain works from its knowledge base."""
    if not settings.llm or settings.search == "off":
        return None
    from mlestar.search import make_searcher as make_provider

    def warn(message: str) -> None:
        bus.publish(EventType.WARNING, message)

    provider = make_provider(settings.search or "auto", on_warning=warn)

    def search(query: str) -> list[SearchResult]:
        try:
            return provider.search(query, settings.search_results)
        except Exception as exc:  # search is a help, never a reason to fail a run
            warn(f"web search failed, using the knowledge base: {exc}")
            return []

    return search


def execute(
    store: RunStore,
    *,
    listeners: list[EventListener] | None = None,
    executor: Executor | None = None,
    brain: Brain | None = None,
    process: Settings | None = None,
) -> RunResult:
    """Run (or continue) the four phases of the run in ``store`` until done, stopped or failed.

    ``brain`` replaces the configured one (a custom policy); it must be the same on resume.
    ``process``: this process's settings (executor, timeouts...); the run's own come from its store.
    """
    task = Task.model_validate(store.get_meta("task"))
    # The stored settings are authoritative for the run; the process's are this process's.
    settings = Settings.for_run(store.get_meta("config"), process)
    bus = EventBus(recorder=store.append_event)
    for listener in listeners or []:
        bus.subscribe(listener)
    resumed = store.get_meta("status") != RunStatus.CREATED.value
    # Built before the run is marked running: a missing key on resume leaves the run as it was.
    brain = brain or make_brain(settings, store, bus)
    tracker = make_tracker(store, bus, task, settings)  # MLflow, when the run records there
    stored_context = store.get_meta("context")
    if stored_context is None:  # a run created before contexts were stored
        stored_context = brain_context(task, settings, store.run_dir, str(store.get_meta("data_report", "")))
        store.set_meta("context", stored_context.model_dump(mode="json"))
    ctx = BrainContext.model_validate(stored_context)
    store.request(Control.RUN)
    store.claim()
    store.set_status(RunStatus.RUNNING)
    own_executor = executor is None
    executor = executor or make_executor(settings)
    budget = Budget(
        settings.time_limit_s,
        spent_before_s=float(store.get_meta("active_s", 0.0)),
        plan=LoopPlan.of(settings),
        final_rows_ratio=final_rows_ratio(task, ctx.n_dev_rows),
        allowance_s=ctx.script_timeout_s,
    )
    store.set_meta("brain", settings.brain_name if settings.llm else brain.name)
    engine = Engine(
        store=store,
        bus=bus,
        task=task,
        settings=settings,
        brain=brain,
        executor=executor,
        budget=budget,
        ctx=ctx,
        inputs={False: store.run_dir / DEV_INPUT, True: store.run_dir / FINAL_INPUT},
        hidden=lambda final: private_paths(task, final=final),
    )
    if settings.target_score is not None:
        engine.goal_reached = evaluation.GoalWatch(engine, settings.target_score)
    store.set_meta(
        "budget",
        {
            "time_limit_s": settings.time_limit_s,
            "spent_before_s": budget.spent_before_s,
            "started_at": time.time(),
        },
    )
    if tracker is not None:
        tracker.start()
    if resumed:
        bus.publish(EventType.RUN_RESUMED, f"resumed {store.run_id}")
    else:
        bus.publish(
            EventType.RUN_STARTED,
            f"run {store.run_id} on {task.name} with the {brain.name} brain",
            data={"brain": brain.name, "config": settings.run_values()},
        )

    def request_stop() -> None:
        engine.stop_requested.set()
        executor.cancel_all()

    watcher = ControlWatcher(store, request_stop)
    restore = install_signal_handlers(request_stop)
    status, error, stop_reason = RunStatus.FINISHED, None, None
    try:
        _phases(engine, searcher=make_searcher(settings, bus))
    except (RunStopped, KeyboardInterrupt):
        if engine.pause_reason is not None:
            # The run stopped itself: say why in one line, and how to go on once it is fixed.
            status, stop_reason = RunStatus.STOPPED, "llm"
            bus.publish(
                EventType.RUN_STOPPED,
                f"paused: {engine.pause_reason}; continue with `mlestar resume {store.run_id}`",
                data={"reason": "llm", "detail": engine.pause_reason},
            )
        else:
            status, stop_reason = RunStatus.STOPPED, "user"
            bus.publish(EventType.RUN_STOPPED, f"stopped; continue with `mlestar resume {store.run_id}`")
    except BudgetExhausted as exc:
        status, stop_reason = RunStatus.STOPPED, "budget"
        bus.publish(EventType.RUN_STOPPED, f"budget exhausted: {exc}", data={"reason": "budget"})
    except InfrastructureError as exc:  # the executor's fault, not the run's: stopped, resumable
        status, stop_reason = RunStatus.STOPPED, "infrastructure"
        bus.publish(EventType.RUN_STOPPED, str(exc), data={"reason": "infrastructure"})
    except AllCandidatesFailed as exc:
        status, error = RunStatus.FAILED, exc
        bus.publish(EventType.RUN_FAILED, str(exc))
    except Exception as exc:
        status, error = RunStatus.FAILED, exc
        bus.publish(EventType.RUN_FAILED, f"{type(exc).__name__}: {exc}")
    finally:
        restore()
        watcher.close()
        if own_executor:
            executor.shutdown()
        store.set_meta("active_s", budget.elapsed())
        for node in store.nodes(status=NodeStatus.RUNNING):  # interrupted: run again on resume
            store.update_node(node.id, status=NodeStatus.PENDING)
        store.set_status(status)
    store.set_meta("stop_reason", stop_reason)
    result = finish(store, bus, task, settings, budget, status, stop_reason, engine.pause_reason)
    if status == RunStatus.FINISHED:
        bus.publish(
            EventType.RUN_FINISHED,
            f"finished; best {task.metric} {result.best_score}",
            data={"best_score": result.best_score},
        )
    if tracker is not None:
        tracker.close(status)
    if error is not None:
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
        phases.publish_if_better(
            engine, Step(Phase.SUBMIT, None, ("budget",)), [engine.scored_from_node(node)]
        )
    except BudgetExhausted:
        engine.publish(EventType.WARNING, "no budget left to write a submission from the best solution")


def _all_phases(engine: Engine, *, searcher: phases.Searcher | None) -> None:
    winners = phases.initial_solutions(engine, searcher)
    best = engine.best_of(winners)
    if best is not None:  # a valid submission exists from here on
        phases.publish_if_better(engine, Step(Phase.SEARCH, None, ("submit",)), [best])
    engine.phase_started(Phase.REFINE, "ablation-guided refinement")
    tracks = phases.refine_tracks(engine, winners)
    engine.phase_finished(
        Phase.REFINE, data={"tracks": [{"node_id": t.best.node_id, "score": t.best.score} for t in tracks]}
    )
    engine.phase_started(Phase.ENSEMBLE, "planned ensembling")
    ensembled = phases.ensemble(engine, [t.best for t in tracks])
    engine.phase_finished(Phase.ENSEMBLE, data={"best": ensembled.score if ensembled else None})
    ensembled = phases.extension_passes(engine, tracks, ensembled)
    engine.phase_started(Phase.SUBMIT, "final submission")
    candidates: list[ScoredScript] = [*(t.best for t in tracks), *([ensembled] if ensembled else [])]
    pick = evaluation.pick_final(engine, candidates)
    chosen = pick.evaluation.model_dump(mode="json") if pick.evaluation else None
    if chosen is not None:
        engine.store.set_meta("final_evaluation", chosen)
    trusted = pick.ordered[0] if pick.by_mean else None
    phases.publish_first_better(engine, Step(Phase.SUBMIT, None, ("submit",)), pick.ordered, trusted=trusted)
    engine.phase_finished(Phase.SUBMIT, data={"final_evaluation": chosen})


def run(
    competition: Path | str,
    *,
    settings: Settings | None = None,
    run_id: str | None = None,
    metric: str | None = None,
    target: str | None = None,
    id_column: str | None = None,
    listeners: list[EventListener] | None = None,
    brain: Brain | None = None,
    executor: Executor | str | None = None,
    **overrides: Any,
) -> RunResult:
    """Run the whole pipeline on a competition; every setting may be given as a keyword.

    ``executor``: ``"local"`` or ``"ray"`` (the setting), or an :class:`Executor` of your own.
    """
    if isinstance(executor, str):
        overrides["executor"], executor = executor, None
    if settings is None:
        settings = Settings.load(**overrides)
    elif overrides:
        settings = Settings.load(**{**settings.model_dump(), **overrides})
    if brain is None and settings.llm:
        make_brain(settings)  # a missing key or bad model spec fails now, before a run folder exists
    if kaggle.is_reference(competition):  # downloaded once into the cache, then a local folder
        competition = kaggle.cached_folder(str(competition), settings.kaggle_cache_dir).path
    # Made before the run folder, so an unreachable cluster leaves nothing behind.
    own = executor is None
    chosen = executor or make_executor(settings)
    try:
        store = create_run(
            competition, settings, run_id=run_id, metric=metric, target=target, id_column=id_column
        )
        with store:
            return execute(store, listeners=listeners, brain=brain, executor=chosen, process=settings)
    finally:
        if own:
            chosen.shutdown()


def resume(
    run_id: str,
    *,
    runs_dir: Path | str | None = None,
    time_limit_s: float | None = None,
    listeners: list[EventListener] | None = None,
    brain: Brain | None = None,
    executor: Executor | str | None = None,
    **overrides: Any,
) -> RunResult:
    """Continue a stopped or crashed run; ``time_limit_s`` gives it that many more seconds.

    The run keeps its own settings; ``overrides`` may set this process's (``executor="ray"``,
    ``ray_address``, timeouts...).
    """
    if isinstance(executor, str):
        overrides["executor"], executor = executor, None
    fixed = sorted(set(overrides) - fields_of(scope="process"))
    if fixed:
        raise ConfigError(f"a resumed run keeps its own settings; cannot change {', '.join(fixed)}")
    process = Settings.load(**overrides, runs_dir=runs_dir)
    store = open_run(process.runs_dir, run_id)
    with store:
        status = store.status
        if status == RunStatus.RUNNING:
            raise MlestarError(
                f"run {store.run_id} is still running (pid {store.get_meta('owner', {}).get('pid')})"
            )
        if status == RunStatus.FINISHED:
            raise MlestarError(f"run {store.run_id} has already finished; nothing to resume")
        if time_limit_s is not None:
            config = dict(store.get_meta("config"))
            config["time_limit_s"] = float(store.get_meta("active_s", 0.0)) + time_limit_s
            store.set_meta("config", Settings.for_run(config, process).run_values())
        own = executor is None
        chosen = executor or make_executor(Settings.for_run(store.get_meta("config"), process))
        try:
            return execute(store, listeners=listeners, brain=brain, executor=chosen, process=process)
        finally:
            if own:
                chosen.shutdown()
