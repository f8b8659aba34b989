"""The four phases of MLE-STAR over the engine: initial solution, targeted refinement, ensembling,
final submission.

Departure from the paper, on purpose: the M retrieved candidates are written and scored once and
shared by all L tracks (track l starts from the l-th best candidate and merges the others in rank
order). The tracks still diverge, through different bases and per-track seeds, and the run saves
M x (L - 1) candidate scripts.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from mlestar.brain.protocol import (
    AblationSummary,
    BlockNotFound,
    BlockPlan,
    DataUsageReport,
    EnsembleAttempt,
    LeakageReport,
    ModelCard,
    PlanAttempt,
    RefinementPlan,
    ScoredScript,
    Script,
)
from mlestar.core.events import EventType
from mlestar.core.records import SearchResult
from mlestar.errors import AllCandidatesFailed, InvalidSubmission
from mlestar.grading import validate_submission
from mlestar.pipeline.engine import Engine, RunStopped

LEAKAGE_COLLAPSE = 0.25  # a leakage fix may lower the score, but not by more than this share
USAGE_TOLERANCE = 0.002  # a data-usage fix must not be worse than this share
Searcher = Callable[[str], list[SearchResult]]


# -- phase 1 -----------------------------------------------------------------------------------
def initial_solutions(engine: Engine, searcher: Searcher | None) -> list[ScoredScript]:
    """Retrieve M models, score a candidate for each, then build one merged solution per track."""
    cfg, brain, ctx = engine.config, engine.brain, engine.ctx
    engine.phase_started("phase1", "search and initial solutions")
    summary = engine.memo("p1/summary", lambda: brain.summarize_task(ctx), str)
    results: list[SearchResult] = []
    if searcher is not None:
        queries = engine.memo("p1/queries", lambda: brain.search_queries(ctx, summary), list[str])

        def run_search() -> list[SearchResult]:
            found: list[SearchResult] = []
            for query in queries[:3]:
                found.extend(searcher(query))
            return found

        results = engine.memo("p1/search", run_search, list[SearchResult])
    cards = engine.memo(
        "p1/retrieve", lambda: brain.retrieve_models(ctx, summary, results, cfg.num_models), list[ModelCard]
    )
    engine.emit(
        EventType.STEP_FINISHED,
        f"retrieved {len(cards)} models: {', '.join(c.name for c in cards)}",
        phase="phase1",
        data={"step": "retrieve", "models": [c.model_dump() for c in cards], "search_results": len(results)},
    )

    def candidate(index: int, card: ModelCard) -> ScoredScript:
        script = engine.memo(f"p1/cand{index}/code", lambda: brain.write_candidate(ctx, card), Script)
        script = guard_leakage(engine, f"p1/cand{index}", script, phase="phase1", track=None)
        return engine.run_with_debug(
            f"p1/cand{index}", script, phase="phase1", agent="candidate", extra_info={"model": card.name}
        )

    with ThreadPoolExecutor(max_workers=engine.config.resolved_workers()) as pool:
        scored = list(pool.map(candidate, range(len(cards)), cards))
    ranked = sorted((s for s in scored if s.score is not None), key=_sort_key(engine))
    if not ranked:
        raise AllCandidatesFailed(
            f"all {len(scored)} candidate scripts failed; see the run's scripts for their errors"
        )
    def build_track(track: int) -> ScoredScript:
        tctx = engine.context_for_track(track)
        base = ranked[track % len(ranked)]
        others = [s for s in ranked if s.node_id != base.node_id]
        for step, addition in enumerate(others):
            if not engine.budget.can_start("phase1"):
                break
            merged = engine.memo(
                f"p1/t{track}/merge{step}/code", lambda: brain.merge(tctx, base, addition), Script
            )
            merged = guard_leakage(engine, f"p1/t{track}/merge{step}", merged, phase="phase1", track=track)
            result = engine.run_with_debug(
                f"p1/t{track}/merge{step}",
                merged,
                phase="phase1",
                agent="merger",
                track=track,
                parents=[n for n in (base.node_id, addition.node_id) if n],
                ctx=tctx,
            )
            # Keep a merge only when it is not worse than the base; stop at the first that is.
            if result.score is None or engine.better(base.score, result.score):
                break
            base = result
        if engine.config.leakage_check != "off":
            base = checked_leakage(engine, f"p1/t{track}/leakage", base, track=track)
        if engine.config.data_usage_check:
            base = checked_data_usage(engine, f"p1/t{track}/usage", base, track=track)
        return base

    with ThreadPoolExecutor(max_workers=cfg.num_tracks) as pool:
        winners = list(pool.map(build_track, range(cfg.num_tracks)))
    engine.phase_finished(
        "phase1", data={"tracks": [{"node_id": w.node_id, "score": w.score} for w in winners]}
    )
    return winners


def guard_leakage(engine: Engine, key: str, script: Script, *, phase: str, track: int | None) -> Script:
    """With ``leakage_check: all``, fix a reported leak before the script first runs."""
    if engine.config.leakage_check != "all":
        return script
    ctx = engine.ctx if track is None else engine.context_for_track(track)
    report = engine.memo(f"{key}/leak-check", lambda: engine.brain.check_leakage(ctx, script), LeakageReport)
    if not report.leak:
        return script
    fixed = engine.memo(f"{key}/leak-fix", lambda: engine.brain.fix_leakage(ctx, script, report), Script)
    engine.emit(
        EventType.CHECK,
        f"leakage found and fixed before running: {report.reason}",
        phase=phase,
        track=track,
        data={"kind": "leakage", "verdict": "leak", "kept": True, "reason": report.reason, "stage": "pre-run"},
    )
    return fixed


def checked_leakage(engine: Engine, key: str, solution: ScoredScript, *, track: int) -> ScoredScript:
    """Leakage check on a track's solution, with a score gate on the fix."""
    ctx = engine.context_for_track(track)
    report = engine.memo(
        f"{key}/check", lambda: engine.brain.check_leakage(ctx, solution.script), LeakageReport
    )
    if not report.leak:
        engine.emit(
            EventType.CHECK,
            "no leakage found",
            phase="phase1",
            track=track,
            data={"kind": "leakage", "verdict": "clean", "kept": False, "reason": report.reason},
        )
        return solution
    fixed = engine.memo(f"{key}/fix", lambda: engine.brain.fix_leakage(ctx, solution.script, report), Script)
    result = engine.run_with_debug(
        key, fixed, phase="phase1", agent="leakage", track=track, parents=[solution.node_id or 0], ctx=ctx,
        counts_for_best=False,
    )
    kept, why = False, "the fixed script failed"
    if result.score is not None and solution.score is not None:
        loss = engine.relative_loss(result.score, solution.score)
        kept = loss <= LEAKAGE_COLLAPSE
        why = (
            f"score {solution.score:.6g} -> {result.score:.6g}"
            + ("" if kept else f": a drop of {loss:.0%} is a collapse, fix rejected")
            + ("; a lower score is expected once a leak is removed" if kept and loss > 0 else "")
        )
    engine.emit(
        EventType.CHECK,
        f"leakage: {report.reason}; fix {'kept' if kept else 'rejected'} ({why})",
        phase="phase1",
        track=track,
        node_id=result.node_id,
        data={"kind": "leakage", "verdict": "leak", "kept": kept, "reason": f"{report.reason}; {why}"},
    )
    if kept:
        engine.consider_best(result, "phase1")
        return result
    return solution


def checked_data_usage(engine: Engine, key: str, solution: ScoredScript, *, track: int) -> ScoredScript:
    """Data-usage check; the revised script is kept only if it runs and scores at least as well."""
    ctx = engine.context_for_track(track)
    report = engine.memo(
        f"{key}/check", lambda: engine.brain.check_data_usage(ctx, solution.script), DataUsageReport
    )
    if report.all_used or report.script is None:
        engine.emit(
            EventType.CHECK,
            "data usage: all provided information is used",
            phase="phase1",
            track=track,
            data={"kind": "data_usage", "verdict": "all used", "kept": False, "reason": report.reason},
        )
        return solution
    result = engine.run_with_debug(
        key, report.script, phase="phase1", agent="data_usage", track=track,
        parents=[solution.node_id or 0], ctx=ctx,
    )
    kept = (
        result.score is not None
        and solution.score is not None
        and engine.relative_loss(result.score, solution.score) <= USAGE_TOLERANCE
    )
    engine.emit(
        EventType.CHECK,
        f"data usage: {report.reason}; revision {'kept' if kept else 'rejected'}"
        f" ({solution.score} -> {result.score})",
        phase="phase1",
        track=track,
        node_id=result.node_id,
        data={"kind": "data_usage", "verdict": "revised", "kept": kept, "reason": report.reason},
    )
    return result if kept else solution


# -- phase 2 -----------------------------------------------------------------------------------
def refine_track(engine: Engine, track: int, start: ScoredScript) -> ScoredScript:
    """T outer steps of ablation -> extraction -> K inner plan/implement/score steps."""
    cfg, brain = engine.config, engine.brain
    ctx = engine.context_for_track(track)
    best = start
    summaries: list[AblationSummary] = []
    refined_blocks: list[str] = []
    for outer in range(cfg.outer_steps):
        # One outer step costs an ablation run plus K refinement runs.
        if not engine.budget.can_start("phase2", n_scripts=1 + max(1, cfg.inner_steps) * 0.5):
            engine.emit(EventType.BUDGET, "phase 2 stopped early to keep time", phase="phase2", track=track)
            break
        key = f"p2/t{track}/o{outer}"
        base = best
        ablation = engine.memo(f"{key}/ablation/code", lambda: brain.write_ablation(ctx, base, summaries), Script)
        ablation_run = engine.run_with_debug(
            f"{key}/ablation", ablation, phase="phase2", agent="ablation", track=track,
            parents=[base.node_id or 0], counts_for_best=False, ctx=ctx,
        )
        output = _full_stdout(engine, ablation_run)
        summary = engine.memo(
            f"{key}/ablation/summary",
            lambda: brain.summarize_ablation(ctx, ablation_run.script, output),
            AblationSummary,
        )
        summaries.append(summary)
        engine.emit(
            EventType.ABLATION,
            summary.text[:500],
            phase="phase2",
            track=track,
            node_id=ablation_run.node_id,
            data={"summary": summary.text, "effects": summary.effects, "baseline": summary.baseline_score,
                  "outer_step": outer},
        )
        block_plan = engine.memo(
            f"{key}/extract", lambda: brain.extract_block(ctx, base, summary, refined_blocks), BlockPlan
        )
        refined_blocks.append(block_plan.block)
        history: list[PlanAttempt] = []
        plan: RefinementPlan | None = block_plan.plan
        for inner in range(max(1, cfg.inner_steps)):
            if inner > 0:
                if not engine.budget.can_start("phase2"):
                    break
                plan = engine.memo(
                    f"{key}/i{inner}/plan",
                    lambda: brain.plan_refinement(ctx, base.script, block_plan.block, history),
                    RefinementPlan | None,
                )
            if plan is None:
                break
            current_plan = plan
            attempt = _refine_once(engine, f"{key}/i{inner}", base, block_plan, current_plan, track)
            history.append(PlanAttempt(plan=current_plan, score=attempt.score if attempt else None))
            if attempt is not None and engine.better(attempt.score, best.score):
                best = attempt
        engine.emit(
            EventType.STEP_FINISHED,
            f"track {track} outer step {outer}: block {block_plan.name or '?'}; best {best.score}",
            phase="phase2",
            track=track,
            data={"step": "outer", "outer_step": outer, "block_name": block_plan.name,
                  "plans": [h.model_dump() for h in history], "best": best.score},
        )
    return best


def _refine_once(
    engine: Engine, key: str, base: ScoredScript, block_plan: BlockPlan, plan: RefinementPlan, track: int
) -> ScoredScript | None:
    ctx = engine.context_for_track(track)

    def implement() -> Script | None:
        try:
            return engine.brain.implement_plan(ctx, base.script, block_plan.block, plan)
        except BlockNotFound as exc:
            engine.emit(EventType.WARNING, f"refinement not applied: {exc}", phase="phase2", track=track)
            return None

    script = engine.memo(f"{key}/code", implement, Script | None)
    if script is None:
        return None
    script = guard_leakage(engine, key, script, phase="phase2", track=track)
    return engine.run_with_debug(
        key, script, phase="phase2", agent="refine", track=track, parents=[base.node_id or 0], ctx=ctx,
        extra_info={"plan": plan.text, "block_name": block_plan.name},
    )


def _full_stdout(engine: Engine, scored: ScoredScript) -> str:
    node = engine.store.get_node(scored.node_id) if scored.node_id else None
    return (engine.node_stdout(node, 20_000) if node else "") or scored.stdout_tail


# -- phase 3 -----------------------------------------------------------------------------------
def ensemble(engine: Engine, solutions: list[ScoredScript]) -> ScoredScript | None:
    """R rounds of ensemble plan -> implement -> score over the track winners."""
    cfg, brain, ctx = engine.config, engine.brain, engine.ctx
    usable = _distinct([s for s in solutions if s.score is not None])
    if len(usable) < 2 or cfg.ensemble_rounds == 0:
        engine.emit(EventType.STEP_FINISHED, "ensembling skipped: fewer than two distinct solutions",
                    phase="phase3", data={"step": "skip"})
        return None
    history: list[EnsembleAttempt] = []
    best: ScoredScript | None = None
    for round_ in range(cfg.ensemble_rounds):
        if not engine.budget.can_start("phase3", n_scripts=len(usable)):
            engine.emit(EventType.BUDGET, "phase 3 stopped early to keep time", phase="phase3")
            break
        key = f"p3/r{round_}"
        plan = engine.memo(f"{key}/plan", lambda: brain.plan_ensemble(ctx, usable, history), RefinementPlan | None)
        if plan is None:
            break
        current = plan
        script = engine.memo(f"{key}/code", lambda: brain.implement_ensemble(ctx, usable, current), Script)
        script = guard_leakage(engine, key, script, phase="phase3", track=None)
        result = engine.run_with_debug(
            key, script, phase="phase3", agent="ensemble",
            parents=[s.node_id for s in usable if s.node_id], extra_info={"plan": plan.text},
        )
        history.append(EnsembleAttempt(plan=plan, score=result.score))
        if result.score is not None and (best is None or engine.better(result.score, best.score)):
            best = result
    return best


def _distinct(solutions: list[ScoredScript]) -> list[ScoredScript]:
    seen: set[str] = set()
    unique = []
    for item in solutions:
        if item.script.code not in seen:
            seen.add(item.script.code)
            unique.append(item)
    return unique


# -- phase 4 -----------------------------------------------------------------------------------
def submission_validator(engine: Engine) -> Callable[[Path], str | None]:
    task = engine.task

    def validate(script_dir: Path) -> str | None:
        path = script_dir / "final" / "submission.csv"
        if not path.exists():
            return "The final script did not write ./final/submission.csv"
        try:
            submission = pd.read_csv(path)
        except (ValueError, OSError) as exc:
            return f"./final/submission.csv cannot be read as CSV: {exc}"
        if task.sample_submission_file is None:
            return None
        sample = pd.read_csv(task.data_path(task.sample_submission_file))
        try:
            validate_submission(submission, sample, id_column=task.id_column, metric=engine.metric)
        except InvalidSubmission as exc:
            return f"invalid submission: {exc}"
        return None

    return validate


def write_submission(engine: Engine, key: str, solution: ScoredScript, *, phase: str) -> ScoredScript | None:
    """Turn a solution into its final script, run it on all data, and publish a valid submission."""
    ctx = engine.ctx
    final = engine.memo(f"{key}/code", lambda: engine.brain.write_submission(ctx, solution.script), Script)
    result = engine.run_with_debug(
        key, final, phase=phase, agent="submission", parents=[solution.node_id or 0], final=True,
        validator=submission_validator(engine), extra_info={"dev_score": solution.score},
    )
    if result.error is not None or result.node_id is None:
        return None
    node = engine.store.get_node(result.node_id)
    assert node is not None
    script_dir = (engine.store.run_dir / node.script_path).parent
    run_dir = engine.store.run_dir
    # Write to temporary names first so a crash never leaves a half-written submission.
    for source, name in ((script_dir / "final" / "submission.csv", "submission.csv"),
                         (script_dir / "script.py", "solution.py")):
        tmp = run_dir / f".{name}.tmp"
        tmp.write_bytes(source.read_bytes())
        tmp.replace(run_dir / name)
    engine.store.set_meta(
        "submission",
        {"dev_score": solution.score, "source_node_id": solution.node_id, "final_node_id": result.node_id,
         "final_score": result.score, "phase": phase},
    )
    engine.emit(
        EventType.SUBMISSION_WRITTEN,
        f"submission written from a solution scoring {solution.score}",
        phase=phase,
        node_id=result.node_id,
        data={"path": "submission.csv", "score": solution.score, "node_id": solution.node_id},
    )
    return result


def publish_if_better(engine: Engine, key: str, candidates: list[ScoredScript], *, phase: str) -> None:
    """Write the submission from the best candidate unless the current one is at least as good."""
    current = (engine.store.get_meta("submission") or {}).get("dev_score")
    ordered = sorted((c for c in candidates if c.score is not None), key=_sort_key(engine))
    for index, candidate in enumerate(ordered):
        if current is not None and not engine.better(candidate.score, current):
            return
        if write_submission(engine, f"{key}/c{index}", candidate, phase=phase) is not None:
            return


def _sort_key(engine: Engine) -> Callable[[ScoredScript], float]:
    sign = 1.0 if engine.metric.lower_is_better else -1.0
    return lambda s: sign * float(s.score) if s.score is not None else float("inf")


__all__ = [
    "RunStopped",
    "checked_data_usage",
    "checked_leakage",
    "ensemble",
    "initial_solutions",
    "publish_if_better",
    "refine_track",
    "write_submission",
]
