"""Prices in USD per 1M tokens (input, output), and the cost of one call.

The built-in table holds list prices of common hosted models (standard tier, short prompts) as
published by the providers in 2025; prices change, so users extend or override it with a YAML or
JSON file (the ``prices`` setting, env ``MLESTAR_PRICES``)::

    gpt-4.1: {input: 2.0, output: 8.0}
    ollama:qwen2.5-coder:32b: [0, 0]

Models that are not in the table count tokens only (cost ``None``), including everything served
locally unless the user prices it explicitly.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from mlestar.errors import ConfigError
from mlestar.llm.providers import ModelSpec


@dataclass(frozen=True)
class Price:
    input: float  # USD per 1M prompt tokens
    output: float  # USD per 1M completion tokens

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000


BUILTIN_PRICES: dict[str, Price] = {
    # OpenAI
    "gpt-5": Price(1.25, 10.0),
    "gpt-5.1": Price(1.25, 10.0),
    "gpt-5-mini": Price(0.25, 2.0),
    "gpt-5-nano": Price(0.05, 0.40),
    "gpt-4.1": Price(2.0, 8.0),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4o": Price(2.50, 10.0),
    "gpt-4o-mini": Price(0.15, 0.60),
    "o1": Price(15.0, 60.0),
    "o1-mini": Price(1.10, 4.40),
    "o3-pro": Price(20.0, 80.0),
    "o3": Price(2.0, 8.0),
    "o3-mini": Price(1.10, 4.40),
    "o4-mini": Price(1.10, 4.40),
    # Anthropic
    "claude-opus-4-5": Price(5.0, 25.0),
    "claude-opus-4-1": Price(15.0, 75.0),
    "claude-opus-4": Price(15.0, 75.0),
    "claude-sonnet-4-5": Price(3.0, 15.0),
    "claude-sonnet-4": Price(3.0, 15.0),
    "claude-3-7-sonnet": Price(3.0, 15.0),
    "claude-3-5-sonnet": Price(3.0, 15.0),
    "claude-haiku-4-5": Price(1.0, 5.0),
    "claude-3-5-haiku": Price(0.80, 4.0),
    # Google (prompts up to 200k tokens)
    "gemini-2.5-pro": Price(1.25, 10.0),
    "gemini-2.5-flash": Price(0.30, 2.50),
    "gemini-2.5-flash-lite": Price(0.10, 0.40),
    "gemini-2.0-flash": Price(0.10, 0.40),
    "gemini-2.0-flash-lite": Price(0.075, 0.30),
}


def _parse_price(name: str, value: object) -> Price:
    if isinstance(value, dict) and "input" in value and "output" in value:
        return Price(float(value["input"]), float(value["output"]))
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return Price(float(value[0]), float(value[1]))
    raise ConfigError(
        f"bad price for {name!r}: expected {{input: X, output: Y}} or [X, Y] (USD per 1M tokens)"
    )


def load_price_file(path: Path) -> dict[str, Price]:
    if not path.is_file():
        raise ConfigError(f"price file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError
        raise ConfigError(f"cannot read price file {path}: {' '.join(str(exc).split())}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"price file {path} must map model names to prices")
    return {str(name).lower(): _parse_price(str(name), value) for name, value in data.items()}


class PriceTable:
    def __init__(self, extra: dict[str, Price] | None = None) -> None:
        self.prices: dict[str, Price] = dict(BUILTIN_PRICES)
        self.user: set[str] = set()
        for name, price in (extra or {}).items():
            self.prices[name.lower()] = price
            self.user.add(name.lower())

    @classmethod
    def load(cls, path: Path | str | None = None) -> PriceTable:
        """The built-in prices plus those of ``path`` (the ``prices`` setting)."""
        return cls(load_price_file(Path(path)) if path else None)

    def lookup(self, spec: ModelSpec) -> Price | None:
        full = f"{spec.provider}:{spec.model}".lower()
        if full in self.prices:
            return self.prices[full]
        model = spec.model.lower()
        if model in self.user:
            return self.prices[model]
        if not spec.info.hosted:
            return None  # a local model named like a hosted one is not billed like it
        # OpenRouter names models "vendor/model" and writes Claude versions with dots
        # ("anthropic/claude-sonnet-4.5"); dated snapshots fall back to their base model.
        model = model.split("/")[-1].replace(".", "-") if "claude" in model else model.split("/")[-1]
        candidates = [name for name in self.prices if ":" not in name and _is_prefix(name, model)]
        if not candidates:
            return None
        return self.prices[max(candidates, key=len)]

    def cost(self, spec: ModelSpec, prompt_tokens: int, completion_tokens: int) -> float | None:
        price = self.lookup(spec)
        return None if price is None else price.cost(prompt_tokens, completion_tokens)


_SNAPSHOT = re.compile(r"[-@](\d{8}|\d{4}-\d{2}-\d{2}|latest|v\d+(:\d+)?)$")


def _is_prefix(name: str, model: str) -> bool:
    # Only a dated snapshot or alias of a priced model shares its price ("gpt-4o-2024-08-06",
    # "claude-sonnet-4-5-20250929"); "claude-opus-4-5" is a different model from "claude-opus-4".
    return model == name or (model.startswith(name) and _SNAPSHOT.fullmatch(model[len(name) :]) is not None)
