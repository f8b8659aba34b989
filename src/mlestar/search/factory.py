"""Choosing the searcher: an explicit provider, "auto" (the first with a key), or offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mlestar.errors import ConfigError
from mlestar.search.base import OfflineSearcher, SafeSearcher, Searcher, Warn
from mlestar.search.providers import BraveSearcher, DuckDuckGoSearcher, GoogleSearcher, TavilySearcher
from mlestar.settings import secret

PROVIDERS = ("tavily", "brave", "google", "duckduckgo")
OFFLINE_NAMES = ("offline", "none", "off", "")
KEY_ENV = {
    "tavily": ("TAVILY_API_KEY",),
    "brave": ("BRAVE_API_KEY",),
    "google": ("GOOGLE_API_KEY", "GOOGLE_CSE_ID"),
    "duckduckgo": (),
}


def _ddgs_installed() -> bool:
    return importlib.util.find_spec("ddgs") is not None


def _build(name: str, timeout_s: float, env_file: Path | None) -> Searcher | str:
    """The searcher, or why it cannot be built."""
    env = {var: secret(var, env_file) for var in KEY_ENV[name]}
    missing = [var for var, value in env.items() if not value]
    if missing:
        return f"{name} search needs {' and '.join(missing)}"
    if name == "tavily":
        return TavilySearcher(
            env["TAVILY_API_KEY"] or "", base_url=secret("TAVILY_BASE_URL", env_file), timeout_s=timeout_s
        )
    if name == "brave":
        return BraveSearcher(
            env["BRAVE_API_KEY"] or "", base_url=secret("BRAVE_BASE_URL", env_file), timeout_s=timeout_s
        )
    if name == "google":
        return GoogleSearcher(
            env["GOOGLE_API_KEY"] or "",
            env["GOOGLE_CSE_ID"] or "",
            base_url=secret("GOOGLE_CSE_BASE_URL", env_file),
            timeout_s=timeout_s,
        )
    if not _ddgs_installed():
        return "duckduckgo search needs the ddgs package (pip install 'mlestar[search]')"
    return DuckDuckGoSearcher(timeout_s=timeout_s)


def make_searcher(
    provider: str | None = "auto",
    *,
    timeout_s: float = 20.0,
    on_warning: Warn | None = None,
    env_file: Path | None = None,
) -> Searcher:
    """A searcher that never raises while searching; configuration problems only warn."""
    name = (provider or "offline").strip().lower()
    if name in OFFLINE_NAMES:
        return OfflineSearcher()
    if name == "auto":
        for candidate in PROVIDERS:
            built = _build(candidate, timeout_s, env_file)
            if not isinstance(built, str):
                return SafeSearcher(built, on_warning)
        return OfflineSearcher()
    if name not in PROVIDERS:
        raise ConfigError(
            f"unknown search provider {provider!r} (known: auto, {', '.join(PROVIDERS)}, offline)"
        )
    built = _build(name, timeout_s, env_file)
    if isinstance(built, str):
        warn = on_warning or SafeSearcher(OfflineSearcher())._warn
        warn(f"{built}; using the offline knowledge base")
        return OfflineSearcher()
    return SafeSearcher(built, on_warning)
