"""The searcher protocol, the offline searcher, and the wrapper that turns failures into warnings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from mlestar.core.records import SearchResult

log = logging.getLogger(__name__)

Warn = Callable[[str], None]


class SearchError(Exception):
    """A search provider failed; ``SafeSearcher`` turns it into a warning and no results."""


@runtime_checkable
class Searcher(Protocol):
    name: str

    def search(self, query: str, k: int = 5) -> list[SearchResult]: ...


class OfflineSearcher:
    """No web: the retriever then falls back to the built-in knowledge base."""

    name = "offline"

    def search(self, query: str, k: int = 5) -> list[SearchResult]:
        return []


class SafeSearcher:
    """A search must never stop a run: any failure becomes a warning and an empty result list."""

    def __init__(self, inner: Searcher, on_warning: Warn | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self._warn = on_warning or (lambda message: log.warning("%s", message))

    def search(self, query: str, k: int = 5) -> list[SearchResult]:
        try:
            return self.inner.search(query, k)[:k]
        except Exception as exc:  # any provider failure; the knowledge base takes over
            self._warn(
                f"web search with {self.inner.name} failed ({_one_line(exc)});"
                " using the offline knowledge base"
            )
            return []


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
