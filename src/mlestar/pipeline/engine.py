"""The step machinery under the phases: memoized brain calls, replayed decisions, script runs with
debugging, best-score tracking and pause/stop control.

Resume works by replay: the phases run again from the top and every step is looked up by its key
(its place in the loops and a fingerprint of its inputs, ``mlestar.core.steps``). Finished steps
come back from the store at no cost; the first unfinished one runs for real. Decisions taken by the
clock (whether a step still fits the budget) are recorded when first taken and replayed from the
store, so a resumed run takes the branches it took before. A script interrupted by a stop or a
crash is left ``pending``/``running`` and is run again on resume; a finished one never is.
"""

from __future__ import annotations

import math
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any, TypeVar

from pydantic import TypeAdapter

from mlestar.brain.protocol import Brain, BrainContext, ScoredScript, Script
from mlestar.core.contract import FOLDS_NAME, SCRIPT_NAME
from mlestar.core.events import Event, EventBus, EventType
from mlestar.core.steps import Agent, Phase, Step
from mlestar.core.task import Task
from mlestar.errors import InfrastructureError
from mlestar.exec.models import ExecLimits, ExecResult, ScriptJob
from mlestar.exec.pool import Executor
from mlestar.exec.workspace import prepare_script_dir
from mlestar.llm.errors import LLMError
from mlestar.metrics import get_metric
from mlestar.pipeline.budget import Budget, ScriptKind
from mlestar.pipeline.scoring import PRINTED, RECOMPUTED, Rescorer, ScoreCheck
from mlestar.pipeline.skipping import SKIPPED, NotSkippable, is_skipped, skipped_value
from mlestar.settings import Settings
from mlestar.store import Control, NodeRecord, NodeStatus, RunStatus, RunStore

T = TypeVar("T")
Validator = Callable[[Path], "str | None"]


def ran_on(result: ExecResult) -> dict[str, str]:
    """Which executor (and, on a cluster, which node) ran a script: kept in its node's ``info``."""
    where = {"executor": result.executor}
    if result.node_id:
        where["node_id"] = result.node_id
    if result.node_ip:
        where["node_ip"] = result.node_ip
    return where


class RunStopped(Exception):
    """Raised inside the phases when the user asked the run to stop (CLI Ctrl+C, web UI)."""


class RunPaused(RunStopped):
    """Raised when the run stops itself: LLM steps kept failing, or one failed in a way only the
    user can fix (a rejected key, a wrong model name). The run stays resumable."""


class Engine:
    def __init__(
        self,
        *,
        store: RunStore,
        bus: EventBus,
        task: Task,
        settings: Settings,
        brain: Brain,
        executor: Executor,
        budget: Budget,
        ctx: BrainContext,
        inputs: dict[bool, Path],
        hidden: Callable[[bool], list[Path]],
    ) -> None:
        self.store = store
        self.bus = bus
        self.task = task
        self.settings = settings
        self.brain = brain
        self.executor = executor
        self.budget = budget
        self.ctx = ctx
        self.inputs = inputs  # final? -> the read-only input folder scripts get
        self.hidden = hidden  # final? -> paths scripts must not read
        self.metric = get_metric(task.metric)
        self.rescorer = Rescorer(task, self.metric, inputs[False] / FOLDS_NAME)
        self.stop_requested = threading.Event()
        self.pause_reason: str | None = None  # set when the run stops itself (see RunPaused)
        self._best_lock = threading.Lock()
        self._failures_lock = threading.Lock()
        self._llm_failures = 0  # LLM steps failed in a row
        # Set by the run when a target score is given: True once the goal is reached (it may run
        # the best solution's evaluation seeds to find out).
        self.goal_reached: Callable[[Phase], bool] = lambda phase: False

    # -- events and control ----------------------------------------------------------------
    def publish(self, type_: EventType, message: str = "", **fields: Any) -> Event:
        return self.bus.publish(type_, message, **fields)

    def note(self, key: str, type_: EventType, message: str = "", **fields: Any) -> None:
        """Publish an event about a step once: a replay of the step does not repeat it."""
        marker = f"{key}/event:{type_.value}"
        if self.store.memo_get(marker) is None:
            event = self.publish(type_, message, **fields)
            self.store.memo_put(marker, {"value": event.seq})

    def checkpoint(self) -> None:
        """Between steps: honour stop and pause requests from Ctrl+C or other processes."""
        if self.stop_requested.is_set() or self.store.control() == Control.STOP:
            self.stop_requested.set()
            raise RunStopped("stop requested")
        if self.store.control() == Control.PAUSE:
            with self._best_lock:  # one thread announces the pause
                if self.store.get_meta("status") != RunStatus.PAUSED.value:
                    self.store.set_status(RunStatus.PAUSED)
                    self.publish(EventType.RUN_PAUSED, "paused")
            paused_at = time.monotonic()
            while self.store.control() == Control.PAUSE and not self.stop_requested.is_set():
                time.sleep(0.5)
            # Time spent paused does not count against the budget.
            self.budget.started_at += time.monotonic() - paused_at
            with self._best_lock:
                if self.store.get_meta("status") == RunStatus.PAUSED.value:
                    self.store.set_status(RunStatus.RUNNING)
                    self.publish(EventType.RUN_RESUMED, "resumed after pause")
            self.checkpoint()

    # -- memoized brain calls and replayed decisions ---------------------------------------
    def ask(
        self,
        step: Step,
        kind: str,
        role: Callable[..., T],
        *args: Any,
        returns: Any,
        node_id: int | None = None,
    ) -> T:
        """``role(*args)`` once per (place, inputs): the result is kept under ``step.key(kind, args)``.

        Events the call publishes (the LLM's) are tagged with the step, its phase, track and node.
        """
        key = step.key(kind, args)
        adapter = TypeAdapter(returns)
        stored = self.store.memo_get(key)
        if stored is not None:
            return adapter.validate_python(stored["value"])
        if any(is_skipped(arg) for arg in args):
            # A step working on what a failed LLM step left behind is skipped as well.
            return skipped_value(returns, "its input came from a failed LLM step")
        self.checkpoint()
        try:
            with self.bus.scope(phase=step.phase.value, track=step.track, node_id=node_id, step=key):
                value = role(*args)
        except LLMError as exc:
            return self._llm_step_failed(step, key, returns, exc, node_id)
        self.store.memo_put(key, {"value": adapter.dump_python(value, mode="json")})
        with self._failures_lock:
            self._llm_failures = 0
        return value

    def _llm_step_failed(self, step: Step, key: str, returns: Any, exc: LLMError, node_id: int | None) -> Any:
        """Skip a step whose LLM call failed (nothing is stored, so a resume tries it again), or stop
        the run when failures keep coming or need the user."""
        with self._failures_lock:
            self._llm_failures += 1
            in_a_row = self._llm_failures
        self.publish(
            EventType.WARNING,
            f"{step.path}: the LLM call failed, step skipped: {exc}",
            phase=step.phase.value,
            track=step.track,
            node_id=node_id,
            data={"step": key, "llm_error": str(exc), "failures_in_a_row": in_a_row},
        )
        why: str | None = None
        if exc.stops_run:
            why = str(exc)
        elif in_a_row >= self.settings.llm_failures_to_pause:
            why = f"{in_a_row} LLM steps failed in a row (last: {exc})"
        else:
            try:
                return skipped_value(returns, str(exc))
            except NotSkippable:
                why = f"the {step.path} step cannot be skipped ({exc})"
        with self._failures_lock:
            # Tracks fail in parallel: the first reason to stop is the one the user reads.
            if self.pause_reason is None:
                self.pause_reason = why
        self.stop_requested.set()
        self.executor.cancel_all()
        raise RunPaused(why)

    def decide(self, step: Step, name: str, take: Callable[[], bool]) -> bool:
        """A decision taken once, at the frontier, and replayed from the store ever after."""
        key = step.decision_key(name)
        stored = self.store.memo_get(key)
        if stored is not None:
            return bool(stored["value"])
        value = bool(take())
        self.store.memo_put(key, {"value": value})
        return value

    def fits(
        self,
        step: Step,
        n_scripts: float = 1.0,
        *,
        kind: ScriptKind = "dev",
        first: bool = False,
        cost_s: float | None = None,
    ) -> bool:
        """Whether a step of about ``n_scripts`` scripts of ``kind`` (or ``cost_s`` seconds) may start
        in its phase (a replayed decision); never once the run's target score is reached. A phase's
        ``first`` step may use time the phase would otherwise leave to later ones
        (see ``Budget.phase_deadline``)."""

        def take() -> bool:
            if self.goal_reached(step.phase):
                return False
            phase = step.phase.value
            return self.budget.can_start(phase, n_scripts=n_scripts, kind=kind, first=first, cost_s=cost_s)

        return self.decide(step, "start", take)

    def fits_count(
        self, step: Step, name: str, wanted: int, cost_s: Callable[[int], float], *, first: bool = False
    ) -> int:
        """The most of ``wanted`` units (inner steps, seeds ...) a step may take so that its cost
        ``cost_s(n)`` fits its phase's deadline; 0 when not even one does or the goal is reached.
        A replayed decision, like ``fits``."""
        phase = step.phase.value

        def fits(n: int) -> bool:
            if self.goal_reached(step.phase):
                return False
            return self.budget.can_start(phase, cost_s=cost_s(n), first=first)

        return self.decide_count(step, name, wanted, fits)

    def decide_count(self, step: Step, name: str, wanted: int, fits: Callable[[int], bool]) -> int:
        """The largest count from ``wanted`` down to 1 that ``fits`` (0 if none), chosen once at the
        frontier and replayed from the store ever after, like ``decide``."""
        key = step.decision_key(name)
        stored = self.store.memo_get(key)
        if stored is not None:
            return int(stored["value"])
        value = next((n for n in range(wanted, 0, -1) if fits(n)), 0)
        self.store.memo_put(key, {"value": value})
        return value

    def merge_meta(self, name: str, key: str, value: Any) -> None:
        """Set ``key`` in the run's ``name`` mapping (meta), safely from any thread."""
        with self._best_lock:
            mapping = dict(self.store.get_meta(name) or {})
            mapping[key] = value
            self.store.set_meta(name, mapping)

    def record_ending(self, loop: str, reason: str) -> None:
        """Why a loop (``phase2/t0``, ``phase3``, ...) stopped where it did, for the summary."""
        self.merge_meta("loop_endings", loop, reason)

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

    def ranked(self, scored: list[ScoredScript]) -> list[ScoredScript]:
        """The scored scripts, best first (failed ones left out)."""
        sign = 1.0 if self.metric.lower_is_better else -1.0
        return sorted((s for s in scored if s.score is not None), key=lambda s: sign * float(s.score or 0.0))

    def consider_best(self, scored: ScoredScript, phase: Phase) -> None:
        if scored.score is None:
            return
        with self._best_lock:
            current = self.store.get_meta("best") or {}
            if self.better(scored.score, current.get("score")):
                node = self.store.get_node(scored.node_id) if scored.node_id else None
                if node is not None and node.wall_s:
                    self.budget.note_best(node.wall_s, ensemble=node.agent == Agent.ENSEMBLE.value)
                self.store.set_meta(
                    "best",
                    {
                        "score": scored.score,
                        "node_id": scored.node_id,
                        "phase": phase.value,
                        "ts": time.time(),
                    },
                )
                self.publish(
                    EventType.BEST_UPDATED,
                    f"best {self.task.metric} {scored.score:.6g}",
                    phase=phase.value,
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
        return ScoredScript(
            script=Script(
                code=code, label=node.label, info=node.info.get("script_info", {}), wall_s=node.wall_s
            ),
            node_id=node.id,
            score=node.score,
            error=node.error,
            stdout_tail=self.node_stdout(node, 4000),
        )

    def run_script(
        self,
        step: Step,
        script: Script,
        *,
        agent: Agent,
        parents: list[int] | None = None,
        final: bool = False,
        validator: Validator | None = None,
        extra_info: dict[str, Any] | None = None,
        kind: ScriptKind | None = None,
        env: dict[str, str] | None = None,
        keep_s: float | None = None,
    ) -> ScoredScript:
        """Run one script once (its node is keyed by the step and the script); no debugging.

        ``env`` is extra environment for the script (an evaluation seed); ``keep_s`` is the time its
        timeout keeps free after it (default: the final reserve; see ``Budget.script_timeout``)."""
        key = step.key("run", {"code": script.code, "final": final})
        node = self.store.node_by_key(key)
        if node is not None and node.status in (NodeStatus.DONE, NodeStatus.FAILED):
            return self.scored_from_node(node)
        self.checkpoint()
        phase = step.phase.value
        info = {"script_info": script.info, "final": final, **(extra_info or {})}
        if node is None:
            node = self.store.add_node(
                NodeRecord(
                    step_key=key,
                    parent_ids=parents or [],
                    track=step.track,
                    phase=phase,
                    agent=agent.value,
                    label=script.label,
                    info=info,
                )
            )
        script_dir = self.store.run_dir / "scripts" / f"{node.id:04d}-{agent.value}"
        self._reset_script_dir(script_dir, script, final)
        node = self.store.update_node(
            node.id,
            status=NodeStatus.RUNNING,
            script_path=str((script_dir / SCRIPT_NAME).relative_to(self.store.run_dir)),
            label=script.label,
            info=info,
        )
        self.publish(
            EventType.SCRIPT_STARTED,
            f"{agent.value}: {script.label}",
            phase=phase,
            track=step.track,
            node_id=node.id,
            data={"agent": agent.value, "label": script.label, "step_key": key, "final": final},
        )
        limits = ExecLimits(
            timeout_s=self.budget.script_timeout(self.settings.script_timeout_s, final=final, keep_s=keep_s),
            memory_mb=self.settings.resolved_memory_mb(),
            threads=self.settings.resolved_threads(),
            network=self.settings.network,
            processes=self.settings.max_processes,
            disk_mb=self.settings.disk_mb,
        )
        job = ScriptJob(workdir=script_dir, limits=limits, hide=self._hidden(final), extra_env=env or {})
        skipped = script.info.get(SKIPPED)
        if skipped:
            # What a failed LLM step handed on is recorded as a failed script, never run.
            result = ExecResult(returncode=1, stderr=f"not run: {skipped}", executor="none")
        else:
            result = self._execute(job, node, step, lambda: self._reset_script_dir(script_dir, script, final))
        error = portable(failure_text(result, limits), script_dir) or None
        if error is None and validator is not None:
            error = validator(script_dir)
        check = self.rescorer.check(script_dir, result.score, final=final) if error is None else None
        score = check.score if check is not None else None
        if error is None and not final and score is None:
            error = result.error_text() or "no score"
        ok = error is None
        if check is not None:
            info = {**info, "score_source": check.source, "printed_score": check.printed}
        if not skipped:
            # A final script that ran out of time still says its solution's final costs at least that.
            measured = ok or (final and result.timed_out)
            self._record_cost(result.wall_s, final, measured, parents or [], kind or _kind_of(agent))
        node = self.store.update_node(
            node.id,
            status=NodeStatus.DONE if ok else NodeStatus.FAILED,
            score=score if ok else None,
            returncode=result.returncode,
            wall_s=result.wall_s,
            peak_memory_mb=result.peak_memory_mb,
            finished_at=time.time(),
            error=error[-4000:] if error else None,
            info={**info, **ran_on(result), **_gpu_info(result), "timed_out": result.timed_out},
        )
        for warning in [*result.warnings, *score_warnings(check, agent)]:
            self.publish(EventType.WARNING, warning, phase=phase, track=step.track, node_id=node.id)
        self.publish(
            EventType.SCRIPT_FINISHED,
            f"{agent.value}: {script.label} -> {node.score if ok else 'failed'}",
            phase=phase,
            track=step.track,
            node_id=node.id,
            data={
                "agent": agent.value,
                "label": script.label,
                "score": node.score,
                "score_source": check.source if check is not None else None,
                "printed_score": result.score,
                "status": node.status.value,
                "wall_s": result.wall_s,
                "parents": node.parent_ids,
                "error": (error or "")[-300:],
            },
        )
        return ScoredScript(
            script=script.model_copy(update={"wall_s": result.wall_s}),
            node_id=node.id,
            score=node.score,
            error=node.error,
            stdout_tail=portable(result.stdout[-4000:], script_dir),
        )

    def _reset_script_dir(self, script_dir: Path, script: Script, final: bool) -> None:
        for leftover in ("working", "final"):  # a rerun after a crash starts clean
            shutil.rmtree(script_dir / leftover, ignore_errors=True)
        prepare_script_dir(script_dir, script.code, self.inputs[final])

    def _execute(self, job: ScriptJob, node: NodeRecord, step: Step, reset: Callable[[], None]) -> ExecResult:
        """The executor's result for ``job``; a run the executor could not finish (a worker or node
        died) is run again, ``infra_retries`` times, and then stops the run (resumable)."""
        attempts = self.settings.infra_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                result: ExecResult = self.executor.submit(job).result()
            except CancelledError:
                self.stop_requested.set()
            if self.stop_requested.is_set():
                # Killed by the stop itself: leave the node unfinished so a resume runs it again.
                self.store.update_node(node.id, status=NodeStatus.PENDING)
                raise RunStopped(self.pause_reason or "stop requested")
            if result.infrastructure_error is None:
                return result
            again = attempt < attempts
            self.publish(
                EventType.WARNING,
                f"script #{node.id} could not be run to its end ({result.infrastructure_error}); "
                + (f"running it again (attempt {attempt + 1} of {attempts})" if again else "giving up"),
                phase=step.phase.value,
                track=step.track,
                node_id=node.id,
                data={"infrastructure": result.infrastructure_error, "attempt": attempt},
            )
            if again:
                reset()
        self.store.update_node(node.id, status=NodeStatus.PENDING)
        raise InfrastructureError(
            f"script #{node.id} could not be run {attempts} times ({result.infrastructure_error}); "
            f"continue with `mlestar resume {self.store.run_id}` once the {result.executor} "
            "executor is healthy"
        )

    def _record_cost(
        self, wall_s: float, final: bool, ok: bool, parents: list[int], kind: ScriptKind
    ) -> None:
        """Teach the clock what scripts cost; a final script also how much its solution's dev run took."""
        self.budget.record_script(wall_s, "final" if final else kind)
        if final and ok and parents:
            source = self.store.get_node(parents[0])
            if source is not None and source.wall_s and not source.info.get("final"):
                self.budget.record_final(wall_s, source.wall_s, ensemble=source.agent == Agent.ENSEMBLE.value)

    def _hidden(self, final: bool) -> list[Path]:
        """Paths a script must not read even by following its input symlinks back to the data."""
        store_files = [Path(f"{self.store.db_path}{suffix}") for suffix in ("", "-wal", "-shm")]
        return self.hidden(final) + [p for p in store_files if p.exists()]

    def run_with_debug(
        self,
        step: Step,
        script: Script,
        *,
        agent: Agent,
        ctx: BrainContext,
        parents: list[int] | None = None,
        final: bool = False,
        validator: Validator | None = None,
        extra_info: dict[str, Any] | None = None,
        counts_for_best: bool = True,
    ) -> ScoredScript:
        """Run a script; on failure let the brain debug it up to ``debug_retries`` times."""
        result = self.run_script(
            step,
            script,
            agent=agent,
            parents=parents,
            final=final,
            validator=validator,
            extra_info=extra_info,
        )
        for attempt in range(1, self.settings.debug_retries + 1):
            if result.error is None:
                break
            fix_step = step.at(f"debug{attempt}")
            if not self.decide(fix_step, "start", lambda r=result: self._debug_pays(r, final)):
                self.publish(
                    EventType.WARNING,
                    f"no time left to debug {script.label!r}",
                    phase=step.phase.value,
                    track=step.track,
                    node_id=result.node_id,
                )
                break
            fixed = self.ask(
                fix_step,
                "code",
                self.brain.debug,
                ctx,
                result.script,
                result.error,
                returns=Script | None,
                node_id=result.node_id,
            )
            if fixed is None:
                break
            fixed = fixed.model_copy(update={"label": fixed.label or f"{script.label} (debugged)"})
            result = self.run_script(
                fix_step,
                fixed,
                agent=Agent.DEBUG,
                parents=[result.node_id] if result.node_id else [],
                final=final,
                validator=validator,
                extra_info=extra_info,
                kind=_kind_of(agent),
            )
        if result.error is not None:
            self.publish(
                EventType.WARNING,
                f"{agent.value} script {script.label!r} failed and was dropped",
                phase=step.phase.value,
                track=step.track,
                node_id=result.node_id,
            )
        elif counts_for_best and not final:
            self.consider_best(result, step.phase)
        return result

    def cost_of(self, solution: ScoredScript) -> tuple[float | None, bool]:
        """(its development run's seconds, whether it is an ensemble): what the clock needs to
        expect its final script and its seed runs (None seconds: not run here; the best's are used)."""
        node = self.store.get_node(solution.node_id) if solution.node_id else None
        if node is None or not node.wall_s:
            return None, False
        return node.wall_s, node.agent == Agent.ENSEMBLE.value

    def final_s(self, solution: ScoredScript) -> float:
        """Expected seconds of the final script of ``solution``."""
        wall, ensemble = self.cost_of(solution)
        return self.budget.final_script_s(wall, ensemble=ensemble) if wall else self.budget.final_script_s()

    def final_fits(self, solution: ScoredScript, *, evaluation_seeds: int = 0) -> bool:
        """Whether the final script of ``solution``, after ``evaluation_seeds`` seed runs of it, can
        finish in the time left."""
        budget = self.budget
        if budget.time_limit_s is None:
            return True
        wall, _ = self.cost_of(solution)
        seeds = budget.evaluation_s(evaluation_seeds, dev_wall_s=wall) if evaluation_seeds else 0.0
        return budget.remaining() >= self.final_s(solution) + seeds

    def _debug_pays(self, failed: ScoredScript, final: bool) -> bool:
        """Whether a fix of ``failed`` can still run: a development fix must leave the final reserve,
        and a fix of a script that ran out of time needs a longer timeout than the one it had."""
        node = self.store.get_node(failed.node_id) if failed.node_id else None
        timed_out = node is not None and bool(node.info.get("timed_out"))
        timeout = self.budget.script_timeout(self.settings.script_timeout_s, final=final)
        if timed_out and node is not None and timeout <= 1.05 * (node.wall_s or 0.0):
            return False
        return final or self.budget.fits_after(self.budget.typical_script_s())

    def context_for(self, track: int | None) -> BrainContext:
        """The brain context of a track (or the shared one)."""
        return self.ctx if track is None else self.ctx.for_track(track)

    def full_stdout(self, scored: ScoredScript) -> str:
        node = self.store.get_node(scored.node_id) if scored.node_id else None
        return (self.node_stdout(node, 20_000) if node else "") or scored.stdout_tail

    def phase_started(self, phase: Phase, message: str = "") -> None:
        self.store.set_meta("phase", phase.value)
        self.publish(EventType.PHASE_STARTED, message or phase.value, phase=phase.value)

    def phase_finished(self, phase: Phase, message: str = "", data: dict[str, Any] | None = None) -> None:
        self.publish(
            EventType.PHASE_FINISHED, message or f"{phase.value} done", phase=phase.value, data=data or {}
        )


def distinct(solutions: list[ScoredScript]) -> list[ScoredScript]:
    """``solutions`` without repeats of a script already listed (the same code), in their order."""
    seen: set[str] = set()
    unique = []
    for item in solutions:
        if item.script.code not in seen:
            seen.add(item.script.code)
            unique.append(item)
    return unique


def portable(text: str, script_dir: Path) -> str:
    """``text`` with this machine's paths made relative: the script's folder is ``.`` and the
    Python installation ``<python>``. What scripts print goes into prompts, and no prompt may name
    a path outside the script's own folder (tracebacks carry absolute ones)."""
    if not text:
        return text
    folders = {str(script_dir.resolve()): ".", str(script_dir): "."}
    folders.update({prefix: "<python>" for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}})
    for folder, name in sorted(folders.items(), key=lambda item: -len(item[0])):
        text = text.replace(folder.rstrip("/") + "/", name + "/")
    return text


def failure_text(result: ExecResult, limits: ExecLimits) -> str:
    """What went wrong, for the node and the debugger; a timeout says how long the script ran and
    what it printed last, so the debugger can make it faster."""
    if not result.timed_out:
        return result.error_text()
    parts = [
        f"The script was killed after {result.wall_s:.0f} s: it ran past its time limit of "
        f"{limits.timeout_s:.0f} s. Make it faster (it must finish well within the limit)."
    ]
    if result.stdout.strip():
        parts.append("Its last output (stdout):\n" + result.stdout[-1500:])
    if result.stderr.strip():
        parts.append("stderr:\n" + result.stderr[-1500:])
    return "\n".join(parts)


def score_warnings(check: ScoreCheck | None, agent: Agent) -> list[str]:
    """Warnings about a script's score: printed and recomputed disagree, or predictions unusable."""
    if check is None or not check.problem:
        return []
    if check.source == RECOMPUTED:
        return [f"score disagreement: {check.problem}; the recomputed score is used"]
    if check.source == PRINTED and agent != Agent.ABLATION and not check.problem.startswith("no "):
        return [f"score not verified: {check.problem}; the printed score is used"]
    return []


def _gpu_info(result: ExecResult) -> dict[str, Any]:
    """The device a script ran on and its peak GPU memory, for the node's record."""
    if not result.gpu:
        return {}
    return {"gpu": result.gpu, "gpu_memory_mb": round(result.peak_gpu_memory_mb, 1)}


def _kind_of(agent: Agent) -> ScriptKind:
    """What a script of ``agent`` costs like, for the clock."""
    if agent == Agent.ABLATION:
        return "ablation"
    if agent == Agent.ENSEMBLE:
        return "ensemble"
    return "dev"
