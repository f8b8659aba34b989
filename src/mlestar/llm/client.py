"""The provider-agnostic LLM client: cache, budget, retries, usage and cost for every call.

One ``complete`` call is, in order: resolve the agent's model; look the request up in the run's
cache (and the optional cross-run file), replaying it for free; check the budget; send it with
bounded retries; record tokens and cost in the ledger (the run store) and publish an ``LLM_CALL``
event on the run's bus, which tags it with the pipeline step the call serves; cache it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlestar.core.events import EventBus, EventType
from mlestar.core.records import LLMCallRecord, LLMLedger
from mlestar.errors import BudgetExhausted, ConfigError
from mlestar.llm.budget import Budget
from mlestar.llm.cache import FileCache, request_hash
from mlestar.llm.errors import CacheMiss, LLMError, RetriesExhausted
from mlestar.llm.prices import PriceTable
from mlestar.llm.providers import Backend, Message, ModelSpec, TransientError, make_backend, parse_spec
from mlestar.llm.usage import estimate_tokens
from mlestar.settings import Settings

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class LLMResponse:
    text: str
    agent: str
    spec: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    cached: bool
    latency_s: float
    request_hash: str


class LLMClient:
    """Thread-safe; one per run. Without a ledger and a bus (``mlestar llm check``) nothing is kept."""

    def __init__(
        self,
        settings: Settings,
        ledger: LLMLedger | None = None,
        bus: EventBus | None = None,
        *,
        prices: PriceTable | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not settings.llm:
            raise ConfigError("no model given: pass --llm provider:model (e.g. openai:gpt-4.1)")
        self.settings = settings
        self.ledger = ledger
        self.bus = bus
        self.prices = prices if prices is not None else PriceTable.load(settings.prices)
        self._sleep = sleep
        self._backends: dict[str, Backend] = {}
        self._lock = threading.Lock()
        self._budget_reported: set[str] = set()
        self.file_cache = FileCache(settings.llm_cache_file) if settings.llm_cache_file else None
        spent_usd, spent_tokens = 0.0, 0
        if ledger is not None:
            # A resumed run keeps counting what it already spent.
            for call in ledger.llm_calls():
                if not call.cached and not call.error:
                    spent_usd += call.cost_usd or 0.0
                    spent_tokens += call.prompt_tokens + call.completion_tokens
        self.budget = Budget(
            budget_usd=settings.budget_usd,
            budget_tokens=settings.budget_tokens,
            spent_usd=spent_usd,
            spent_tokens=spent_tokens,
            reserve_share=settings.budget_reserve_share,
        )

    # -- models --------------------------------------------------------------------------------
    def spec_for(self, agent: str) -> ModelSpec:
        return parse_spec(self.settings.llm_spec_for(agent))

    def backend(self, spec: ModelSpec) -> Backend:
        key = str(spec)
        with self._lock:
            backend = self._backends.get(key)
            if backend is None:
                # The run's base URL belongs to the run's main model; agent overrides on another
                # provider use that provider's own endpoint.
                main = parse_spec(self.settings.llm or "")
                base_url = self.settings.llm_base_url if spec.provider == main.provider else None
                backend = make_backend(
                    spec,
                    base_url=base_url,
                    key_env=self.settings.llm_api_key_env,
                    timeout_s=self.settings.llm_timeout_s,
                )
                self._backends[key] = backend
        return backend

    def preflight(self) -> None:
        """Resolve keys and endpoints of every configured model now, so a missing key fails at start."""
        specs = {parse_spec(spec) for spec in {self.settings.llm or "", *self.settings.llm_agent_models.values()}}
        if self.settings.llm_cache_mode == "replay":
            return
        for spec in specs:
            self.backend(spec)

    # -- the call ------------------------------------------------------------------------------
    def complete(
        self,
        messages: list[Message],
        *,
        agent: str = "default",
        temperature: float | None = None,
        max_tokens: int | None = None,
        salt: str | None = None,
        use_reserve: bool = False,
    ) -> LLMResponse:
        """One chat completion; ``use_reserve`` lets the final-submission calls spend the reserved budget."""
        spec = self.spec_for(agent)
        params = {
            "temperature": self.settings.llm_temperature if temperature is None else temperature,
            "max_tokens": self.settings.llm_max_tokens if max_tokens is None else max_tokens,
        }
        key = request_hash(str(spec), messages, params, salt)

        if self.settings.llm_cache_mode != "off":
            hit = self._cache_lookup(key)
            if hit is not None:
                self._record(agent, spec, key, 0, 0, 0.0, 0.0, cached=True)
                return LLMResponse(hit, agent, str(spec), 0, 0, 0.0, True, 0.0, key)
            if self.settings.llm_cache_mode == "replay":
                raise CacheMiss(
                    f"replay mode: no cached answer for the {agent} request ({key[:12]}) to {spec}"
                )

        self._check_budget(use_reserve)
        backend = self.backend(spec)
        started = time.monotonic()
        try:
            completion = self._with_retries(spec, lambda: backend.complete(messages, **params))
        except LLMError as exc:
            self._record(agent, spec, key, 0, 0, None, time.monotonic() - started, error=str(exc))
            raise
        latency = time.monotonic() - started

        estimated = completion.prompt_tokens is None or completion.completion_tokens is None
        prompt_tokens = (
            completion.prompt_tokens
            if completion.prompt_tokens is not None
            else sum(estimate_tokens(m["content"]) for m in messages)
        )
        completion_tokens = (
            completion.completion_tokens
            if completion.completion_tokens is not None
            else estimate_tokens(completion.text)
        )
        cost = self.prices.cost(spec, prompt_tokens, completion_tokens)
        self.budget.add(cost, prompt_tokens + completion_tokens)
        self._record(agent, spec, key, prompt_tokens, completion_tokens, cost, latency, estimated=estimated)
        if self.settings.llm_cache_mode != "off":
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "model": completion.model,
                "estimated": estimated,
            }
            if self.ledger is not None:
                self.ledger.cache_put(key, str(spec), completion.text, usage)
            if self.file_cache is not None:
                self.file_cache.put(key, str(spec), completion.text, usage)
        return LLMResponse(
            completion.text, agent, str(spec), prompt_tokens, completion_tokens, cost, False, latency, key
        )

    # -- pieces --------------------------------------------------------------------------------
    def _cache_lookup(self, key: str) -> str | None:
        if self.ledger is not None:
            hit = self.ledger.cache_get(key)
            if hit is not None:
                return hit[0]
        if self.file_cache is not None:
            hit = self.file_cache.get(key)
            if hit is not None:
                if self.ledger is not None:
                    # Copy it in so the run alone can be replayed later.
                    self.ledger.cache_put(key, str(hit[1].get("model", "")), hit[0], hit[1])
                return hit[0]
        return None

    def _check_budget(self, use_reserve: bool) -> None:
        reason = self.budget.exhausted(use_reserve=use_reserve)
        if reason is None:
            return
        with self._lock:
            # One BUDGET event when ordinary calls stop, one more if the reserve runs out too.
            key = "reserve" if use_reserve else "main"
            first = key not in self._budget_reported
            self._budget_reported.add(key)
        if first and self.bus is not None:
            self.bus.publish(
                EventType.BUDGET,
                reason,
                data={"spent_usd": self.budget.spent_usd, "spent_tokens": self.budget.spent_tokens},
            )
        raise BudgetExhausted(reason)

    def _with_retries(self, spec: ModelSpec, send: Callable[[], Any]) -> Any:
        attempt = 0
        while True:
            try:
                return send()
            except TransientError as exc:
                if attempt >= self.settings.llm_max_retries:
                    raise RetriesExhausted(f"{exc} (gave up after {attempt} retries)") from None
                delay = exc.retry_after_s
                if delay is None:
                    delay = self.settings.llm_backoff_base_s * (2**attempt) * (1.0 + 0.1 * random.random())
                delay = min(delay, self.settings.llm_backoff_max_s)
                log.warning("%s; retry %d/%d in %.1fs", exc, attempt + 1, self.settings.llm_max_retries, delay)
                self._sleep(delay)
                attempt += 1

    def _record(
        self,
        agent: str,
        spec: ModelSpec,
        key: str,
        prompt_tokens: int,
        completion_tokens: int,
        cost: float | None,
        latency: float,
        *,
        cached: bool = False,
        error: str | None = None,
        estimated: bool = False,
    ) -> None:
        if self.ledger is None:
            return
        call = self.ledger.record_llm_call(
            LLMCallRecord(
                agent=agent,
                provider=spec.provider,
                model=spec.model,
                request_hash=key,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cost_usd=cost,
                latency_s=latency,
                cached=cached,
                error=error,
            )
        )
        status = (
            "cached" if cached else ("failed" if error else f"{prompt_tokens}+{completion_tokens} tokens")
        )
        if self.bus is None:
            return
        self.bus.publish(
            EventType.LLM_CALL,
            f"{agent}: {spec} ({status})",
            data={
                "call_id": call.id,
                "agent": agent,
                "provider": spec.provider,
                "model": spec.model,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "cost_usd": cost,
                "latency_s": round(latency, 3),
                "cached": cached,
                "estimated_tokens": estimated,
                "error": error,
            },
        )

    def close(self) -> None:
        if self.file_cache is not None:
            self.file_cache.close()
