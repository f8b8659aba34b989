"""Provider-agnostic LLM client with retries, usage and cost, budgets and a response cache."""

from mlestar.llm.budget import Budget
from mlestar.llm.client import LLMClient, LLMResponse
from mlestar.llm.errors import (
    AuthenticationFailed,
    CacheMiss,
    LLMError,
    MissingAPIKey,
    ModelNotFound,
    RetriesExhausted,
    ServerUnreachable,
)
from mlestar.llm.prices import BUILTIN_PRICES, Price, PriceTable
from mlestar.llm.providers import PROVIDERS, ModelSpec, parse_spec
from mlestar.llm.usage import UsageSummary, UsageTotals, usage_summary

__all__ = [
    "BUILTIN_PRICES",
    "PROVIDERS",
    "AuthenticationFailed",
    "Budget",
    "CacheMiss",
    "LLMClient",
    "LLMError",
    "LLMResponse",
    "MissingAPIKey",
    "ModelNotFound",
    "ModelSpec",
    "Price",
    "PriceTable",
    "RetriesExhausted",
    "ServerUnreachable",
    "UsageSummary",
    "UsageTotals",
    "parse_spec",
    "usage_summary",
]
