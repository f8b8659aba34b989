"""Errors of the LLM client, each a one-line ``MlestarError`` the CLI prints without a traceback.

Messages name the provider, model, base URL and the environment variable to fix, never the key.
``stops_run`` tells the pipeline whether the run can go on without the failed step (a rate-limit
storm, a prompt too long, an empty answer) or must stop until the user acts (a bad key, a wrong
model name, a server that is not there).
"""

from __future__ import annotations

from mlestar.errors import ConfigError, MlestarError


class LLMError(MlestarError):
    """A request to the model failed."""

    stops_run = False


class MissingAPIKey(LLMError, ConfigError):
    """No key for a provider that needs one."""

    stops_run = True


class AuthenticationFailed(LLMError):
    """The server rejected the key (401/403)."""

    stops_run = True


class ModelNotFound(LLMError):
    """The server does not know the model (404)."""

    stops_run = True


class ServerUnreachable(LLMError):
    """Nothing answers at the base URL (connection refused, DNS failure)."""

    stops_run = True


class RetriesExhausted(LLMError):
    """Rate limits, server errors or timeouts persisted through every retry."""


class CacheMiss(LLMError):
    """Replay mode was asked for a response that the cache does not hold."""

    stops_run = True


class RequestRejected(LLMError):
    """The server refused this request (400: content policy, a parameter it does not take, ...)."""


class ContextTooLong(RequestRejected):
    """The prompt (with room for the answer) does not fit the model's context window.

    ``limit_tokens`` is the window when the server said (or the client knows) it, and
    ``prompt_tokens`` the size of the prompt as counted by the server or estimated by the client.
    """

    def __init__(
        self, message: str, limit_tokens: int | None = None, prompt_tokens: int | None = None
    ) -> None:
        super().__init__(message)
        self.limit_tokens = limit_tokens
        self.prompt_tokens = prompt_tokens


class OutputLimitTooHigh(RequestRejected):
    """The requested ``max_tokens`` is above what the model may write; ``cap`` is its limit."""

    def __init__(self, message: str, cap: int) -> None:
        super().__init__(message)
        self.cap = cap


class NoAnswer(LLMError):
    """The model answered nothing usable (empty, only thinking, or a refusal) every time it was asked."""
