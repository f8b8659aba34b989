"""The four phases of MLE-STAR over the engine: initial solution, targeted refinement, ensembling,
final submission.

Departure from the paper, on purpose: the M retrieved candidates are written and scored once and
shared by all L tracks (track l starts from the l-th best candidate and merges the candidates ranked
below it, best first). No two tracks can end with the same set of candidates (track l never holds
the bases of the tracks before it), they run with their own seeds, and the run saves M x (L - 1)
candidate scripts; a track that would have no candidate of its own is not started.

With a time limit the paper's loops are the floor, not the ceiling ("anytime"): time they leave
is spent on extension steps (more outer steps per track, more ensemble rounds, then further passes
of both) unless ``extend`` is off. Every extension step has a place of its own (``x<n>``, and
``e<pass>`` for later passes), so its key never collides with a paper step's.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mlestar.brain.protocol import (
    AblationSummary,
    BlockNotFound,
    BlockPlan,
    BrainContext,
    DataUsageReport,
    EnsembleAttempt,
    LeakageReport,
    ModelCard,
    PlanAttempt,
    RefinementPlan,
    ScoredScript,
    Script,
)
from mlestar.core.contract import FINAL_DIR, SCRIPT_NAME, SUBMISSION_NAME
from mlestar.core.events import EventType
from mlestar.core.records import SearchResult
from mlestar.core.steps import Agent, Phase, Step, fingerprint
from mlestar.errors import AllCandidatesFailed, InvalidSubmission
from mlestar.exec.workspace import unsafe_output
from mlestar.grading import validate_submission
from mlestar.pipeline.engine import Engine, distinct

LEAKAGE_COLLAPSE = 0.25  # a leakage fix may lower the score, but not by more than this share
USAGE_TOLERANCE = 0.002  # a data-usage fix must not be worse than this share
EXTENSION_PATIENCE = 3  # extension steps in a row without a better score before a loop gives up
Searcher = Callable[[str], list[SearchResult]]


# -- phase 1 -----------------------------------------------------------------------------------
def initial_solutions(engine: Engine, searcher: Searcher | None) -> list[ScoredScript]:
    """Retrieve M models, score a candidate for each, then build one merged solution per track."""
    settings, brain, ctx = engine.settings, engine.brain, engine.ctx
    phase = Step(Phase.SEARCH)
    engine.phase_started(Phase.SEARCH, "search and initial solutions")
    summary = engine.ask(phase.at("summary"), "text", brain.summarize_task, ctx, returns=str)
    results: list[SearchResult] = []
    if searcher is not None:
        queries = engine.ask(
            phase.at("queries"), "list", brain.search_queries, ctx, summary, returns=list[str]
        )

        def run_search(queries: list[str]) -> list[SearchResult]:
            return [found for query in queries[:3] for found in searcher(query)]

        results = engine.ask(phase.at("search"), "results", run_search, queries, returns=list[SearchResult])
    retrieve = phase.at("retrieve")
    cards = engine.ask(
        retrieve,
        "cards",
        brain.retrieve_models,
        ctx,
        summary,
        results,
        settings.num_models,
        returns=list[ModelCard],
    )
    engine.note(
        retrieve.path,
        EventType.STEP_FINISHED,
        f"retrieved {len(cards)} models: {', '.join(c.name for c in cards)}",
        phase=Phase.SEARCH.value,
        data={"step": "retrieve", "models": [c.model_dump() for c in cards], "search_results": len(results)},
    )

    workers = settings.resolved_workers()

    def candidate(index: int, card: ModelCard) -> ScoredScript | None:
        step = phase.at(f"cand{index}")
        # The first wave always runs; a later candidate only while it still fits (it would be killed
        # by a timeout cut down to the little time left, and take its time with it).
        if index >= workers and not engine.fits(step, first=True):
            engine.note(step.path, EventType.BUDGET, f"candidate {card.name} skipped to keep time",
                        phase=Phase.SEARCH.value)
            return None
        script = engine.ask(step, "code", brain.write_candidate, ctx, card, returns=Script)
        script = guard_leakage(engine, step, script, ctx)
        return engine.run_with_debug(
            step, script, agent=Agent.CANDIDATE, ctx=ctx, extra_info={"model": card.name}
        )

    with ThreadPoolExecutor(max_workers=workers) as pool:
        scored = [s for s in pool.map(candidate, range(len(cards)), cards) if s is not None]
    ranked = engine.ranked(scored)
    if not ranked:
        raise AllCandidatesFailed(
            f"all {len(scored)} candidate scripts failed; see the run's scripts for their errors"
        )

    def build_track(track: int) -> ScoredScript:
        tctx = engine.context_for(track)
        start = Step(Phase.SEARCH, track)
        # Track l starts from the l-th best candidate and merges only those ranked below it, so it
        # never holds an earlier track's base: no two tracks can end with the same candidates.
        base = ranked[track]
        others = ranked[track + 1 :]
        for index, addition in enumerate(others):
            step = start.at(f"merge{index}")
            if not engine.fits(step):
                break
            merged = engine.ask(
                step, "code", brain.merge, tctx, base, addition, returns=Script, node_id=base.node_id
            )
            merged = guard_leakage(engine, step, merged, tctx)
            result = engine.run_with_debug(
                step,
                merged,
                agent=Agent.MERGER,
                ctx=tctx,
                parents=[n for n in (base.node_id, addition.node_id) if n],
            )
            # Keep a merge only when it is not worse than the base; stop at the first that is.
            if result.score is None or engine.better(base.score, result.score):
                break
            base = result
        if settings.leakage_check != "off":
            base = checked_leakage(engine, start.at("leakage"), base, tctx)
        if settings.data_usage_check:
            base = checked_data_usage(engine, start.at("usage"), base, tctx)
        return base

    tracks = min(settings.num_tracks, len(ranked))
    if tracks < settings.num_tracks:
        engine.note(
            phase.at("tracks").path,
            EventType.STEP_FINISHED,
            f"{tracks} track(s) instead of {settings.num_tracks}: only {len(ranked)} candidate(s) scored, "
            "and tracks starting from the same candidate would coincide",
            phase=Phase.SEARCH.value,
            data={"step": "tracks", "tracks": tracks, "candidates": len(ranked)},
        )
    with ThreadPoolExecutor(max_workers=tracks) as pool:
        winners = list(pool.map(build_track, range(tracks)))
    engine.phase_finished(
        Phase.SEARCH, data={"tracks": [{"node_id": w.node_id, "score": w.score} for w in winners]}
    )
    return winners


def guard_leakage(engine: Engine, step: Step, script: Script, ctx: BrainContext) -> Script:
    """With ``leakage_check: all``, fix a reported leak before the script first runs."""
    if engine.settings.leakage_check != "all":
        return script
    brain = engine.brain
    report = engine.ask(step, "leak-check", brain.check_leakage, ctx, script, returns=LeakageReport)
    if not report.leak:
        return script
    fixed = engine.ask(step, "leak-fix", brain.fix_leakage, ctx, script, report, returns=Script)
    engine.note(
        step.key("leak-fix", (ctx, script, report)),
        EventType.CHECK,
        f"leakage found and fixed before running: {report.reason}",
        phase=step.phase.value,
        track=step.track,
        data={
            "kind": "leakage",
            "verdict": "leak",
            "kept": True,
            "reason": report.reason,
            "stage": "pre-run",
        },
    )
    return fixed


def checked_leakage(engine: Engine, step: Step, solution: ScoredScript, ctx: BrainContext) -> ScoredScript:
    """Leakage check on a track's solution, with a score gate on the fix."""
    brain, phase = engine.brain, step.phase.value
    report = engine.ask(step, "check", brain.check_leakage, ctx, solution.script, returns=LeakageReport)
    verdict_key = step.key("check", (ctx, solution.script))
    if not report.leak:
        engine.note(
            verdict_key,
            EventType.CHECK,
            "no leakage found",
            phase=phase,
            track=step.track,
            data={"kind": "leakage", "verdict": "clean", "kept": False, "reason": report.reason},
        )
        return solution
    fixed = engine.ask(step, "fix", brain.fix_leakage, ctx, solution.script, report, returns=Script)
    result = engine.run_with_debug(
        step, fixed, agent=Agent.LEAKAGE, ctx=ctx, parents=[solution.node_id or 0], counts_for_best=False
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
    engine.note(
        verdict_key,
        EventType.CHECK,
        f"leakage: {report.reason}; fix {'kept' if kept else 'rejected'} ({why})",
        phase=phase,
        track=step.track,
        node_id=result.node_id,
        data={"kind": "leakage", "verdict": "leak", "kept": kept, "reason": f"{report.reason}; {why}"},
    )
    if kept:
        engine.consider_best(result, step.phase)
        return result
    return solution


def checked_data_usage(engine: Engine, step: Step, solution: ScoredScript, ctx: BrainContext) -> ScoredScript:
    """Data-usage check; the revised script is kept only if it runs and scores at least as well."""
    phase = step.phase.value
    report = engine.ask(
        step, "check", engine.brain.check_data_usage, ctx, solution.script, returns=DataUsageReport
    )
    verdict_key = step.key("check", (ctx, solution.script))
    if report.all_used or report.script is None:
        engine.note(
            verdict_key,
            EventType.CHECK,
            "data usage: all provided information is used",
            phase=phase,
            track=step.track,
            data={"kind": "data_usage", "verdict": "all used", "kept": False, "reason": report.reason},
        )
        return solution
    result = engine.run_with_debug(
        step, report.script, agent=Agent.DATA_USAGE, ctx=ctx, parents=[solution.node_id or 0]
    )
    kept = (
        result.score is not None
        and solution.score is not None
        and engine.relative_loss(result.score, solution.score) <= USAGE_TOLERANCE
    )
    engine.note(
        verdict_key,
        EventType.CHECK,
        f"data usage: {report.reason}; revision {'kept' if kept else 'rejected'}"
        f" ({solution.score} -> {result.score})",
        phase=phase,
        track=step.track,
        node_id=result.node_id,
        data={"kind": "data_usage", "verdict": "revised", "kept": kept, "reason": report.reason},
    )
    return result if kept else solution


# -- phase 2 -----------------------------------------------------------------------------------
@dataclass
class Track:
    """A refinement track's state across its outer steps (and extension passes)."""

    index: int
    best: ScoredScript
    summaries: list[AblationSummary] = field(default_factory=list)
    refined_blocks: list[str] = field(default_factory=list)
    # Plans tried per (base script, block): a block that comes up again on the same base continues
    # where it left off instead of trying the same plans again.
    tried: dict[str, list[PlanAttempt]] = field(default_factory=dict)
    ran: dict[str, ScoredScript] = field(default_factory=dict)  # code -> result: nothing runs twice
    outer_done: int = 0


def refine_tracks(engine: Engine, winners: list[ScoredScript]) -> list[Track]:
    """Phase 2 on every track in parallel: the paper's T outer steps, then extension steps."""
    tracks = [Track(index, start, ran={start.script.code: start}) for index, start in enumerate(winners)]
    with ThreadPoolExecutor(max_workers=max(1, len(tracks))) as pool:
        list(pool.map(lambda track: refine_track(engine, track), tracks))
    return tracks


def refine_track(engine: Engine, track: Track, pass_: int = 0) -> ScoredScript:
    """T outer steps of ablation -> extraction -> K inner plan/implement/score steps (pass 0), then,
    with time left and ``extend`` on, more outer steps until the deadline or until
    ``EXTENSION_PATIENCE`` of them in a row find nothing better. Returns the track's best."""
    settings = engine.settings
    paper = settings.outer_steps if pass_ == 0 else 0
    extend = settings.extend and settings.time_limit_s is not None
    stalled, n = 0, 0
    while True:
        if n >= paper and not extend:
            reason = "the paper's T outer steps are done" + (
                "" if settings.time_limit_s is not None else " (no time limit to extend into)"
            ) + ("" if settings.extend else " (extension is off)")
            break
        if n >= paper and stalled >= EXTENSION_PATIENCE:
            reason = f"{stalled} extension steps in a row found nothing better"
            break
        place = (f"o{n}",) if n < paper else ((f"x{n - paper}",) if pass_ == 0 else (f"e{pass_}", f"x{n}"))
        step = Step(Phase.REFINE, track.index, place)
        # One outer step costs an ablation run plus its inner runs: as many of those as fit.
        first = track.outer_done == 0
        wanted = max(1, settings.inner_steps)
        inner = engine.fits_count(step, "inner", wanted, engine.budget.track_step_s, first=first)
        if inner == 0:
            reason = "stopped to keep time for what follows"
            engine.note(
                step.path, EventType.BUDGET, f"phase 2 {reason}", phase=Phase.REFINE.value, track=track.index
            )
            break
        before = track.best
        outer_step(engine, track, step, inner, label=place[-1])
        n += 1
        if n > paper:  # only extension steps count towards giving up
            stalled = 0 if engine.better(track.best.score, before.score) else stalled + 1
    engine.record_ending(f"phase2/t{track.index}" + (f"/pass{pass_}" if pass_ else ""), reason)
    return track.best


def outer_step(engine: Engine, track: Track, step: Step, inner_steps: int, label: str) -> None:
    """One ablation -> extraction -> up to ``inner_steps`` refinements, from the track's best."""
    brain = engine.brain
    ctx = engine.context_for(track.index)
    base = track.best
    first = track.outer_done == 0
    wave = engine.budget.plan.waves(engine.budget.plan.tracks)
    ablation_step = step.at("ablation")
    ablation = engine.ask(
        ablation_step,
        "code",
        brain.write_ablation,
        ctx,
        base,
        list(track.summaries),
        returns=Script,
        node_id=base.node_id,
    )
    ablation_run = track.ran.get(ablation.code) or engine.run_with_debug(
        ablation_step,
        ablation,
        agent=Agent.ABLATION,
        ctx=ctx,
        parents=[base.node_id or 0],
        counts_for_best=False,
    )
    track.ran[ablation.code] = ablation_run
    output = engine.full_stdout(ablation_run)
    summary = engine.ask(
        ablation_step,
        "summary",
        brain.summarize_ablation,
        ctx,
        ablation_run.script,
        output,
        returns=AblationSummary,
        node_id=ablation_run.node_id,
    )
    track.summaries.append(summary)
    engine.note(
        ablation_step.key("summary", (ctx, ablation_run.script, output)),
        EventType.ABLATION,
        summary.text[:500],
        phase=Phase.REFINE.value,
        track=track.index,
        node_id=ablation_run.node_id,
        data={
            "summary": summary.text,
            "effects": summary.effects,
            "baseline": summary.baseline_score,
            "outer_step": track.outer_done,
        },
    )
    block_plan = engine.ask(
        step,
        "extract",
        brain.extract_block,
        ctx,
        base,
        summary,
        list(track.refined_blocks),
        returns=BlockPlan,
        node_id=base.node_id,
    )
    if not block_plan.block.strip():
        track.outer_done += 1  # the extraction's LLM call failed (a warning says so): no block to refine
        return
    track.refined_blocks.append(block_plan.block)
    history = track.tried.setdefault(fingerprint((base.script.code, block_plan.block)), [])
    start_count = len(history)
    plan: RefinementPlan | None = block_plan.plan
    if any(_same_plan(h.plan, plan) for h in history):
        plan = None  # the extractor's first idea was tried on this base before: ask for the next one
    for inner in range(inner_steps):
        inner_step = step.at(f"i{inner}")
        # The tracks share the workers: a refinement takes a wave of scripts of wall time.
        if inner > 0 and not engine.fits(inner_step, n_scripts=wave, first=first):
            break
        if inner > 0 or plan is None:
            plan = engine.ask(
                inner_step,
                "plan",
                brain.plan_refinement,
                ctx,
                base.script,
                block_plan.block,
                list(history),
                returns=RefinementPlan | None,
                node_id=base.node_id,
            )
        if plan is None:
            break
        attempt = _refine_once(engine, inner_step, base, block_plan, plan, ctx, track.ran)
        history.append(PlanAttempt(plan=plan, score=attempt.score if attempt else None))
        if attempt is not None and engine.better(attempt.score, track.best.score):
            track.best = attempt
    track.outer_done += 1
    engine.note(
        step.key("outer", (base, block_plan, history)),
        EventType.STEP_FINISHED,
        f"track {track.index} outer step {label}: block {block_plan.name or '?'}; best {track.best.score}",
        phase=Phase.REFINE.value,
        track=track.index,
        data={
            "step": "outer",
            "outer_step": track.outer_done - 1,
            "place": label,
            "block_name": block_plan.name,
            "plans": [h.model_dump() for h in history[start_count:]],
            "best": track.best.score,
        },
    )


def _same_plan(a: RefinementPlan, b: RefinementPlan) -> bool:
    """Plans that ask for the same change (a structured plan by its data, a plain one by its words)."""
    return a.data == b.data if (a.data or b.data) else a.text.strip() == b.text.strip()


def _refine_once(
    engine: Engine,
    step: Step,
    base: ScoredScript,
    block_plan: BlockPlan,
    plan: RefinementPlan,
    ctx: BrainContext,
    ran: dict[str, ScoredScript],
) -> ScoredScript | None:
    def implement(ctx: BrainContext, script: Script, block: str, plan: RefinementPlan) -> Script | None:
        try:
            return engine.brain.implement_plan(ctx, script, block, plan)
        except BlockNotFound as exc:
            engine.publish(EventType.WARNING, f"refinement not applied: {exc}")
            return None

    script = engine.ask(
        step,
        "code",
        implement,
        ctx,
        base.script,
        block_plan.block,
        plan,
        returns=Script | None,
        node_id=base.node_id,
    )
    if script is None:
        return None
    script = guard_leakage(engine, step, script, ctx)
    if script.code in ran:  # the plan led back to a script this track already ran
        return ran[script.code]
    result = engine.run_with_debug(
        step,
        script,
        agent=Agent.REFINE,
        ctx=ctx,
        parents=[base.node_id or 0],
        extra_info={"plan": plan.text, "block_name": block_plan.name},
    )
    ran[script.code] = result
    return result


# -- phase 3 -----------------------------------------------------------------------------------
def ensemble(engine: Engine, solutions: list[ScoredScript], pass_: int = 0) -> ScoredScript | None:
    """R rounds of ensemble plan -> implement -> score over the track winners (pass 0), then, with
    time left and ``extend`` on, more rounds while the brain has plans and they still help."""
    settings, brain, ctx = engine.settings, engine.brain, engine.ctx
    usable = distinct([s for s in solutions if s.score is not None])
    loop = "phase3" + (f"/pass{pass_}" if pass_ else "")
    root = Step(Phase.ENSEMBLE, None, (f"e{pass_}",) if pass_ else ())
    if len(usable) < 2 or settings.ensemble_rounds == 0:
        reason = "fewer than two distinct solutions" if len(usable) < 2 else "R = 0"
        engine.note(
            root.path,
            EventType.STEP_FINISHED,
            f"ensembling skipped: {reason}",
            phase=Phase.ENSEMBLE.value,
            data={"step": "skip"},
        )
        engine.record_ending(loop, f"skipped: {reason}")
        return None
    paper = settings.ensemble_rounds if pass_ == 0 else 0
    extend = settings.extend and settings.time_limit_s is not None
    history: list[EnsembleAttempt] = []
    best: ScoredScript | None = None
    stalled, n = 0, 0
    while True:
        if n >= paper and not extend:
            reason = "the paper's R rounds are done"
            break
        if n >= paper and stalled >= EXTENSION_PATIENCE:
            reason = f"{stalled} extension rounds in a row found nothing better"
            break
        step = root.at(f"r{n}" if n < paper else f"x{n - paper}")
        if not engine.fits(step, kind="ensemble", first=n == 0):
            reason = "stopped to keep time for the final submission"
            engine.note(step.path, EventType.BUDGET, f"phase 3 {reason}", phase=Phase.ENSEMBLE.value)
            break
        plan = engine.ask(
            step, "plan", brain.plan_ensemble, ctx, usable, list(history), returns=RefinementPlan | None
        )
        if plan is None:
            reason = "the brain has no further ensemble plan"
            break
        script = engine.ask(step, "code", brain.implement_ensemble, ctx, usable, plan, returns=Script)
        script = guard_leakage(engine, step, script, ctx)
        result = engine.run_with_debug(
            step,
            script,
            agent=Agent.ENSEMBLE,
            ctx=ctx,
            parents=[s.node_id for s in usable if s.node_id],
            extra_info={"plan": plan.text},
        )
        history.append(EnsembleAttempt(plan=plan, score=result.score))
        n += 1
        improved = result.score is not None and (best is None or engine.better(result.score, best.score))
        if improved:
            best = result
        if n > paper:
            stalled = 0 if improved else stalled + 1
    engine.record_ending(loop, reason)
    return best


def extension_passes(
    engine: Engine, tracks: list[Track], ensembled: ScoredScript | None
) -> ScoredScript | None:
    """With time left after phases 2 and 3: further passes of refinement on every track, then an
    ensemble of the new winners, until a pass finds nothing better or time runs out. Returns the
    best ensemble of all passes (phase 3's when no pass beat it)."""
    settings, budget = engine.settings, engine.budget
    if not settings.extend or settings.time_limit_s is None or not tracks:
        return ensembled
    budget.extending = True  # from here on phase 3 claims one round, not R
    pass_ = 0
    while True:
        pass_ += 1
        gate = Step(Phase.REFINE, None, (f"e{pass_}",))
        if not engine.fits(gate, cost_s=budget.track_step_s(1)):
            engine.record_ending("extension", f"no time for pass {pass_}")
            return ensembled
        engine.phase_started(Phase.REFINE, f"extension pass {pass_}: more refinement")
        before = [t.best for t in tracks]
        with ThreadPoolExecutor(max_workers=len(tracks)) as pool:
            list(pool.map(refine_track, [engine] * len(tracks), tracks, [pass_] * len(tracks)))
        engine.phase_finished(Phase.REFINE, data={"pass": pass_, "tracks": [t.best.score for t in tracks]})
        improved = any(engine.better(t.best.score, b.score) for t, b in zip(tracks, before, strict=True))
        if improved:
            engine.phase_started(Phase.ENSEMBLE, f"extension pass {pass_}: ensembling the new winners")
            result = ensemble(engine, [t.best for t in tracks], pass_)
            engine.phase_finished(
                Phase.ENSEMBLE, data={"pass": pass_, "best": result.score if result else None}
            )
            if result is not None and (ensembled is None or engine.better(result.score, ensembled.score)):
                ensembled = result
        else:
            engine.record_ending("extension", f"pass {pass_} found nothing better")
            return ensembled




# -- phase 4 -----------------------------------------------------------------------------------
def submission_validator(engine: Engine) -> Callable[[Path], str | None]:
    task = engine.task

    def validate(script_dir: Path) -> str | None:
        path = script_dir / FINAL_DIR / SUBMISSION_NAME
        unsafe = unsafe_output(path)
        if unsafe is not None:
            return f"./{FINAL_DIR}/{SUBMISSION_NAME} cannot be used: {unsafe}"
        if not path.exists():
            return f"The final script did not write ./{FINAL_DIR}/{SUBMISSION_NAME}"
        try:
            submission = pd.read_csv(path)
        except (ValueError, OSError) as exc:
            return f"./{FINAL_DIR}/{SUBMISSION_NAME} cannot be read as CSV: {exc}"
        if task.sample_submission_file is None:
            return None
        sample = pd.read_csv(task.data_path(task.sample_submission_file))
        try:
            validate_submission(submission, sample, id_column=task.id_column, metric=engine.metric)
        except InvalidSubmission as exc:
            return f"invalid submission: {exc}"
        return None

    return validate


def write_submission(engine: Engine, step: Step, solution: ScoredScript) -> ScoredScript | None:
    """Turn a solution into its final script, run it on all data, and publish a valid submission."""
    ctx = engine.ctx
    final = engine.ask(
        step,
        "code",
        engine.brain.write_submission,
        ctx,
        solution.script,
        returns=Script,
        node_id=solution.node_id,
    )
    result = engine.run_with_debug(
        step,
        final,
        agent=Agent.SUBMISSION,
        ctx=ctx,
        parents=[solution.node_id or 0],
        final=True,
        validator=submission_validator(engine),
        extra_info={"dev_score": solution.score},
    )
    if result.error is not None or result.node_id is None:
        return None
    node = engine.store.get_node(result.node_id)
    assert node is not None
    script_dir = (engine.store.run_dir / node.script_path).parent
    run_dir = engine.store.run_dir
    # Write to temporary names first so a crash never leaves a half-written submission.
    for source, name in (
        (script_dir / FINAL_DIR / SUBMISSION_NAME, SUBMISSION_NAME),
        (script_dir / SCRIPT_NAME, "solution.py"),
    ):
        tmp = run_dir / f".{name}.tmp"
        tmp.write_bytes(source.read_bytes())
        tmp.replace(run_dir / name)
    engine.store.set_meta(
        "submission",
        {
            "dev_score": solution.score,
            "source_node_id": solution.node_id,
            "final_node_id": result.node_id,
            "final_score": result.score,
            "phase": step.phase.value,
        },
    )
    engine.publish(
        EventType.SUBMISSION_WRITTEN,
        f"submission written from a solution scoring {solution.score}",
        phase=step.phase.value,
        node_id=result.node_id,
        data={"path": SUBMISSION_NAME, "score": solution.score, "node_id": solution.node_id},
    )
    return result


def publish_if_better(engine: Engine, step: Step, candidates: list[ScoredScript]) -> None:
    """Write the submission from the best candidate unless the current one is at least as good."""
    publish_first_better(engine, step, engine.ranked(candidates))


def publish_first_better(
    engine: Engine, step: Step, ordered: list[ScoredScript], *, trusted: ScoredScript | None = None
) -> None:
    """Write the submission from the first of ``ordered`` whose final script works, skipping those
    not better than the current submission (``trusted`` is never skipped: it won on evidence
    stronger than one score)."""
    current = (engine.store.get_meta("submission") or {}).get("dev_score")
    for index, candidate in enumerate(ordered):
        if candidate is not trusted and current is not None and not engine.better(candidate.score, current):
            continue
        at = step.at(f"c{index}")
        if current is not None and not engine.decide(at, "final-fits", lambda c=candidate: engine.final_fits(c)):
            # A submission exists: a final script that cannot finish in the time left would only be
            # killed, and run the whole past its time limit on the shortest timeouts.
            engine.note(
                at.path, EventType.BUDGET,
                f"no time left for the final script of {candidate.script.label!r}; the submission stays",
                phase=step.phase.value, node_id=candidate.node_id,
            )  # fmt: skip
            continue
        if write_submission(engine, at, candidate) is not None:
            return

