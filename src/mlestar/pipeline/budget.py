"""Wall-clock planning: which phase may start another step, and how long a script may run.

The run's time is the final reserve (the final submission script and the multi-seed evaluation of
the chosen solution, from measured costs) plus the usable rest. A phase may keep starting steps
until the time the later phases need is all that is left: each later phase claims what its paper
loop would cost, capped at a share of the usable time but never less than ONE step of it. The first
step of a phase may go further, up to the later phases' minimum, so every phase runs at least once
whenever one step of each still fits. Loops ask ``can_start`` before each step with the step's
expected cost (learned from the scripts run so far, by kind), so they shorten as time runs out
instead of overrunning; time they do not need is left to later phases, and when the paper's loops
are done early the pipeline extends them (more outer steps, more ensemble rounds) up to the same
deadlines. Time spent before a resume counts against the budget.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from mlestar.settings import Settings

ScriptKind = Literal["dev", "ablation", "ensemble", "final"]

FINAL_RESERVE_MIN_S = 10.0
FINAL_MARGIN = 1.25  # a final script's (and a seed run's) cost varies from one solution to the next
# Before any final script has run: it validates like a development script, then refits on every row.
DEFAULT_FINAL_PASSES = 2.0
DEFAULT_SCRIPT_S = 30.0  # what a script is assumed to take before any has run (without an allowance)
# The most of the usable time a later phase claims from the phases before it.
CLAIM_CAP = {"phase2": 0.45, "phase3": 0.15}
LATER = {"phase1": ("phase2", "phase3"), "phase2": ("phase3",), "phase3": ()}


def _now() -> float:
    return time.monotonic()


def _solution_kind(ensemble: bool) -> str:
    return "ensemble" if ensemble else "solution"


@dataclass(frozen=True)
class LoopPlan:
    """The loop sizes the clock plans for (the run's settings)."""

    num_models: int = 4
    outer_steps: int = 4
    inner_steps: int = 4
    ensemble_rounds: int = 5
    tracks: int = 2
    workers: int = 2
    final_seeds: int = 1

    @classmethod
    def of(cls, settings: Settings) -> LoopPlan:
        return cls(
            num_models=settings.num_models,
            outer_steps=settings.outer_steps,
            inner_steps=settings.inner_steps,
            ensemble_rounds=settings.ensemble_rounds,
            tracks=settings.num_tracks,
            workers=settings.resolved_workers(),
            final_seeds=settings.final_seeds,
        )

    def waves(self, jobs: int) -> int:
        """Rounds of ``jobs`` scripts run side by side on the workers."""
        return math.ceil(max(0, jobs) / max(1, self.workers))


def script_allowance(
    time_limit_s: float | None, upper: float, plan: LoopPlan, final_rows_ratio: float = 1.0
) -> float:
    """How long one script may run so that the shortest complete run fits the time limit.

    That run is, one after the other on each worker: the candidates, a merge, the first submission,
    an ablation and a refinement, an ensemble, one wave of evaluation seeds and the final script (a
    final script validates and then refits on every row: about two development scripts, more when
    the development subsample is smaller than the train file). Brains size their models to it.
    """
    if time_limit_s is None:
        return upper
    final = DEFAULT_FINAL_PASSES * max(1.0, final_rows_ratio)
    slots = plan.waves(plan.num_models) + (plan.num_models > 1) + final
    slots += 2.0 * (plan.outer_steps > 0) + (plan.ensemble_rounds > 0 and plan.tracks > 1)
    slots += (plan.final_seeds > 1) + final
    return max(5.0, min(upper, time_limit_s / slots))


@dataclass
class Budget:
    time_limit_s: float | None
    spent_before_s: float = 0.0  # active time of earlier sessions of this run (resume)
    plan: LoopPlan = field(default_factory=LoopPlan)
    final_rows_ratio: float = 1.0  # rows the final script learns from / rows of the dev subsample
    allowance_s: float | None = None  # what brains size a script to (the first guess of its cost)
    started_at: float = field(default_factory=lambda: _now())
    _walls: dict[str, list[float]] = field(default_factory=dict)
    # final / development wall time, measured per kind of solution: an ensemble's final script
    # validates and refits every member, which a single solution's ratio says nothing about
    _final_passes: dict[str, list[float]] = field(default_factory=dict)
    _best_wall: float | None = None
    _best_is_ensemble: bool = False
    _best_single_wall: float | None = None  # the best non-ensemble solution's run: what refinements cost
    # After the paper's loops (extension passes), phase 3 claims one ensemble round, not R.
    extending: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def elapsed(self) -> float:
        return self.spent_before_s + (_now() - self.started_at)

    def remaining(self) -> float:
        if self.time_limit_s is None:
            return float("inf")
        return max(0.0, self.time_limit_s - self.elapsed())

    # -- what scripts cost ----------------------------------------------------------------------
    def record_script(self, wall_s: float, kind: ScriptKind = "dev") -> None:
        with self._lock:
            self._walls.setdefault(kind, []).append(wall_s)

    def record_final(self, final_wall_s: float, dev_wall_s: float, *, ensemble: bool = False) -> None:
        """A final script took ``final_wall_s`` (at least that, when it ran out of time) for a
        solution whose development run took ``dev_wall_s``."""
        if dev_wall_s > 0:
            with self._lock:
                self._final_passes.setdefault(_solution_kind(ensemble), []).append(final_wall_s / dev_wall_s)

    def note_best(self, dev_wall_s: float, *, ensemble: bool = False) -> None:
        """The development run of the current best solution (the likely one to submit) took this long."""
        with self._lock:
            self._best_wall = dev_wall_s
            self._best_is_ensemble = ensemble
            if not ensemble:
                self._best_single_wall = dev_wall_s

    def typical_script_s(self, kind: ScriptKind = "dev") -> float:
        with self._lock:
            own = self._walls.get(kind, [])
            dev = self._walls.get("dev", [])
            # Refinements and ensembles are built from the best solution, which costs more than the
            # single-model candidates that fill the median: without this floor phase-2 steps ran
            # past their deadline and left no time for phase 3's first round (crashes, 20k rows).
            best = self._best_single_wall or 0.0
        if own and kind != "dev":
            return max(1.0, statistics.median(own[-20:]))
        typical = max(1.0, best, statistics.median(dev[-20:]) if dev else self.allowance_s or DEFAULT_SCRIPT_S)
        if kind == "ablation":
            return 2.0 * typical  # the baseline and its variants, sized by the brain to about two scripts
        if kind == "ensemble":
            return max(1, self.plan.tracks) * typical  # every member trains again
        return typical

    def final_passes(self, ensemble: bool) -> float:
        """Final / development wall time expected for a solution of this kind: the largest measured,
        else a validation plus a refit on every row (for an ensemble, never less than a single
        solution's measured ratio)."""
        with self._lock:
            own = self._final_passes.get(_solution_kind(ensemble), [])
            single = self._final_passes.get(_solution_kind(False), [])
        if own:
            return max(own)
        default = DEFAULT_FINAL_PASSES * max(1.0, self.final_rows_ratio)
        return max([default, *single]) if ensemble else default

    def _solution_cost(self, dev_wall_s: float | None, ensemble: bool | None) -> tuple[float, bool]:
        with self._lock:
            wall = dev_wall_s if dev_wall_s is not None else self._best_wall
            kind = self._best_is_ensemble if ensemble is None else ensemble
        return (wall if wall is not None else self.typical_script_s()), kind

    def final_script_s(self, dev_wall_s: float | None = None, *, ensemble: bool | None = None) -> float:
        """Expected wall time of the final script of a solution whose development run took
        ``dev_wall_s`` (default: the current best's): the measured final/development ratio of its
        kind (the final fit learns from every row) times that run."""
        wall, kind = self._solution_cost(dev_wall_s, ensemble)
        return self.final_passes(kind) * wall

    def evaluation_s(self, seeds: int | None = None, *, dev_wall_s: float | None = None) -> float:
        """Wall time of ``seeds`` evaluation runs of the best solution (or of one whose development
        run took ``dev_wall_s``) side by side (default: the first wave of them, all the reserve
        plans for; more run when time is left at the end)."""
        if seeds is None:
            seeds = min(self.plan.final_seeds, self.plan.workers) if self.plan.final_seeds > 1 else 0
        wall, _ = self._solution_cost(dev_wall_s, None)
        return self.plan.waves(seeds) * wall

    def final_reserve_s(self, dev_wall_s: float | None = None, *, ensemble: bool | None = None) -> float:
        """The final script and a wave of evaluation seeds of the best solution (or of a solution
        of ``dev_wall_s`` seconds, were it to become the best)."""
        # The seed runs get the final script's margin too: their timeouts are cut from what is left,
        # and a seed run given exactly its expected time is killed about half the time (penguins).
        work = self.final_script_s(dev_wall_s, ensemble=ensemble) + self.evaluation_s(dev_wall_s=dev_wall_s)
        return max(FINAL_RESERVE_MIN_S, FINAL_MARGIN * work)

    # -- phases ---------------------------------------------------------------------------------
    def usable_s(self) -> float:
        return max(0.0, (self.time_limit_s or 0.0) - self.final_reserve_s())

    def outer_step_s(self, inner_steps: int) -> float:
        """One outer refinement step of one track: an ablation and ``inner_steps`` refinements."""
        return self.typical_script_s("ablation") + max(1, inner_steps) * self.typical_script_s()

    def track_step_s(self, inner_steps: int) -> float:
        """Wall time of one outer step while every track takes one: tracks share the workers."""
        return self.plan.waves(self.plan.tracks) * self.outer_step_s(inner_steps)

    def need_s(self, phase: str) -> tuple[float, float]:
        """(one step, the whole paper loop) of ``phase`` in seconds, all tracks together."""
        plan = self.plan
        if phase == "phase2" and plan.outer_steps > 0:
            return self.track_step_s(1), plan.outer_steps * self.track_step_s(plan.inner_steps)
        if phase == "phase3" and plan.ensemble_rounds > 0 and plan.tracks > 1:
            one = self.typical_script_s("ensemble")
            return one, plan.ensemble_rounds * one
        return 0.0, 0.0

    def claimed_s(self, phase: str) -> float:
        """What ``phase`` keeps from the phases before it: its loop, capped, but at least one step."""
        minimum, planned = self.need_s(phase)
        if self.extending:
            return minimum
        return min(planned, max(minimum, CLAIM_CAP.get(phase, 0.0) * self.usable_s()))

    def phase_deadline(self, phase: str, *, first: bool = False) -> float:
        """Elapsed-seconds mark by which ``phase`` should stop starting new work; a phase's
        ``first`` step may go on until only the later phases' first steps are left. A later phase
        whose single step no longer fits at all keeps nothing: time is not held for what cannot run.
        Phase 1's merges also keep the first submission's final script, which runs right after them
        (its candidates do not: a run needs two of them more than it needs merges)."""
        if self.time_limit_s is None:
            return float("inf")
        usable, left = self.usable_s(), self.usable_s() - self.elapsed()
        kept = self.final_script_s() if phase == "phase1" and not first else 0.0
        for later in LATER.get(phase, ()):
            minimum = self.need_s(later)[0]
            if kept + minimum > left:
                continue
            kept += minimum if first else self.claimed_s(later)
        return usable - kept

    def can_start(
        self,
        phase: str,
        n_scripts: float = 1.0,
        *,
        kind: ScriptKind = "dev",
        first: bool = False,
        cost_s: float | None = None,
    ) -> bool:
        """Whether a step of about ``n_scripts`` scripts of ``kind`` (or of ``cost_s`` seconds) fits
        before the phase deadline."""
        if self.time_limit_s is None:
            return True
        cost = n_scripts * self.typical_script_s(kind) if cost_s is None else cost_s
        return self.elapsed() + cost <= self.phase_deadline(phase, first=first)

    def fits_after(self, seconds: float) -> bool:
        """Whether ``seconds`` more work still leaves the final reserve (True without a limit)."""
        return self.time_limit_s is None or self.elapsed() + seconds <= self.usable_s()

    def script_timeout(self, upper: float, *, final: bool = False, keep_s: float | None = None) -> float:
        """Timeout for the next script: never past the budget, keeping ``keep_s`` seconds free after
        it (by default the final reserve; nothing for a final script)."""
        if self.time_limit_s is None:
            return upper
        if keep_s is None:
            keep_s = 0.0 if final else self.final_reserve_s()
        return max(5.0, min(upper, self.remaining() - keep_s))

    def snapshot(self) -> dict[str, float | None]:
        """The clock's current view, for the summary and the events."""
        return {
            "elapsed_s": round(self.elapsed(), 1),
            "time_limit_s": self.time_limit_s,
            "typical_script_s": round(self.typical_script_s(), 1),
            "final_script_s": round(self.final_script_s(), 1),
            "final_reserve_s": round(self.final_reserve_s(), 1) if self.time_limit_s else None,
        }
