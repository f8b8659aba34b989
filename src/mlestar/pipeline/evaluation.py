"""How sure a run is of its solution: multi-seed evaluation, the final pick, and the target score.

A solution is validated again with other model seeds (the run's split stays fixed; the script
reads the seed from ``contract.SEED_ENV``), and the scores give a mean, a standard deviation and a
95% confidence interval from the t-distribution. The final pick evaluates the best candidate, and
the runner-up when its single score lies inside the best one's interval, and keeps the better mean:
one lucky run on the hold-out does not decide alone. With a target score the run stops as soon as
the best solution's whole interval lies on the better side of it.

Evaluations are kept in the run's meta by node, so the final phase reuses a goal check's seeds and
a resumed run reuses both (the seed runs themselves are nodes, memoized like every script).
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field
from scipy import stats

from mlestar.brain.protocol import ScoredScript
from mlestar.core import contract
from mlestar.core.events import EventType
from mlestar.core.steps import Agent, Phase, Step
from mlestar.pipeline.budget import FINAL_MARGIN
from mlestar.pipeline.engine import Engine, distinct

SEED_BASE = 7919  # evaluation seeds are SEED_BASE, SEED_BASE + 1, ...: none is a script's own seed


class Evaluation(BaseModel):
    """A solution validated with several model seeds."""

    node_id: int
    label: str = ""
    seeds: list[int] = Field(default_factory=list)  # the seeds whose runs gave a score
    scores: list[float] = Field(default_factory=list)
    mean: float | None = None
    std: float | None = None  # sample standard deviation (n - 1)
    ci95: list[float] | None = None  # [low, high]: mean -+ t(0.975, n - 1) * std / sqrt(n)
    includes_selected_run: bool = False  # the run the solution was chosen by is one of the scores
    note: str = ""

    @property
    def n(self) -> int:
        return len(self.scores)


def interval(scores: list[float]) -> tuple[float, float, list[float] | None]:
    """(mean, sample std, 95% t-interval) of ``scores``; no interval from fewer than two."""
    mean = statistics.fmean(scores)
    if len(scores) < 2:
        return mean, 0.0, None
    std = statistics.stdev(scores)
    half = float(stats.t.ppf(0.975, len(scores) - 1)) * std / math.sqrt(len(scores))
    return mean, std, [mean - half, mean + half]


def stored(engine: Engine, node_id: int) -> Evaluation | None:
    found = (engine.store.get_meta("evaluations") or {}).get(str(node_id))
    return Evaluation.model_validate(found) if found else None


def _keep(engine: Engine, evaluation: Evaluation) -> None:
    engine.merge_meta("evaluations", str(evaluation.node_id), evaluation.model_dump(mode="json"))


def evaluate(
    engine: Engine, solution: ScoredScript, seeds: int, phase: Phase, *, needs_final: bool = True
) -> Evaluation:
    """``solution`` validated with ``seeds`` model seeds side by side (fewer when some fail). In
    the final phase the runs may use the reserve, keeping the final script's share when
    ``needs_final``; earlier (a goal check) they keep all of it.

    With fewer than two seed runs scored, the run the solution was chosen by joins as a score, so
    an interval still exists (marked ``includes_selected_run``)."""
    node_id = solution.node_id or 0
    previous = stored(engine, node_id)
    if previous is not None and len(previous.seeds) >= seeds:
        return previous
    label = solution.script.label
    if not contract.reads_seed(solution.script.code):
        # Re-running a script that ignores the seed only repeats its score.
        evaluation = _summarised(
            Evaluation(node_id=node_id, label=label, note=f"the script does not read {contract.SEED_ENV}"),
            solution,
        )
        _keep(engine, evaluation)
        return evaluation
    wanted = [SEED_BASE + i for i in range(seeds)]
    keep_s = None
    if phase == Phase.SUBMIT:
        keep_s = FINAL_MARGIN * engine.final_s(solution) if needs_final else 0.0

    def run(seed: int) -> float | None:
        step = Step(phase, None, ("eval", f"n{node_id}", f"s{seed}"))
        result = engine.run_script(
            step,
            solution.script.model_copy(update={"label": f"{label} (seed {seed})"}),
            agent=Agent.EVALUATION,
            parents=[node_id] if node_id else [],
            extra_info={"seed": seed, "evaluates": node_id},
            kind="dev",
            env={contract.SEED_ENV: str(seed)},
            keep_s=keep_s,
        )
        return result.score if result.error is None else None

    with ThreadPoolExecutor(max_workers=max(1, min(seeds, engine.settings.resolved_workers()))) as pool:
        scores = list(pool.map(run, wanted))
    ran = [(seed, score) for seed, score in zip(wanted, scores, strict=True) if score is not None]
    evaluation = _summarised(
        Evaluation(node_id=node_id, label=label, seeds=[s for s, _ in ran], scores=[v for _, v in ran]),
        solution,
    )
    _keep(engine, evaluation)
    return evaluation


def _summarised(evaluation: Evaluation, solution: ScoredScript) -> Evaluation:
    if evaluation.n < 2 and solution.score is not None:
        evaluation.scores = [solution.score, *evaluation.scores]
        evaluation.includes_selected_run = True
    if evaluation.scores:
        evaluation.mean, evaluation.std, evaluation.ci95 = interval(evaluation.scores)
    return evaluation


def worse_end(engine: Engine, ci95: list[float]) -> float:
    """The end of an interval on the worse side of the metric."""
    return ci95[1] if engine.metric.lower_is_better else ci95[0]


def beyond(engine: Engine, evaluation: Evaluation, target: float) -> bool:
    """Whether the whole interval lies on the better side of ``target``."""
    return evaluation.ci95 is not None and engine.better(worse_end(engine, evaluation.ci95), target)


def seeds_that_fit(engine: Engine, step: Step, solution: ScoredScript, needs_final: bool) -> int:
    """How many evaluation seeds of ``solution`` the time left allows, keeping its final script's
    share when one must still run (a replayed choice)."""
    budget = engine.budget
    wall, _ = engine.cost_of(solution)

    def fits(n: int) -> bool:
        if budget.time_limit_s is None:
            return True
        final = FINAL_MARGIN * engine.final_s(solution) if needs_final else 0.0
        seeds = FINAL_MARGIN * budget.evaluation_s(n, dev_wall_s=wall)  # headroom for their timeouts
        return budget.elapsed() + seeds + final <= budget.time_limit_s

    return engine.decide_count(step, "seeds", engine.settings.final_seeds, fits)


@dataclass
class FinalPick:
    ordered: list[ScoredScript]  # the order the submission tries the candidates in
    evaluation: Evaluation | None  # the first one's, when any seed could run
    by_mean: bool = False  # the first one won on its seed mean against a better single score


def pick_final(engine: Engine, candidates: list[ScoredScript]) -> FinalPick:
    """The candidates in the order the submission should try them, and the pick's evaluation.

    The best candidate is evaluated with the seeds that fit; the runner-up too when its score lies
    inside the best one's interval and time allows; the better mean goes first."""
    ranked = engine.ranked(distinct(candidates))
    if not ranked:
        return FinalPick([], None)
    step = Step(Phase.SUBMIT, None, ("pick",))
    submitted = (engine.store.get_meta("submission") or {}).get("source_node_id")
    if submitted is not None:
        # With a submission in hand, a candidate whose final script cannot finish in the time left
        # is not picked: its seed runs and its final would be time lost (an ensemble's final refits
        # every member on every row).
        node = engine.store.get_node(int(submitted))
        if node is not None and all(c.node_id != submitted for c in ranked):
            ranked = engine.ranked([*ranked, engine.scored_from_node(node)])  # what is submitted competes
        feasible: list[ScoredScript] = []
        for index, candidate in enumerate(ranked):
            if candidate.node_id == submitted:
                feasible += ranked[index:]  # the rest can only stand behind what is submitted
                break
            at = step.at(f"n{candidate.node_id}")
            if engine.decide(at, "final-fits", lambda c=candidate: engine.final_fits(c, evaluation_seeds=1)):
                feasible.append(candidate)
                continue
            engine.note(
                at.path, EventType.BUDGET,
                f"final pick: #{candidate.node_id} left out: its final script would not finish in the time left",
                phase=Phase.SUBMIT.value, node_id=candidate.node_id,
            )  # fmt: skip
        ranked = feasible
        if not ranked:
            return FinalPick([], None)
    needs_final = ranked[0].node_id != submitted
    seeds = seeds_that_fit(engine, step, ranked[0], needs_final)
    if seeds == 0:
        return FinalPick(ranked, None)
    first = evaluate(engine, ranked[0], seeds, Phase.SUBMIT, needs_final=needs_final)
    if len(ranked) < 2 or first.ci95 is None or first.mean is None:
        return FinalPick(ranked, first)
    runner_up = ranked[1]
    # A runner-up scoring worse than the whole interval of the best is not in the race.
    close = runner_up.score is not None and not engine.better(worse_end(engine, first.ci95), runner_up.score)
    budget = engine.budget
    runner_wall, _ = engine.cost_of(runner_up)
    room = engine.decide(
        step, "runner-up", lambda: close and budget.fits_after(budget.evaluation_s(seeds, dev_wall_s=runner_wall))
    )
    if not close or not room:
        return FinalPick(ranked, first)
    second = evaluate(engine, runner_up, seeds, Phase.SUBMIT)
    if second.mean is not None and engine.better(second.mean, first.mean):
        engine.note(
            step.key("swap", (first.node_id, second.node_id)),
            EventType.CHECK,
            f"final pick: #{second.node_id} (mean {second.mean:.6g} over {second.n} seeds) over "
            f"#{first.node_id} (mean {first.mean:.6g}), although its single score was lower",
            phase=Phase.SUBMIT.value,
            node_id=second.node_id,
            data={"kind": "final_pick", "verdict": "runner-up", "kept": True, "reason": "better seed mean"},
        )
        return FinalPick([runner_up, ranked[0], *ranked[2:]], second, by_mean=True)
    return FinalPick(ranked, first)




class GoalWatch:
    """``engine.goal_reached`` for a run with a target score: evaluates each new best solution that
    beats the target on its single score, and says True once one's whole interval does."""

    def __init__(self, engine: Engine, target: float) -> None:
        self.engine = engine
        self.target = target
        self._lock = threading.Lock()
        self._reached = bool((engine.store.get_meta("goal") or {}).get("reached"))
        self._verdicts: dict[int, bool] = {}  # node id -> its interval lies beyond the target

    def __call__(self, phase: Phase) -> bool:
        if self._reached:
            return True
        engine = self.engine
        best = engine.store.get_meta("best") or {}
        if best.get("node_id") is None or not engine.better(best.get("score"), self.target):
            return False
        with self._lock:
            if self._reached:
                return True
            node = engine.store.get_node(int(best["node_id"]))
            if node is None:
                return False
            if node.id in self._verdicts:
                return self._verdicts[node.id]
            previous = stored(engine, node.id)
            evaluation = previous or evaluate(
                engine, engine.scored_from_node(node), max(2, engine.settings.final_seeds), phase
            )
            reached = beyond(engine, evaluation, self.target)
            self._record(evaluation, reached, announce=previous is None)
            self._verdicts[node.id] = self._reached = reached
            return reached

    def _record(self, evaluation: Evaluation, reached: bool, *, announce: bool) -> None:
        engine = self.engine
        goal: dict[str, Any] = {
            "target_score": self.target,
            "reached": reached,
            "node_id": evaluation.node_id,
            "mean": evaluation.mean,
            "ci95": evaluation.ci95,
        }
        if reached:
            goal["at_s"] = round(engine.budget.elapsed(), 1)
            goal["ts"] = time.time()
        engine.store.set_meta("goal", goal)
        if announce:
            ci = evaluation.ci95
            where = f"[{ci[0]:.6g}, {ci[1]:.6g}]" if ci else "no interval"
            engine.publish(
                EventType.CHECK,
                f"target {self.target:g}: {'reached' if reached else 'not yet'}; "
                f"solution #{evaluation.node_id} 95% interval {where} over {evaluation.n} seeds",
                node_id=evaluation.node_id,
                data={"kind": "goal", "verdict": "reached" if reached else "not yet", "kept": reached,
                      "reason": f"interval {where} against target {self.target:g}"},
            )
