"""Token and cost totals of a run, per agent, per model and overall, read from its ledger (the run store)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from mlestar.core.records import LLMCallRecord, LLMLedger


def estimate_tokens(text: str) -> int:
    """About four characters per token for English and code; used only when a server sends no usage."""
    return max(1, (len(text) + 3) // 4) if text else 0


class UsageTotals(BaseModel):
    calls: int = 0
    cached_calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # of prompt_tokens, those the provider served from its prompt cache
    cost_usd: float = 0.0  # sum over calls with a known price
    unpriced_calls: int = 0  # calls whose model has no price (tokens counted, cost unknown)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cached_share(self) -> float:
        """The share of prompt tokens the provider served from its prompt cache."""
        return self.cached_prompt_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    def add(self, call: LLMCallRecord) -> None:
        self.calls += 1
        if call.cached:
            self.cached_calls += 1
            return  # a replayed answer costs nothing and used no new tokens
        if call.error:
            self.failed_calls += 1  # its tokens (empty answers asked again) were still spent
        self.prompt_tokens += call.prompt_tokens
        self.cached_prompt_tokens += call.cached_prompt_tokens
        self.completion_tokens += call.completion_tokens
        if call.cost_usd is None:
            self.unpriced_calls += 1
        else:
            self.cost_usd += call.cost_usd


class UsageSummary(BaseModel):
    total: UsageTotals = Field(default_factory=UsageTotals)
    per_agent: dict[str, UsageTotals] = Field(default_factory=dict)
    per_model: dict[str, UsageTotals] = Field(default_factory=dict)


def summarize_calls(calls: list[LLMCallRecord]) -> UsageSummary:
    summary = UsageSummary()
    for call in calls:
        summary.total.add(call)
        summary.per_agent.setdefault(call.agent, UsageTotals()).add(call)
        summary.per_model.setdefault(f"{call.provider}:{call.model}", UsageTotals()).add(call)
    return summary


def usage_summary(ledger: LLMLedger) -> UsageSummary:
    return summarize_calls(ledger.llm_calls())
