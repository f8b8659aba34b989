"""Brains: the authors of the code (expert policy offline, or an LLM)."""

from mlestar.brain.protocol import (
    AblationSummary,
    BlockNotFound,
    BlockPlan,
    Brain,
    BrainContext,
    DataUsageReport,
    EnsembleAttempt,
    LeakageReport,
    ModelCard,
    PlanAttempt,
    RefinementPlan,
    ScoredScript,
    Script,
    replace_block,
)
from mlestar.core.records import SearchResult

__all__ = [
    "AblationSummary",
    "BlockNotFound",
    "BlockPlan",
    "Brain",
    "BrainContext",
    "DataUsageReport",
    "EnsembleAttempt",
    "LeakageReport",
    "ModelCard",
    "PlanAttempt",
    "RefinementPlan",
    "ScoredScript",
    "Script",
    "SearchResult",
    "replace_block",
]
