"""The brain protocol: one method per agent role of MLE-STAR, typed inputs to typed outputs.

The pipeline talks only to this protocol. A brain writes code and makes decisions; it never runs
scripts, touches the run folder or decides the loop order. Two implementations exist:
``ExpertBrain`` (offline, a curated expert policy) and ``LLMBrain`` (any LLM). Both must be safe to
call from several threads at once (tracks run in parallel).

Determinism: a brain's choices depend only on its inputs and ``BrainContext.seed`` (the LLM brain
additionally on its response cache), so a resumed run that replays the same calls gets the same
scripts back.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from mlestar.core.records import SearchResult
from mlestar.core.task import Task

TRACK_SEED_STRIDE = 1000  # track t runs with seed + 1000 t


class BrainContext(BaseModel):
    """What every agent role may know about the run."""

    task: Task
    data_report: str = ""  # human-readable data profile (columns, dtypes, missing shares, ...)
    seed: int = 0
    track: int | None = None  # the parallel solution track the call serves (None: shared by all)
    dev_max_rows: int = 30_000  # development subsample size (see docs/script-contract.md)
    n_dev_rows: int = 0  # rows with dev == 1 in folds.csv
    class_counts: dict[str, int] = Field(default_factory=dict)  # dev rows per class (classification)
    n_folds: int = 5  # folds in folds.csv (0 = the validation hold-out)
    script_timeout_s: float = 600.0  # how long one script may run; brains should size models for it
    threads: int = 1  # CPU threads a script may use
    gpu: bool = False
    hardware: str = ""  # the machine in a sentence: cores, memory, GPUs
    available_packages: list[str] = Field(default_factory=list)  # importable ML packages

    def for_track(self, track: int) -> BrainContext:
        """The context of one track: its own seed, so tracks explore different choices."""
        return self.model_copy(update={"track": track, "seed": self.seed + TRACK_SEED_STRIDE * track})


class Script(BaseModel):
    """A complete Python script following docs/script-contract.md."""

    code: str
    label: str = ""  # short human name: "lightgbm", "merge lightgbm+catboost", ...
    info: dict[str, Any] = Field(default_factory=dict)  # brain-private metadata (template state, ...)
    wall_s: float | None = None  # how long it took when it last ran (set by the pipeline)

    def __fingerprint__(self) -> dict[str, Any]:
        # What a script does is its code; label and info are descriptions of it.
        return {"code": self.code}


class ScoredScript(BaseModel):
    """A script together with what happened when it ran."""

    script: Script
    node_id: int | None = None
    score: float | None = None
    error: str | None = None  # trimmed error text when it failed
    stdout_tail: str = ""

    def __fingerprint__(self) -> dict[str, Any]:
        return {"code": self.script.code, "score": self.score}


class ModelCard(BaseModel):
    """A retrieved model: what it is, and real example code for it."""

    name: str
    description: str = ""
    example_code: str = ""
    source: str = "knowledge-base"  # "knowledge-base" or a URL


class LeakageReport(BaseModel):
    leak: bool
    block: str | None = None  # the exact leaking code (verbatim substring of the script)
    reason: str = ""


class DataUsageReport(BaseModel):
    all_used: bool
    script: Script | None = None  # the revised script when something was left unused
    reason: str = ""


class AblationSummary(BaseModel):
    text: str  # the summary in words and numbers
    # component name -> score change when it is removed/altered (signed, in metric units)
    effects: dict[str, float] = Field(default_factory=dict)
    baseline_score: float | None = None


class RefinementPlan(BaseModel):
    text: str  # the plan in words
    data: dict[str, Any] = Field(default_factory=dict)  # structured form, for brains that use one


class BlockPlan(BaseModel):
    """The extractor's answer: one code block (verbatim substring of the script) and a first plan."""

    block: str
    name: str = ""  # short name of the block ("feature engineering", "model", ...)
    plan: RefinementPlan


class PlanAttempt(BaseModel):
    plan: RefinementPlan
    score: float | None  # None when the refined script failed


class EnsembleAttempt(BaseModel):
    plan: RefinementPlan
    score: float | None


@runtime_checkable
class Brain(Protocol):
    """Every agent role of MLE-STAR. Implementations must be pure apart from their author (LLM)."""

    name: str

    # phase 1: search and initial solution
    def summarize_task(self, ctx: BrainContext) -> str: ...

    def search_queries(self, ctx: BrainContext, summary: str) -> list[str]: ...

    def retrieve_models(
        self, ctx: BrainContext, summary: str, results: list[SearchResult], n: int
    ) -> list[ModelCard]: ...

    def write_candidate(self, ctx: BrainContext, card: ModelCard) -> Script: ...

    def merge(self, ctx: BrainContext, base: ScoredScript, addition: ScoredScript) -> Script: ...

    def check_leakage(self, ctx: BrainContext, script: Script) -> LeakageReport: ...

    def fix_leakage(self, ctx: BrainContext, script: Script, report: LeakageReport) -> Script: ...

    def check_data_usage(self, ctx: BrainContext, script: Script) -> DataUsageReport: ...

    # phase 2: ablation-guided targeted refinement
    def write_ablation(
        self, ctx: BrainContext, script: ScoredScript, previous: list[AblationSummary]
    ) -> Script: ...

    def summarize_ablation(
        self, ctx: BrainContext, ablation: Script, output: str
    ) -> AblationSummary: ...

    def extract_block(
        self,
        ctx: BrainContext,
        script: ScoredScript,
        summary: AblationSummary,
        refined_blocks: list[str],
    ) -> BlockPlan: ...

    def implement_plan(
        self, ctx: BrainContext, script: Script, block: str, plan: RefinementPlan
    ) -> Script:
        """Rewrite ``block`` following ``plan`` and return the whole new script (block spliced in)."""
        ...

    def plan_refinement(
        self, ctx: BrainContext, script: Script, block: str, history: list[PlanAttempt]
    ) -> RefinementPlan | None: ...

    # phase 3: planned ensembling
    def plan_ensemble(
        self, ctx: BrainContext, solutions: list[ScoredScript], history: list[EnsembleAttempt]
    ) -> RefinementPlan | None: ...

    def implement_ensemble(
        self, ctx: BrainContext, solutions: list[ScoredScript], plan: RefinementPlan
    ) -> Script: ...

    # any phase
    def debug(self, ctx: BrainContext, script: Script, error: str) -> Script | None: ...

    # phase 4
    def write_submission(self, ctx: BrainContext, script: Script) -> Script: ...


def replace_block(code: str, block: str, new_block: str) -> str:
    """Splice ``new_block`` in place of the first exact occurrence of ``block``.

    Raises ``BlockNotFound`` when ``block`` is not a verbatim substring: a paraphrased block must
    never be silently ignored.
    """
    if not block.strip():
        raise BlockNotFound("the block to replace is empty")
    index = code.find(block)
    if index < 0:
        raise BlockNotFound("the block to replace is not a verbatim part of the script")
    return code[:index] + new_block + code[index + len(block) :]


class BlockNotFound(ValueError):
    """A block that should be a verbatim substring of a script is not."""
