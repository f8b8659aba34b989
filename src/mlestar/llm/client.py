"""The provider-agnostic LLM client: cache, budget, retries, usage and cost for every call.

One ``complete`` call is, in order: resolve the agent's model; look the request up in the run's
cache (and the optional cross-run file), replaying it for free; check the budget; check that the
prompt fits the model's context window; send it, retrying rate limits (honouring the server's
wait), server errors and empty answers, lowering ``max_tokens`` to the model's cap, continuing an
answer cut off at the length limit, and stripping thinking blocks; record tokens and cost in the
ledger (the run store) and publish an ``LLM_CALL`` event on the run's bus, which tags it with the
pipeline step the call serves; cache it.
"""

from __future__ import annotations

import logging
import random
import re
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
from mlestar.llm.errors import (
    CacheMiss,
    ContextTooLong,
    LLMError,
    NoAnswer,
    OutputLimitTooHigh,
    RetriesExhausted,
)
from mlestar.llm.prices import PriceTable
from mlestar.llm.providers import (
    Backend,
    Completion,
    Message,
    ModelSpec,
    Reasoning,
    TransientError,
    make_backend,
    parse_spec,
)
from mlestar.llm.reasoning import is_reasoning_model, strip_reasoning
from mlestar.llm.tokens import count_messages
from mlestar.llm.usage import estimate_tokens
from mlestar.settings import Settings

log = logging.getLogger(__name__)

MIN_ANSWER_TOKENS = 1024  # a request that leaves less room than this for the answer is not sent
CONTEXT_SAFETY = 0.95  # token counts are estimates: keep a margin below the window


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
    cached_prompt_tokens: int = 0  # prompt tokens the provider served from its own prompt cache


@dataclass
class _Tally:
    """Tokens over every request one answer took (retries of empty answers, continuations)."""

    prompt: int = 0
    completion: int = 0
    cached: int = 0
    requests: int = 0
    continuations: int = 0
    complete: bool = True  # False when a server left out usage: the totals are then estimated
    model: str = ""

    def add(self, completion: Completion) -> None:
        self.requests += 1
        self.model = completion.model
        if completion.prompt_tokens is None or completion.completion_tokens is None:
            self.complete = False
        self.prompt += completion.prompt_tokens or 0
        self.completion += completion.completion_tokens or 0
        self.cached += completion.cached_prompt_tokens


CONTINUE_PROMPT = (
    "Your answer was cut off by the length limit. Continue exactly where you stopped: do not repeat "
    "anything, do not restart the code block, do not add an introduction."
)


def continuation_messages(
    spec: ModelSpec, messages: list[Message], answer: str, *, thinking: bool
) -> list[Message]:
    """The conversation that asks for the rest of ``answer``.

    Claude continues a prefilled answer directly (except while thinking, where prefill is not
    allowed); other models are asked, in a new turn, to go on where they stopped."""
    if spec.provider == "anthropic" and not thinking:
        return [*messages, {"role": "assistant", "content": answer}]
    return [*messages, {"role": "assistant", "content": answer}, {"role": "user", "content": CONTINUE_PROMPT}]


_FENCE_OPEN = re.compile(r"\A\s*(`{3,}|~{3,})[\w+.-]*[ \t]*\n")


def join_continuation(answer: str, more: str) -> str:
    """``answer`` followed by its continuation ``more``, without the second opening fence models
    often write when they go on inside a code block. Nothing else is taken out: code repeats
    itself, so text that looks repeated at the seam may well be meant."""
    if answer.count("```") % 2 == 1:
        more = _FENCE_OPEN.sub("", more, count=1)
    return answer + more


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
        self._windows: dict[str, int | None] = {}  # spec -> context window, once known
        self._caps: dict[str, int] = {}  # spec -> most answer tokens the model takes, once known
        self.file_cache = FileCache(settings.llm_cache_file) if settings.llm_cache_file else None
        spent_usd, spent_tokens = 0.0, 0
        if ledger is not None:
            # A resumed run keeps counting what it already spent.
            for call in ledger.llm_calls():
                if not call.cached:
                    spent_usd += call.cost_usd or 0.0
                    spent_tokens += call.prompt_tokens + call.completion_tokens
        self._refuse_unpriced_budget()
        self.budget = Budget(
            budget_usd=settings.budget_usd,
            budget_tokens=settings.budget_tokens,
            spent_usd=spent_usd,
            spent_tokens=spent_tokens,
            reserve_share=settings.budget_reserve_share,
        )

    def _refuse_unpriced_budget(self) -> None:
        """A dollar budget over a model without a price would never trip: say so at start."""
        if self.settings.budget_usd is None:
            return
        specs = {self.settings.llm or "", *self.settings.llm_agent_models.values()}
        unpriced = sorted(spec for spec in specs if self.prices.lookup(parse_spec(spec)) is None)
        if unpriced:
            raise ConfigError(
                f"--budget-usd cannot be kept: no price is known for {', '.join(unpriced)}; give prices "
                "with MLESTAR_PRICES=prices.yaml ({model: {input: X, output: Y}}, USD per 1M tokens) "
                "or limit tokens with --budget-tokens"
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
                    context_tokens=self.settings.llm_context_tokens,
                )
                self._backends[key] = backend
        return backend

    def preflight(self) -> None:
        """Resolve keys and endpoints of every configured model now, so a missing key fails at start."""
        specs = {
            parse_spec(spec) for spec in {self.settings.llm or "", *self.settings.llm_agent_models.values()}
        }
        if self.settings.llm_cache_mode == "replay":
            return
        for spec in specs:
            self.backend(spec)

    # -- what a request may take -------------------------------------------------------------
    def reasoning_for(self, spec: ModelSpec) -> Reasoning | None:
        """The reasoning a request asks for: the effort setting, and a thinking budget where it is used."""
        effort = self.settings.llm_reasoning_effort
        thinks = is_reasoning_model(spec.model) or (
            spec.provider == "anthropic" and effort not in (None, "none")
        )
        if not thinks and effort is None:
            return None
        budget = self.settings.llm_reasoning_tokens if thinks and effort != "none" else 0
        return Reasoning(effort=effort, budget_tokens=budget)

    def answer_tokens(self, agent: str, default: int | None = None) -> int:
        """The most tokens an answer of ``agent`` may have (its setting, the caller's, the run's)."""
        return self.settings.llm_agent_max_tokens.get(agent) or default or self.settings.llm_max_tokens

    def context_window(self, spec: ModelSpec) -> int | None:
        """The model's window: what a server said in an error, else the smaller of the setting and
        what the server lists (vLLM's ``max_model_len``, the ``num_ctx`` Ollama runs with)."""
        key = str(spec)
        with self._lock:
            if key in self._windows:
                return self._windows[key]
        reported = None if self.settings.llm_cache_mode == "replay" else self.backend(spec).context_window()
        setting = self.settings.llm_context_tokens
        window = min(setting, reported) if setting and reported else setting or reported
        with self._lock:
            self._windows.setdefault(key, window)
            return self._windows[key]

    def prompt_budget(self, agent: str, answer_tokens: int | None = None) -> int | None:
        """How many prompt tokens a request of ``agent`` may have (None: no known limit).

        Room is kept for the answer: its allowance, but never more than a quarter of a small
        window (the answer then gets what the prompt leaves)."""
        spec = self.spec_for(agent)
        window = self.context_window(spec)
        if window is None:
            return None
        answer = self.answer_tokens(agent, answer_tokens)
        return window - min(answer, max(MIN_ANSWER_TOKENS, window // 4))

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
        """One chat completion; ``use_reserve`` lets the final-submission calls spend the reserved budget.

        The answer comes back without thinking blocks; a cut-off answer is continued, an empty one
        asked again; ``ContextTooLong`` means the caller must send a shorter prompt."""
        spec = self.spec_for(agent)
        params: dict[str, Any] = {
            "temperature": self.settings.llm_temperature if temperature is None else temperature,
            "max_tokens": self.answer_tokens(agent, max_tokens),
        }
        if self.settings.llm_reasoning_effort:
            params["reasoning_effort"] = self.settings.llm_reasoning_effort
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
        started = time.monotonic()
        tally = _Tally()
        try:
            text = self._generate(spec, messages, params, tally)
        except LLMError as exc:
            cost = self._spend(spec, tally)
            self._record(
                agent,
                spec,
                key,
                tally.prompt,
                tally.completion,
                cost,
                time.monotonic() - started,
                error=str(exc),
            )
            raise
        latency = time.monotonic() - started

        if not tally.complete:
            # The server sent no usage: about four characters per token, as providers bill.
            tally.prompt = tally.prompt or sum(estimate_tokens(str(m["content"])) for m in messages)
            tally.completion = tally.completion or estimate_tokens(text)
        cost = self._spend(spec, tally)
        self._record(
            agent,
            spec,
            key,
            tally.prompt,
            tally.completion,
            cost,
            latency,
            estimated=not tally.complete,
            cached_prompt_tokens=tally.cached,
            requests=tally.requests,
            continuations=tally.continuations,
        )
        if self.settings.llm_cache_mode != "off":
            usage = {
                "prompt_tokens": tally.prompt,
                "completion_tokens": tally.completion,
                "model": tally.model,
                "estimated": not tally.complete,
            }
            if self.ledger is not None:
                self.ledger.cache_put(key, str(spec), text, usage)
            if self.file_cache is not None:
                self.file_cache.put(key, str(spec), text, usage)
        return LLMResponse(
            text, agent, str(spec), tally.prompt, tally.completion, cost, False, latency, key, tally.cached
        )

    # -- one answer: continuations, caps, retries ------------------------------------------------
    def _generate(
        self, spec: ModelSpec, messages: list[Message], params: dict[str, Any], tally: _Tally
    ) -> str:
        """The whole answer: sent, retried, continued while it is cut off; thinking stripped."""
        reasoning = self.reasoning_for(spec)
        limit = params["max_tokens"] + (reasoning.budget_tokens if reasoning else 0)
        window = self.context_window(spec)
        if window is not None:
            prompt = count_messages(messages)
            if prompt + MIN_ANSWER_TOKENS > window * CONTEXT_SAFETY:
                raise ContextTooLong(
                    f"{spec}: a prompt of about {prompt} tokens leaves no room for an answer in the "
                    f"model's context window of {window} tokens",
                    window,
                    prompt,
                )
            limit = min(limit, int(window * CONTEXT_SAFETY) - prompt)
        answer = ""
        conversation = messages
        grown = False
        for _ in range(self.settings.llm_max_continuations + 1):
            completion = self._send(spec, conversation, params["temperature"], limit, reasoning, tally)
            text = strip_reasoning(completion.text)
            if completion.finish != "length":
                return join_continuation(answer, text) if answer else text
            if not text.strip() and not answer and not grown:
                # Thinking used the whole allowance before any answer: give it more room once.
                grown, limit = True, self._raised_limit(spec, limit, window, messages)
                continue
            answer = join_continuation(answer, text) if answer else text
            tally.continuations += 1
            conversation = continuation_messages(spec, messages, answer, thinking=bool(reasoning))
        log.warning("%s: the answer was still cut off after %d continuations", spec, tally.continuations)
        if not answer.strip():
            raise NoAnswer(
                f"{spec}: the answer was cut off before any text (only thinking); raise llm_max_tokens"
            )
        return answer

    def _raised_limit(self, spec: ModelSpec, limit: int, window: int | None, messages: list[Message]) -> int:
        higher = limit * 2
        cap = self._caps.get(str(spec))
        if cap is not None:
            higher = min(higher, cap)
        if window is not None:
            higher = min(higher, int(window * CONTEXT_SAFETY) - count_messages(messages))
        return max(limit, higher)

    def _send(
        self,
        spec: ModelSpec,
        messages: list[Message],
        temperature: float,
        limit: int,
        reasoning: Reasoning | None,
        tally: _Tally,
    ) -> Completion:
        """One request, retried: rate limits for up to ``llm_rate_limit_wait_s``, server errors and
        empty answers ``llm_max_retries`` times; a too-high ``max_tokens`` is lowered to the model's cap."""
        backend = self.backend(spec)
        server_retries = empty_retries = rate_retries = 0
        rate_waited = 0.0
        cap = self._caps.get(str(spec))
        limit = min(limit, cap) if cap else limit
        lowered = False
        while True:
            try:
                completion = backend.complete(
                    messages, temperature=temperature, max_tokens=limit, reasoning=reasoning
                )
            except TransientError as exc:
                if exc.kind == "rate_limit":
                    patience = self.settings.llm_rate_limit_wait_s - rate_waited
                    if patience <= 0:
                        raise RetriesExhausted(
                            f"{exc} (still rate limited after {rate_waited:.0f}s of waiting)"
                        ) from None
                    delay = exc.retry_after_s
                    if delay is None:
                        delay = min(self._backoff(rate_retries), self.settings.llm_backoff_max_s)
                    delay = min(delay, patience)
                    rate_retries += 1
                    rate_waited += delay
                else:
                    if server_retries >= self.settings.llm_max_retries:
                        raise RetriesExhausted(f"{exc} (gave up after {server_retries} retries)") from None
                    delay = exc.retry_after_s
                    if delay is None:
                        delay = self._backoff(server_retries)
                    delay = min(delay, self.settings.llm_backoff_max_s)
                    server_retries += 1
                log.warning("%s; retrying in %.1fs", exc, delay)
                self._sleep(delay)
                continue
            except OutputLimitTooHigh as exc:
                if lowered or exc.cap >= limit:
                    raise
                with self._lock:
                    self._caps[str(spec)] = exc.cap
                limit, lowered = exc.cap, True
                continue
            except ContextTooLong as exc:
                if exc.limit_tokens:
                    with self._lock:
                        self._windows[str(spec)] = exc.limit_tokens
                room = (exc.limit_tokens or 0) - (exc.prompt_tokens or exc.limit_tokens or 0)
                if lowered or room < MIN_ANSWER_TOKENS or room >= limit:
                    raise
                # The prompt fits; prompt and answer together do not: ask for a shorter answer.
                limit, lowered = room - 16, True
                continue
            tally.add(completion)
            if completion.finish == "length" or strip_reasoning(completion.text).strip():
                return completion
            what = "refused to answer" if completion.finish == "refusal" else "sent an empty answer"
            if empty_retries >= self.settings.llm_max_retries:
                raise NoAnswer(f"{spec}: the model {what} {empty_retries + 1} times")
            log.warning("%s: the model %s; asking again", spec, what)
            self._sleep(min(self._backoff(empty_retries), self.settings.llm_backoff_max_s))
            empty_retries += 1

    def _backoff(self, attempt: int) -> float:
        return self.settings.llm_backoff_base_s * (2**attempt) * (1.0 + 0.1 * random.random())

    def _spend(self, spec: ModelSpec, tally: _Tally) -> float | None:
        """Count what the requests cost (failed attempts that produced tokens count too)."""
        cost = self.prices.cost(spec, tally.prompt, tally.completion)
        self.budget.add(cost, tally.prompt + tally.completion)
        return cost

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
        cached_prompt_tokens: int = 0,
        requests: int = 1,
        continuations: int = 0,
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
                cached_prompt_tokens=cached_prompt_tokens,
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
                "cached_prompt_tokens": cached_prompt_tokens,
                "requests": 0 if cached else requests,
                "continuations": continuations,
                "error": error,
            },
        )

    def close(self) -> None:
        if self.file_cache is not None:
            self.file_cache.close()
