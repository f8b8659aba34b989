"""Records that cross layers: web search results and LLM calls, and what keeps the calls.

The LLM client writes its calls and cached answers through ``LLMLedger``; the run store is one
(it satisfies the protocol structurally), so the client never depends on the store.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from pydantic import BaseModel, Field


class SearchResult(BaseModel):
    title: str
    url: str = ""
    snippet: str = ""
    content: str = ""  # page text, when the provider returns it


class LLMCallRecord(BaseModel):
    id: int = 0
    ts: float = Field(default_factory=time.time)
    agent: str
    provider: str
    model: str
    request_hash: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None  # None when the model has no known price
    latency_s: float = 0.0
    cached: bool = False
    error: str | None = None
    cached_prompt_tokens: int = 0  # prompt tokens the provider served from its prompt cache


class LLMLedger(Protocol):
    """Where a run's LLM calls and cached answers are kept (the run store)."""

    def record_llm_call(self, call: LLMCallRecord) -> LLMCallRecord: ...

    def llm_calls(self) -> list[LLMCallRecord]: ...

    def cache_get(self, request_hash: str) -> tuple[str, dict[str, Any]] | None: ...

    def cache_put(self, request_hash: str, model: str, response: str, usage: dict[str, Any]) -> None: ...
