"""Pytest fixtures shared by the LLM and search tests (imported by name into each test module)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlestar.core.events import EventBus
from mlestar.llm import LLMClient
from mlestar.settings import Settings
from mlestar.store.db import RunStore

from .llm_servers import FakeLLM, make_anthropic_app, make_ollama_app, make_openai_app
from .server import serve

# Variables a developer's shell may hold that would change what the tests see.
_ISOLATE = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "GEMINI_API_KEY",
    "OPENROUTER_API_KEY",
    "OLLAMA_BASE_URL",
    "VLLM_BASE_URL",
    "OPENAI_COMPATIBLE_API_KEY",
    "OPENAI_COMPATIBLE_BASE_URL",
    "TAVILY_API_KEY",
    "BRAVE_API_KEY",
    "GOOGLE_API_KEY",
    "GOOGLE_CSE_ID",
    "TAVILY_BASE_URL",
    "BRAVE_BASE_URL",
    "GOOGLE_CSE_BASE_URL",
    "MLESTAR_PRICES",
    "MLESTAR_LLM",
    "MLESTAR_SEARCH",
    "MLESTAR_BUDGET_USD",
    "MLESTAR_BUDGET_TOKENS",
)


@dataclass
class Endpoint:
    fake: FakeLLM
    url: str  # base URL to hand to the client (with /v1 for OpenAI-style servers)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No stray keys or .env files: every test starts in an empty folder with a clean environment."""
    for name in list(os.environ):
        if name in _ISOLATE or name.startswith("MLESTAR_LLM_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def _openai_server() -> Iterator[Endpoint]:
    fake = FakeLLM()
    with serve(make_openai_app(fake)) as server:
        yield Endpoint(fake, server.url + "/v1")


@pytest.fixture
def openai_fake(_openai_server: Endpoint) -> Endpoint:
    _openai_server.fake.reset()
    return _openai_server


@pytest.fixture(scope="module")
def _anthropic_server() -> Iterator[Endpoint]:
    fake = FakeLLM()
    with serve(make_anthropic_app(fake)) as server:
        yield Endpoint(fake, server.url)


@pytest.fixture
def anthropic_fake(_anthropic_server: Endpoint) -> Endpoint:
    _anthropic_server.fake.reset()
    return _anthropic_server


@pytest.fixture(scope="module")
def _ollama_server() -> Iterator[Endpoint]:
    fake = FakeLLM()
    with serve(make_ollama_app(fake)) as server:
        yield Endpoint(fake, server.url)


@pytest.fixture
def ollama_fake(_ollama_server: Endpoint) -> Endpoint:
    _ollama_server.fake.reset()
    return _ollama_server


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    run = RunStore.create(tmp_path / "runs" / "run-1")
    yield run
    run.close()


def fast_settings(url: str, spec: str = "openai-compatible:fake", **overrides: object) -> Settings:
    """Short timeouts and tiny backoff so retry tests take milliseconds."""
    values: dict[str, object] = {
        "llm": spec,
        "llm_base_url": url,
        "llm_max_retries": 2,
        "llm_backoff_base_s": 0.01,
        "llm_backoff_max_s": 0.05,
        "llm_timeout_s": 10.0,
        "llm_max_reasks": 2,
        "search": "offline",
    }
    values.update(overrides)
    return Settings.load(**values)


ANSWERS = Path(__file__).parent / "answers"


def answer(name: str) -> str:
    return (ANSWERS / name).read_text(encoding="utf-8")


def bus_of(store: RunStore | None) -> EventBus | None:
    """The event bus a run would have over ``store`` (the store records every event)."""
    return EventBus(recorder=store.append_event) if store is not None else None


def llm_client(settings: Settings, store: RunStore | None = None, **kwargs: object) -> LLMClient:
    """A client writing its calls to ``store`` and publishing its events through the store's bus."""
    return LLMClient(settings, store, bus_of(store), **kwargs)  # type: ignore[arg-type]
