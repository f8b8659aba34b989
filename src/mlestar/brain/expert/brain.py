"""``ExpertBrain``: the offline author of MLE-STAR's scripts.

Every role is a pure function of its inputs and ``ctx.seed``; the brain holds no mutable state, so
it is safe to share between the pipeline's threads. The work is done by one module per role.
"""

from __future__ import annotations

import logging

from mlestar.brain.expert import ablation, debug, ensemble, leakage, merging, refine, summary, usage
from mlestar.brain.expert.facts import task_facts
from mlestar.brain.protocol import (
    AblationSummary,
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
from mlestar.core.records import SearchResult

log = logging.getLogger(__name__)


class ExpertBrain:
    """A curated expert policy: knowledge-base model cards, templated scripts with named blocks,
    a catalogue of refinement moves and planned ensembles, all without any LLM.

    ``max_rounds`` caps boosting rounds / trees of every model (tests and quick demos use it).
    """

    name = "expert"

    def __init__(self, max_rounds: int | None = None) -> None:
        self.max_rounds = max_rounds

    # -- phase 1 -------------------------------------------------------------------------------
    def summarize_task(self, ctx: BrainContext) -> str:
        return summary.summarize(ctx)

    def search_queries(self, ctx: BrainContext, summary_text: str) -> list[str]:
        return summary.queries(ctx)

    def retrieve_models(
        self, ctx: BrainContext, summary_text: str, results: list[SearchResult], n: int
    ) -> list[ModelCard]:
        if results:
            log.info("expert brain: %d web results seen, ranking from the knowledge base", len(results))
        return summary.retrieve(ctx, n)

    def write_candidate(self, ctx: BrainContext, card: ModelCard) -> Script:
        return merging.candidate(ctx, card, self.max_rounds)

    def merge(self, ctx: BrainContext, base: ScoredScript, addition: ScoredScript) -> Script:
        return merging.merge(ctx, base, addition, self.max_rounds)

    def check_leakage(self, ctx: BrainContext, script: Script) -> LeakageReport:
        return leakage.check(ctx, script)

    def fix_leakage(self, ctx: BrainContext, script: Script, report: LeakageReport) -> Script:
        return leakage.fix(ctx, script, report)

    def check_data_usage(self, ctx: BrainContext, script: Script) -> DataUsageReport:
        return usage.check(ctx, script)

    # -- phase 2 -------------------------------------------------------------------------------
    def write_ablation(self, ctx: BrainContext, script: ScoredScript, previous: list[AblationSummary]) -> Script:
        return ablation.write(script, previous)

    def summarize_ablation(self, ctx: BrainContext, ablation_script: Script, output: str) -> AblationSummary:
        return ablation.summarize(ablation_script, output, task_facts(ctx).lower_is_better)

    def extract_block(
        self, ctx: BrainContext, script: ScoredScript, summary_: AblationSummary, refined_blocks: list[str]
    ) -> BlockPlan:
        return refine.extract(script, summary_, refined_blocks, variant=_track(ctx))

    def implement_plan(self, ctx: BrainContext, script: Script, block: str, plan: RefinementPlan) -> Script:
        return refine.implement(script, block, plan)

    def plan_refinement(
        self, ctx: BrainContext, script: Script, block: str, history: list[PlanAttempt]
    ) -> RefinementPlan | None:
        return refine.plan(script, block, history, variant=_track(ctx))

    # -- phase 3 -------------------------------------------------------------------------------
    def plan_ensemble(
        self, ctx: BrainContext, solutions: list[ScoredScript], history: list[EnsembleAttempt]
    ) -> RefinementPlan | None:
        return ensemble.plan(solutions, history)

    def implement_ensemble(self, ctx: BrainContext, solutions: list[ScoredScript], plan: RefinementPlan) -> Script:
        return ensemble.implement(solutions, plan)

    # -- any phase -----------------------------------------------------------------------------
    def debug(self, ctx: BrainContext, script: Script, error: str) -> Script | None:
        return debug.fix(ctx, script, error)

    # -- phase 4 -------------------------------------------------------------------------------
    def write_submission(self, ctx: BrainContext, script: Script) -> Script:
        return merging.final_script(script)


def _track(ctx: BrainContext) -> int:
    """Which parallel track a context belongs to (shared calls count as track 0)."""
    return ctx.track or 0
