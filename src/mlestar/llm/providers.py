"""Providers: turning ``provider:model`` into a backend that sends one chat request.

Every OpenAI-compatible server (OpenAI, Gemini's compatible endpoint, OpenRouter, Ollama, vLLM,
LM Studio, llama.cpp) goes through the ``openai`` SDK; Claude goes through ``anthropic``. The SDKs'
own retries are switched off: ``mlestar.llm.client`` retries with the run's backoff settings so
that tests and budgets see every attempt.

Keys come from the process environment or a ``.env`` file (``mlestar.settings.secret``, which
never loads the file into ``os.environ``, from where every generated script would inherit them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mlestar.errors import ConfigError
from mlestar.llm.errors import (
    AuthenticationFailed,
    LLMError,
    MissingAPIKey,
    ModelNotFound,
    ServerUnreachable,
)
from mlestar.settings import secret

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass(frozen=True)
class ProviderInfo:
    sdk: str  # "openai" or "anthropic"
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
        "openai", "http://localhost:11434/v1", ("OLLAMA_API_KEY",), False, "OLLAMA_BASE_URL", hosted=False
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
    text: str
    prompt_tokens: int | None  # None when the server sent no usage
    completion_tokens: int | None
    model: str  # as reported by the server


class TransientError(Exception):
    """A failure worth retrying (429, 5xx, timeout, dropped connection)."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Backend(Protocol):
    spec: ModelSpec
    base_url: str

    def complete(self, messages: list[Message], *, temperature: float, max_tokens: int) -> Completion: ...


def _retry_after(response: Any) -> float | None:
    """Seconds from ``Retry-After`` / ``retry-after-ms``; HTTP dates fall back to our own backoff."""
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            return None
    return None


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


def _server_message(exc: Any, secret: str | None) -> str:
    """A short, key-free excerpt of what the server said."""
    body = getattr(exc, "body", None)
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


class _SDKBackend:
    """Shared error mapping; subclasses send the request."""

    spec: ModelSpec
    base_url: str
    _key: str | None

    def _where(self) -> str:
        return f"{self.spec.provider} at {self.base_url}"

    def _map_error(
        self, exc: Exception, status_error: type, connection_error: type, timeout_error: type
    ) -> Exception:
        if isinstance(exc, timeout_error):
            return TransientError(f"{self.spec}: the request timed out")
        if isinstance(exc, connection_error):
            if _refused(exc):
                return ServerUnreachable(
                    f"cannot reach {self._where()} (connection refused);"
                    " is the server running and the URL right?"
                )
            return TransientError(f"{self.spec}: connection to {self.base_url} failed")
        if isinstance(exc, status_error):
            status = int(getattr(exc, "status_code", 0))
            detail = _server_message(exc, self._key)
            if status in (401, 403):
                names = " or ".join(self.spec.info.key_env)
                return AuthenticationFailed(f"{self._where()} rejected the API key ({status}); check {names}")
            if status == 404:
                return ModelNotFound(
                    f"model {self.spec.model!r} not found at {self._where()} (404); check the model name"
                )
            if status in (408, 409, 429) or status >= 500:
                kind = "rate limited" if status == 429 else f"server error {status}"
                return TransientError(
                    f"{self.spec}: {kind}: {detail}", _retry_after(getattr(exc, "response", None))
                )
            return LLMError(f"{self.spec}: request rejected ({status}): {detail}")
        return exc


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

    def _reasoning_model(self) -> bool:
        # OpenAI's reasoning models reject temperature and max_tokens.
        name = self.spec.model.split("/")[-1]
        return self.spec.provider == "openai" and name.startswith(("o1", "o3", "o4", "gpt-5"))

    def complete(self, messages: list[Message], *, temperature: float, max_tokens: int) -> Completion:
        params: dict[str, Any] = {"model": self.spec.model, "messages": messages}
        if self._reasoning_model():
            params["max_completion_tokens"] = max_tokens
        else:
            params["max_tokens"] = max_tokens
            params["temperature"] = temperature
        o = self._openai
        try:
            response = self._client.chat.completions.create(**params)
        except o.APIError as exc:
            raise self._map_error(exc, o.APIStatusError, o.APIConnectionError, o.APITimeoutError) from None
        choices = getattr(response, "choices", None) or []
        if not choices:
            raise TransientError(f"{self.spec}: the server returned no choices")
        text = choices[0].message.content or ""
        usage = getattr(response, "usage", None)
        return Completion(
            text=text,
            prompt_tokens=getattr(usage, "prompt_tokens", None) if usage else None,
            completion_tokens=getattr(usage, "completion_tokens", None) if usage else None,
            model=getattr(response, "model", None) or self.spec.model,
        )


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

    def complete(self, messages: list[Message], *, temperature: float, max_tokens: int) -> Completion:
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        chat = [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"]
        params: dict[str, Any] = {
            "model": self.spec.model,
            "messages": chat,
            "max_tokens": max_tokens,
        }
        if self._takes_temperature:
            params["temperature"] = min(max(temperature, 0.0), 1.0)  # Claude accepts 0..1 only
        if system:
            params["system"] = system
        a = self._anthropic
        try:
            response = self._client.messages.create(**params)
        except a.APIError as exc:
            raise self._map_error(exc, a.APIStatusError, a.APIConnectionError, a.APITimeoutError) from None
        text = "".join(getattr(block, "text", "") for block in response.content if block.type == "text")
        usage = getattr(response, "usage", None)
        return Completion(
            text=text,
            prompt_tokens=getattr(usage, "input_tokens", None) if usage else None,
            completion_tokens=getattr(usage, "output_tokens", None) if usage else None,
            model=getattr(response, "model", None) or self.spec.model,
        )


def make_backend(
    spec: ModelSpec,
    *,
    base_url: str | None = None,
    key_env: str | None = None,
    timeout_s: float = 300.0,
    env_file: Path | None = None,
) -> Backend:
    url = resolve_base_url(spec, base_url, env_file)
    key = resolve_api_key(spec, key_env, env_file)
    try:
        if spec.info.sdk == "anthropic":
            return AnthropicBackend(spec, base_url=url, api_key=key, timeout_s=timeout_s)
        return OpenAIBackend(spec, base_url=url, api_key=key, timeout_s=timeout_s)
    except ImportError as exc:
        raise ConfigError(
            f"the {spec.info.sdk} package is needed for {spec}: pip install 'mlestar[llm]'"
        ) from exc
