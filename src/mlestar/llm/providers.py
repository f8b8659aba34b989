"""Providers: turning ``provider:model`` into a backend that sends one chat request.

Every OpenAI-compatible server (OpenAI, Gemini's compatible endpoint, OpenRouter, vLLM, LM Studio,
llama.cpp) goes through the ``openai`` SDK; Claude goes through ``anthropic``; Ollama through its
native chat API (the OpenAI-compatible one cannot set the context size). The SDKs' own retries are
switched off: ``mlestar.llm.client`` retries with the run's backoff settings so
that tests and budgets see every attempt.

Keys come from the process environment or a ``.env`` file (``mlestar.settings.secret``, which
never loads the file into ``os.environ``, from where every generated script would inherit them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mlestar.errors import ConfigError
from mlestar.llm.errors import (
    AuthenticationFailed,
    ContextTooLong,
    LLMError,
    MissingAPIKey,
    ModelNotFound,
    OutputLimitTooHigh,
    RequestRejected,
    ServerUnreachable,
)
from mlestar.settings import secret

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass(frozen=True)
class ProviderInfo:
    sdk: str  # "openai", "anthropic" or "ollama" (its native API, over httpx)
    base_url: str | None  # None: the SDK's default
    key_env: tuple[str, ...]  # variables tried in order
    key_required: bool
    base_url_env: str | None = None
    hosted: bool = True  # False for local servers: their tokens cost nothing we know of


PROVIDERS: dict[str, ProviderInfo] = {
    "openai": ProviderInfo("openai", None, ("OPENAI_API_KEY",), True, "OPENAI_BASE_URL"),
    "anthropic": ProviderInfo("anthropic", None, ("ANTHROPIC_API_KEY",), True, "ANTHROPIC_BASE_URL"),
    "gemini": ProviderInfo(
        "openai",
        "https://generativelanguage.googleapis.com/v1beta/openai/",
        ("GEMINI_API_KEY",),
        True,
        "GEMINI_BASE_URL",
    ),
    "openrouter": ProviderInfo(
        "openai", "https://openrouter.ai/api/v1", ("OPENROUTER_API_KEY",), True, "OPENROUTER_BASE_URL"
    ),
    "ollama": ProviderInfo(
        "ollama", "http://localhost:11434/v1", ("OLLAMA_API_KEY",), False, "OLLAMA_BASE_URL", hosted=False
    ),
    "vllm": ProviderInfo(
        "openai", "http://localhost:8000/v1", ("VLLM_API_KEY",), False, "VLLM_BASE_URL", hosted=False
    ),
    "openai-compatible": ProviderInfo(
        "openai", None, ("OPENAI_COMPATIBLE_API_KEY",), False, "OPENAI_COMPATIBLE_BASE_URL", hosted=False
    ),
}


@dataclass(frozen=True)
class ModelSpec:
    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}"

    @property
    def info(self) -> ProviderInfo:
        return PROVIDERS[self.provider]


def parse_spec(spec: str) -> ModelSpec:
    """``ollama:qwen2.5-coder:32b`` -> (ollama, qwen2.5-coder:32b): only the first colon splits."""
    provider, sep, model = spec.strip().partition(":")
    provider = provider.lower()
    if not sep or not model:
        raise ConfigError(
            f"bad model spec {spec!r}: expected provider:model, e.g. openai:gpt-4.1 "
            f"(providers: {', '.join(PROVIDERS)})"
        )
    if provider not in PROVIDERS:
        raise ConfigError(f"unknown LLM provider {provider!r} in {spec!r} (known: {', '.join(PROVIDERS)})")
    return ModelSpec(provider, model)


def resolve_api_key(spec: ModelSpec, key_env: str | None = None, env_file: Path | None = None) -> str | None:
    names = (key_env,) if key_env else spec.info.key_env
    for name in names:
        value = secret(name, env_file)
        if value:
            return value
    if spec.info.key_required:
        raise MissingAPIKey(
            f"no API key for {spec.provider}: set {' or '.join(names)} in the environment or in a .env file"
        )
    return None


def resolve_base_url(
    spec: ModelSpec, base_url: str | None = None, env_file: Path | None = None
) -> str | None:
    if base_url:
        return base_url
    if spec.info.base_url_env:
        from_env = secret(spec.info.base_url_env, env_file)
        if from_env:
            return from_env
    if spec.info.base_url is None and spec.provider == "openai-compatible":
        raise ConfigError(
            f"{spec} needs a base URL: pass --llm-base-url http://HOST:PORT/v1"
            " or set OPENAI_COMPATIBLE_BASE_URL"
        )
    return spec.info.base_url


@dataclass
class Completion:
    text: str  # the answer as the server sent it (thinking blocks are the client's to strip)
    prompt_tokens: int | None  # None when the server sent no usage
    completion_tokens: int | None
    model: str  # as reported by the server
    finish: str = "stop"  # "stop", "length" (cut off at max_tokens) or "refusal" (declined / filtered)
    cached_prompt_tokens: int = 0  # prompt tokens the provider served from its prompt cache


@dataclass(frozen=True)
class Reasoning:
    """What a request asks of a reasoning model: an effort level and a thinking budget in tokens."""

    effort: str | None = None  # none | minimal | low | medium | high; None: the provider's default
    budget_tokens: int = 0


class TransientError(Exception):
    """A failure worth retrying: ``kind`` is "rate_limit", "server", "timeout" or "connection"."""

    def __init__(self, message: str, retry_after_s: float | None = None, kind: str = "server") -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.kind = kind


class Backend(Protocol):
    spec: ModelSpec
    base_url: str

    def complete(
        self,
        messages: list[Message],
        *,
        temperature: float,
        max_tokens: int,
        reasoning: Reasoning | None = None,
    ) -> Completion: ...

    def context_window(self) -> int | None:
        """The model's context window as the server reports it, or None when it does not say."""
        ...


_DURATION = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?\s*$"
)


def _seconds(text: str) -> float | None:
    """``"37s"``, ``"1.5s"``, ``"6m0s"``, ``"20ms"`` or a plain number of seconds."""
    text = str(text).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    match = _DURATION.match(text)
    if not match or not any(match.groups()):
        return None
    hours, minutes, seconds, millis = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def _retry_after(response: Any, body: Any = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` / ``Retry-After`` headers or Gemini's ``retryDelay``.

    HTTP-date values are ignored (our own backoff applies)."""
    headers = getattr(response, "headers", None)
    if headers is not None:
        millis = headers.get("retry-after-ms")
        if millis:
            try:
                return max(0.0, float(millis) / 1000.0)
            except ValueError:
                pass
        value = headers.get("retry-after")
        if value:
            seconds = _seconds(value)
            if seconds is not None:
                return seconds
    return _gemini_retry_delay(body)


def _gemini_retry_delay(body: Any) -> float | None:
    """Gemini puts the wait in the error body: ``details: [{"@type": ".../RetryInfo", "retryDelay": "37s"}]``
    (its OpenAI-compatible endpoint wraps the error in a list)."""
    if isinstance(body, list) and body:
        body = body[0]
    if not isinstance(body, dict):
        return None
    error = body.get("error", body)
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and detail.get("retryDelay"):
            return _seconds(str(detail["retryDelay"]))
    message = error.get("message", "") if isinstance(error, dict) else ""
    match = re.search(r"retry in (\d+(?:\.\d+)?)\s*s", str(message), re.I)
    return float(match.group(1)) if match else None


def _refused(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return True
        text = str(current).lower()
        if (
            "connection refused" in text
            or "name or service not known" in text
            or "nodename nor servname" in text
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def _error_body(exc: Any) -> Any:
    body = getattr(exc, "body", None)
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return body[0]
    return body


def _server_message(exc: Any, secret: str | None) -> str:
    """A short, key-free excerpt of what the server said."""
    body = _error_body(exc)
    message = ""
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message", "") if isinstance(error, dict) else str(error)
    if not message:
        message = getattr(exc, "message", "") or str(exc)
    return redact(" ".join(str(message).split())[:300], secret)


def redact(text: str, secret: str | None) -> str:
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return text


# What providers say when a prompt does not fit (OpenAI, vLLM, Anthropic, Gemini, llama.cpp, Ollama).
_CONTEXT_HINTS = re.compile(
    r"context length|context window|context_length|maximum context|prompt is too long|too many tokens|"
    r"max_model_len|exceed(?:s|ed)? (?:the )?(?:available )?context|input token count|reduce the length",
    re.I,
)
_CONTEXT_LIMIT = (
    r"maximum context length is (\d+)",
    r"> (\d+) maximum",
    r"maximum number of tokens allowed \((\d+)\)",
    r"\+ \d+ > (\d+)",
    r"context (?:size|window|limit)[^0-9]{0,20}(\d{3,})",
)
_CONTEXT_PROMPT = (
    r"(\d+) in the messages",
    r"messages resulted in (\d+)",
    r"request has (\d+) input tokens",
    r"prompt is too long: (\d+)",
    r"input token count \((\d+)\)",
    r"context limit: (\d+) \+",
)
_OUTPUT_CAP = (
    r"supports at most (\d+) completion tokens",
    r"max_tokens: \d+ > (\d+), which is the maximum",
    r"max_(?:completion_)?tokens[^.]{0,60}?"
    r"(?:less than or equal to|at most|<=|maximum(?: value)? (?:is|of)) ?(\d+)",
)


def _first_int(patterns: tuple[str, ...], text: str) -> int | None:
    for pattern in patterns:
        match = re.search(pattern, text, re.I)
        if match:
            return int(match.group(1))
    return None


def rejection(spec: ModelSpec, status: int, detail: str) -> LLMError:
    """The error for a refused request: a prompt too long, an answer limit too high, or another refusal."""
    cap = _first_int(_OUTPUT_CAP, detail)
    if cap is not None and not _first_int(_CONTEXT_PROMPT, detail):
        return OutputLimitTooHigh(f"{spec}: max_tokens above the model's limit of {cap}: {detail}", cap)
    if _CONTEXT_HINTS.search(detail):
        return ContextTooLong(
            f"{spec}: the prompt does not fit the model's context window ({status}): {detail}",
            _first_int(_CONTEXT_LIMIT, detail),
            _first_int(_CONTEXT_PROMPT, detail),
        )
    return RequestRejected(f"{spec}: request rejected ({status}): {detail}")


class _SDKBackend:
    """Shared error mapping; subclasses send the request."""

    spec: ModelSpec
    base_url: str
    _key: str | None

    def _where(self) -> str:
        return f"{self.spec.provider} at {self.base_url}"

    def _map_status(self, status: int, detail: str, response: Any = None, body: Any = None) -> Exception:
        if status in (401, 403):
            names = " or ".join(self.spec.info.key_env)
            return AuthenticationFailed(f"{self._where()} rejected the API key ({status}); check {names}")
        if status == 404:
            return ModelNotFound(
                f"model {self.spec.model!r} not found at {self._where()} (404); check the model name"
            )
        if status in (408, 409, 429) or status >= 500:
            rate_limited = status == 429 or (status == 503 and "rate" in detail.lower())
            kind = "rate limited" if rate_limited else f"server error {status}"
            return TransientError(
                f"{self.spec}: {kind}: {detail}",
                _retry_after(response, body),
                kind="rate_limit" if rate_limited else "server",
            )
        return rejection(self.spec, status, detail)

    def _map_error(
        self, exc: Exception, status_error: type, connection_error: type, timeout_error: type
    ) -> Exception:
        if isinstance(exc, timeout_error):
            return TransientError(f"{self.spec}: the request timed out", kind="timeout")
        if isinstance(exc, connection_error):
            if _refused(exc):
                return ServerUnreachable(
                    f"cannot reach {self._where()} (connection refused);"
                    " is the server running and the URL right?"
                )
            return TransientError(f"{self.spec}: connection to {self.base_url} failed", kind="connection")
        if isinstance(exc, status_error):
            status = int(getattr(exc, "status_code", 0))
            return self._map_status(
                status, _server_message(exc, self._key), getattr(exc, "response", None), _error_body(exc)
            )
        return exc

    def context_window(self) -> int | None:
        return None


class OpenAIBackend(_SDKBackend):
    def __init__(
        self, spec: ModelSpec, *, base_url: str | None, api_key: str | None, timeout_s: float
    ) -> None:
        import openai

        self._openai = openai
        self.spec = spec
        self._key = api_key
        # Local servers ignore the key but the SDK insists on one.
        self._client = openai.OpenAI(
            api_key=api_key or "not-needed", base_url=base_url, timeout=timeout_s, max_retries=0
        )
        self.base_url = str(self._client.base_url).rstrip("/")

    def _openai_reasoning_model(self) -> bool:
        # OpenAI's reasoning models reject temperature and max_tokens.
        name = self.spec.model.split("/")[-1]
        return self.spec.provider == "openai" and name.startswith(("o1", "o3", "o4", "gpt-5"))

    def complete(
        self,
        messages: list[Message],
        *,
        temperature: float,
        max_tokens: int,
        reasoning: Reasoning | None = None,
    ) -> Completion:
        params: dict[str, Any] = {"model": self.spec.model, "messages": messages}
        if self._openai_reasoning_model():
            params["max_completion_tokens"] = max_tokens
        else:
            params["max_tokens"] = max_tokens
            params["temperature"] = temperature
        if reasoning is not None and reasoning.effort:
            if self.spec.provider == "openrouter":
                params["extra_body"] = {"reasoning": {"effort": reasoning.effort}}
            else:
                params["reasoning_effort"] = reasoning.effort
        o = self._openai
        try:
            response = self._client.chat.completions.create(**params)
        except o.APIError as exc:
            raise self._map_error(exc, o.APIStatusError, o.APIConnectionError, o.APITimeoutError) from None
        choices = getattr(response, "choices", None) or []
        if not choices:
            raise TransientError(f"{self.spec}: the server returned no choices")
        choice = choices[0]
        message = choice.message
        finish = {"length": "length", "content_filter": "refusal"}.get(str(choice.finish_reason), "stop")
        if getattr(message, "refusal", None):
            finish = "refusal"
        usage = getattr(response, "usage", None)
        details = getattr(usage, "prompt_tokens_details", None) if usage else None
        cached = (
            getattr(details, "cached_tokens", None) or getattr(usage, "prompt_cache_hit_tokens", None) or 0
        )
        return Completion(
            text=message.content or "",
            prompt_tokens=getattr(usage, "prompt_tokens", None) if usage else None,
            completion_tokens=getattr(usage, "completion_tokens", None) if usage else None,
            model=getattr(response, "model", None) or self.spec.model,
            finish=finish,
            cached_prompt_tokens=int(cached),
        )

    def context_window(self) -> int | None:
        """vLLM lists ``max_model_len`` (others ``context_length``) with its models; hosted APIs do not."""
        if self.spec.info.hosted:
            return None
        try:
            listed = self._client.models.list()
        except Exception:  # an optional endpoint: a server without it is no error
            return None
        for model in getattr(listed, "data", []):
            if getattr(model, "id", None) == self.spec.model:
                for field in ("max_model_len", "context_length", "context_window", "max_context_length"):
                    value = getattr(model, field, None)
                    if isinstance(value, int) and value > 0:
                        return value
        return None


class AnthropicBackend(_SDKBackend):
    def __init__(
        self, spec: ModelSpec, *, base_url: str | None, api_key: str | None, timeout_s: float
    ) -> None:
        import anthropic

        self._anthropic = anthropic
        self.spec = spec
        self._key = api_key
        if base_url:
            # The SDK appends /v1/messages itself; accept URLs given with or without /v1.
            base_url = base_url.rstrip("/")
            base_url = base_url[:-3] if base_url.endswith("/v1") else base_url
        self._client = anthropic.Anthropic(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0
        )
        self.base_url = str(self._client.base_url).rstrip("/")
        # Recent SDKs dropped sampling parameters from messages.create; send one only where accepted.
        import inspect

        self._takes_temperature = "temperature" in inspect.signature(self._client.messages.create).parameters

    def complete(
        self,
        messages: list[Message],
        *,
        temperature: float,
        max_tokens: int,
        reasoning: Reasoning | None = None,
    ) -> Completion:
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        chat = [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"]
        if chat and chat[-1]["role"] == "assistant":
            # A continuation: Claude goes on from the end of this (prefilled) answer.
            chat[-1] = {"role": "assistant", "content": chat[-1]["content"].rstrip()}
        params: dict[str, Any] = {"model": self.spec.model, "messages": chat, "max_tokens": max_tokens}
        thinking = (
            reasoning is not None and reasoning.budget_tokens > 0 and reasoning.effort not in (None, "none")
        )
        if thinking:
            assert reasoning is not None
            budget = max(1024, min(reasoning.budget_tokens, max_tokens - 1024))
            params["extra_body"] = {"thinking": {"type": "enabled", "budget_tokens": budget}}
        elif self._takes_temperature:
            params["temperature"] = min(max(temperature, 0.0), 1.0)  # Claude accepts 0..1 only
        if system:
            # The shared part of every prompt sits in the system block: mark it for Anthropic's
            # prompt cache, so calls after the first pay a tenth for it.
            params["system"] = [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]
        a = self._anthropic
        try:
            response = self._client.messages.create(**params)
        except a.APIError as exc:
            raise self._map_error(exc, a.APIStatusError, a.APIConnectionError, a.APITimeoutError) from None
        text = "".join(getattr(block, "text", "") for block in response.content if block.type == "text")
        usage = getattr(response, "usage", None)
        cached = int(getattr(usage, "cache_read_input_tokens", 0) or 0) if usage else 0
        written = int(getattr(usage, "cache_creation_input_tokens", 0) or 0) if usage else 0
        prompt = getattr(usage, "input_tokens", None) if usage else None
        finish = {"max_tokens": "length", "refusal": "refusal"}.get(str(response.stop_reason), "stop")
        return Completion(
            text=text,
            # Anthropic counts cached and newly cached prompt tokens apart from the others.
            prompt_tokens=None if prompt is None else int(prompt) + cached + written,
            completion_tokens=getattr(usage, "output_tokens", None) if usage else None,
            model=getattr(response, "model", None) or self.spec.model,
            finish=finish,
            cached_prompt_tokens=cached,
        )


DEFAULT_OLLAMA_CONTEXT = 32_768


class OllamaBackend(_SDKBackend):
    """Ollama's native chat API: the only way to set ``num_ctx`` per request.

    Its OpenAI-compatible endpoint runs every model with the server's default context (a few
    thousand tokens) and silently drops the start of a longer prompt: the system prompt and the
    task go first. Here the context is chosen (``llm_context_tokens``, else the model's own
    length up to 32k tokens) and sent with every request.
    """

    def __init__(
        self, spec: ModelSpec, *, base_url: str | None, timeout_s: float, num_ctx: int | None = None
    ) -> None:
        import httpx

        self._httpx = httpx
        self.spec = spec
        self._key = None
        root = (base_url or "http://localhost:11434").rstrip("/")
        self.base_url = root[:-3] if root.endswith("/v1") else root
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_s)
        self._wanted_ctx = num_ctx
        self._num_ctx: int | None = None

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        httpx = self._httpx
        try:
            response = self._client.post(path, json=body)
        except httpx.TimeoutException:
            raise TransientError(f"{self.spec}: the request timed out", kind="timeout") from None
        except httpx.TransportError as exc:
            if _refused(exc):
                raise ServerUnreachable(
                    f"cannot reach ollama at {self.base_url} (connection refused); is `ollama serve` running?"
                ) from None
            raise TransientError(
                f"{self.spec}: connection to {self.base_url} failed", kind="connection"
            ) from None
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": response.text[:300]}
        if response.status_code != 200:
            detail = str(payload.get("error", payload)) if isinstance(payload, dict) else str(payload)
            raise self._map_status(response.status_code, " ".join(detail.split())[:300], response, payload)
        return payload if isinstance(payload, dict) else {}

    def context_window(self) -> int:
        if self._num_ctx is None:
            trained = None
            try:
                info = self._post("/api/show", {"model": self.spec.model}).get("model_info") or {}
                trained = next(
                    (int(v) for k, v in info.items() if k.endswith(".context_length") and int(v) > 0), None
                )
            except (LLMError, TransientError, ValueError, TypeError):
                trained = None
            wanted = self._wanted_ctx or DEFAULT_OLLAMA_CONTEXT
            self._num_ctx = min(wanted, trained) if trained else wanted
        return self._num_ctx

    def complete(
        self,
        messages: list[Message],
        *,
        temperature: float,
        max_tokens: int,
        reasoning: Reasoning | None = None,
    ) -> Completion:
        body: dict[str, Any] = {
            "model": self.spec.model,
            "messages": messages,
            "stream": False,
            "options": {
                "num_ctx": self.context_window(),
                "num_predict": max_tokens,
                "temperature": temperature,
            },
        }
        if reasoning is not None and reasoning.effort:
            body["think"] = reasoning.effort != "none"
        payload = self._post("/api/chat", body)
        message = payload.get("message") or {}
        return Completion(
            text=str(message.get("content") or ""),
            prompt_tokens=payload.get("prompt_eval_count"),
            completion_tokens=payload.get("eval_count"),
            model=str(payload.get("model") or self.spec.model),
            finish="length" if payload.get("done_reason") == "length" else "stop",
        )


def make_backend(
    spec: ModelSpec,
    *,
    base_url: str | None = None,
    key_env: str | None = None,
    timeout_s: float = 300.0,
    env_file: Path | None = None,
    context_tokens: int | None = None,
) -> Backend:
    url = resolve_base_url(spec, base_url, env_file)
    if spec.info.sdk == "ollama":
        return OllamaBackend(spec, base_url=url, timeout_s=timeout_s, num_ctx=context_tokens)
    key = resolve_api_key(spec, key_env, env_file)
    try:
        if spec.info.sdk == "anthropic":
            return AnthropicBackend(spec, base_url=url, api_key=key, timeout_s=timeout_s)
        return OpenAIBackend(spec, base_url=url, api_key=key, timeout_s=timeout_s)
    except ImportError as exc:
        raise ConfigError(
            f"the {spec.info.sdk} package is needed for {spec}: pip install 'mlestar[llm]'"
        ) from exc
