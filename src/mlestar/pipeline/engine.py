"""The step machinery under the phases: memoized brain calls, script runs with debugging, events,
best-score tracking and pause/stop control.

Resume works by replay: the phases run again from the top, and every brain call and every script
run is looked up by a deterministic step key first. Finished steps come back from the store at no
cost; the first unfinished one runs for real. A script interrupted by a stop or a crash is left
``pending``/``running`` and is run again on resume; a finished one never is.
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any, TypeVar

from pydantic import TypeAdapter

from mlestar.brain.protocol import Brain, BrainContext, ScoredScript, Script
from mlestar.config import RunConfig
from mlestar.core.events import Event, EventType
from mlestar.core.task import Task
from mlestar.exec.models import ExecLimits, ExecResult
from mlestar.exec.pool import ScriptExecutor
from mlestar.exec.workspace import prepare_script_dir, private_paths
from mlestar.metrics import get_metric
from mlestar.pipeline.budget import Budget
from mlestar.store import Control, NodeRecord, NodeStatus, RunStatus, RunStore

T = TypeVar("T")
Validator = Callable[[Path], "str | None"]


class RunStopped(Exception):
    """Raised inside the phases when the user asked the run to stop (CLI Ctrl+C, web UI)."""


class Engine:
    def __init__(
        self,
        *,
        store: RunStore,
        task: Task,
        config: RunConfig,
        brain: Brain,
        executor: ScriptExecutor,
        budget: Budget,
        ctx: BrainContext,
        dev_input: Path,
        final_input: Path,
    ) -> None:
        self.store = store
        self.task = task
        self.config = config
        self.brain = brain
        self.executor = executor
        self.budget = budget
        self.ctx = ctx
        self.dev_input = dev_input
        self.final_input = final_input
        self.metric = get_metric(task.metric)
        self.listeners: list[Callable[[Event], None]] = []
        self.stop_requested = threading.Event()
        self._best_lock = threading.Lock()

    # -- events and control ----------------------------------------------------------------
    def emit(self, type_: EventType, message: str = "", **fields: Any) -> Event:
        event = self.store.emit(type_, message, **fields)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a broken display must never break the run
                pass
        return event

    def checkpoint(self) -> None:
        """Between steps: honour stop and pause requests from Ctrl+C or other processes."""
        if self.stop_requested.is_set() or self.store.control() == Control.STOP:
            self.stop_requested.set()
            raise RunStopped("stop requested")
        if self.store.control() == Control.PAUSE:
            with self._best_lock:  # one thread announces the pause
                if self.store.get_meta("status") != RunStatus.PAUSED.value:
                    self.store.set_status(RunStatus.PAUSED)
                    self.emit(EventType.RUN_PAUSED, "paused")
            paused_at = time.monotonic()
            while self.store.control() == Control.PAUSE and not self.stop_requested.is_set():
                time.sleep(0.5)
            # Time spent paused does not count against the budget.
            self.budget.started_at += time.monotonic() - paused_at
            with self._best_lock:
                if self.store.get_meta("status") == RunStatus.PAUSED.value:
                    self.store.set_status(RunStatus.RUNNING)
                    self.emit(EventType.RUN_RESUMED, "resumed after pause")
            self.checkpoint()

    # -- memoized brain calls --------------------------------------------------------------
    def memo(self, key: str, compute: Callable[[], T], type_: Any) -> T:
        adapter = TypeAdapter(type_)
        stored = self.store.memo_get(key)
        if stored is not None:
            return adapter.validate_python(stored["value"])
        self.checkpoint()
        value = compute()
        self.store.memo_put(key, {"value": adapter.dump_python(value, mode="json")})
        return value

    # -- scores ----------------------------------------------------------------------------
    def better(self, a: float | None, b: float | None) -> bool:
        """True when score ``a`` is strictly better than ``b`` (None is worst)."""
        if a is None or math.isnan(a):
            return False
        return self.metric.is_better(a, b)

    def relative_loss(self, new: float, old: float) -> float:
        """How much worse ``new`` is than ``old``, as a share of |old| (negative when better)."""
        scale = abs(old) if old else 1.0
        return (new - old) / scale if self.metric.lower_is_better else (old - new) / scale

    def best_of(self, scored: list[ScoredScript]) -> ScoredScript | None:
        best: ScoredScript | None = None
        for item in scored:
            if item.score is not None and (best is None or self.better(item.score, best.score)):
                best = item
        return best

    def consider_best(self, scored: ScoredScript, phase: str) -> None:
        if scored.score is None:
            return
        with self._best_lock:
            current = self.store.get_meta("best") or {}
            if self.better(scored.score, current.get("score")):
                self.store.set_meta(
                    "best", {"score": scored.score, "node_id": scored.node_id, "phase": phase, "ts": time.time()}
                )
                self.emit(
                    EventType.BEST_UPDATED,
                    f"best {self.task.metric} {scored.score:.6g}",
                    phase=phase,
                    node_id=scored.node_id,
                    data={"score": scored.score, "node_id": scored.node_id},
                )

    # -- running scripts -------------------------------------------------------------------
    def node_stdout(self, node: NodeRecord, limit: int) -> str:
        """The last ``limit`` characters of a script's full stdout file (empty if it never ran)."""
        if not node.script_path:
            return ""
        path = (self.store.run_dir / node.script_path).parent / "stdout.txt"
        return path.read_text(errors="replace")[-limit:] if path.exists() else ""

    def scored_from_node(self, node: NodeRecord) -> ScoredScript:
        code = (self.store.run_dir / node.script_path).read_text()
        info = node.info.get("script_info", {})
        tail = self.node_stdout(node, 4000)
        return ScoredScript(
            script=Script(code=code, label=node.label, info=info),
            node_id=node.id,
            score=node.score,
            error=node.error,
            stdout_tail=tail,
        )

    def run_script(
        self,
        key: str,
        script: Script,
        *,
        phase: str,
        agent: str,
        track: int | None = None,
        parents: list[int] | None = None,
        final: bool = False,
        validator: Validator | None = None,
        extra_info: dict[str, Any] | None = None,
    ) -> ScoredScript:
        """Run one script once (memoized by ``key``); no debugging."""
        node = self.store.node_by_key(key)
        if node is not None and node.status in (NodeStatus.DONE, NodeStatus.FAILED):
            return self.scored_from_node(node)
        self.checkpoint()
        info = {"script_info": script.info, "final": final, **(extra_info or {})}
        if node is None:
            node = self.store.add_node(
                NodeRecord(
                    step_key=key,
                    parent_ids=parents or [],
                    track=track,
                    phase=phase,
                    agent=agent,
                    label=script.label,
                    info=info,
                )
            )
        script_dir = self.store.run_dir / "scripts" / f"{node.id:04d}-{agent}"
        for leftover in ("working", "final"):  # a rerun after a crash starts clean
            shutil.rmtree(script_dir / leftover, ignore_errors=True)
        prepare_script_dir(script_dir, script.code, self.final_input if final else self.dev_input)
        node = self.store.update_node(
            node.id,
            status=NodeStatus.RUNNING,
            script_path=str((script_dir / "script.py").relative_to(self.store.run_dir)),
            label=script.label,
            info=info,
        )
        self.emit(
            EventType.SCRIPT_STARTED,
            f"{agent}: {script.label}",
            phase=phase,
            track=track,
            node_id=node.id,
            data={"agent": agent, "label": script.label, "step_key": key, "final": final},
        )
        limits = ExecLimits(
            timeout_s=self.budget.script_timeout(self.config.script_timeout_s, final=final),
            memory_mb=self.config.resolved_memory_mb(),
            threads=self.config.resolved_threads(),
            network=self.config.network,
        )
        try:
            result: ExecResult = self.executor.submit(script_dir, limits, hide=self._hidden(final)).result()
        except CancelledError:
            self.stop_requested.set()
        if self.stop_requested.is_set():
            # Killed by the stop itself: leave the node unfinished so a resume runs it again.
            self.store.update_node(node.id, status=NodeStatus.PENDING)
            raise RunStopped("stop requested")
        error = result.error_text() or None
        if error is None and validator is not None:
            error = validator(script_dir)
        if error is None and not final and result.score is None:
            error = result.error_text() or "no score"
        ok = error is None
        self.budget.record_script(result.wall_s)
        node = self.store.update_node(
            node.id,
            status=NodeStatus.DONE if ok else NodeStatus.FAILED,
            score=result.score if ok else None,
            returncode=result.returncode,
            wall_s=result.wall_s,
            peak_memory_mb=result.peak_memory_mb,
            finished_at=time.time(),
            error=error[-4000:] if error else None,
        )
        for warning in result.warnings:
            self.emit(EventType.WARNING, warning, phase=phase, node_id=node.id)
        self.emit(
            EventType.SCRIPT_FINISHED,
            f"{agent}: {script.label} -> {node.score if ok else 'failed'}",
            phase=phase,
            track=track,
            node_id=node.id,
            data={
                "agent": agent,
                "label": script.label,
                "score": node.score,
                "status": node.status.value,
                "wall_s": result.wall_s,
                "parents": node.parent_ids,
                "error": (error or "")[-300:],
            },
        )
        return ScoredScript(
            script=script,
            node_id=node.id,
            score=node.score,
            error=node.error,
            stdout_tail=result.stdout[-4000:],
        )

    def _hidden(self, final: bool) -> list[Path]:
        """Paths a script must not read even by following its input symlinks back to the data."""
        store_files = [Path(f"{self.store.db_path}{suffix}") for suffix in ("", "-wal", "-shm")]
        return private_paths(self.task, final=final) + [p for p in store_files if p.exists()]

    def run_with_debug(
        self,
        key: str,
        script: Script,
        *,
        phase: str,
        agent: str,
        track: int | None = None,
        parents: list[int] | None = None,
        final: bool = False,
        validator: Validator | None = None,
        extra_info: dict[str, Any] | None = None,
        counts_for_best: bool = True,
        ctx: BrainContext | None = None,
    ) -> ScoredScript:
        """Run a script; on failure let the brain debug it up to ``debug_retries`` times."""
        ctx = ctx or self.ctx
        result = self.run_script(
            key,
            script,
            phase=phase,
            agent=agent,
            track=track,
            parents=parents,
            final=final,
            validator=validator,
            extra_info=extra_info,
        )
        for attempt in range(1, self.config.debug_retries + 1):
            if result.error is None:
                break
            failing, error = result.script, result.error
            fixed = self.memo(
                f"{key}/debug{attempt}/brain",
                lambda: self.brain.debug(ctx, failing, error),
                Script | None,
            )
            if fixed is None:
                break
            fixed = fixed.model_copy(update={"label": fixed.label or f"{script.label} (debugged)"})
            result = self.run_script(
                f"{key}/debug{attempt}",
                fixed,
                phase=phase,
                agent="debug",
                track=track,
                parents=[result.node_id] if result.node_id else [],
                final=final,
                validator=validator,
                extra_info=extra_info,
            )
        if result.error is not None:
            self.emit(
                EventType.WARNING,
                f"{agent} script {script.label!r} failed and was dropped",
                phase=phase,
                track=track,
                node_id=result.node_id,
            )
        elif counts_for_best and not final:
            self.consider_best(result, phase)
        return result

    def context_for_track(self, track: int) -> BrainContext:
        """The brain context with a per-track seed, so tracks explore different choices."""
        return self.ctx.for_track(track)

    def phase_started(self, phase: str, message: str = "") -> None:
        self.store.set_meta("phase", phase)
        self.emit(EventType.PHASE_STARTED, message or phase, phase=phase)

    def phase_finished(self, phase: str, message: str = "", **data: Any) -> None:
        self.emit(EventType.PHASE_FINISHED, message or f"{phase} done", phase=phase, data=data)
