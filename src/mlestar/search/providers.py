"""Web search providers over plain HTTP (httpx), each with an overridable base URL.

Keys: ``TAVILY_API_KEY``, ``BRAVE_API_KEY``, ``GOOGLE_API_KEY`` + ``GOOGLE_CSE_ID``; DuckDuckGo
needs none but the optional ``ddgs`` package (``pip install 'mlestar[search]'``). Base URLs:
``TAVILY_BASE_URL``, ``BRAVE_BASE_URL``, ``GOOGLE_CSE_BASE_URL``. Error messages never contain a
key: Google takes it in the query string, so URLs are left out of them.
"""

from __future__ import annotations

from typing import Any

import httpx

from mlestar.core.records import SearchResult
from mlestar.search.base import SearchError

_CONTENT_LIMIT = 6000  # page text kept per result; the retriever's prompt has to stay small


def _get_json(response: httpx.Response, provider: str) -> dict[str, Any]:
    if response.status_code >= 400:
        raise SearchError(f"{provider} answered HTTP {response.status_code}")
    try:
        data = response.json()
    except ValueError as exc:
        raise SearchError(f"{provider} answered with something that is not JSON") from exc
    if not isinstance(data, dict):
        raise SearchError(f"{provider} answered with unexpected JSON")
    return data


def _request(method: str, url: str, provider: str, timeout_s: float, **kwargs: Any) -> httpx.Response:
    try:
        return httpx.request(method, url, timeout=timeout_s, **kwargs)
    except httpx.HTTPError as exc:
        # str(exc) can hold the URL, and a Google URL holds the key: name the failure only.
        raise SearchError(f"{provider} request failed ({type(exc).__name__})") from None


class TavilySearcher:
    name = "tavily"
    default_base_url = "https://api.tavily.com"

    def __init__(self, api_key: str, *, base_url: str | None = None, timeout_s: float = 20.0) -> None:
        self._key = api_key
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.timeout_s = timeout_s

    def search(self, query: str, k: int = 5) -> list[SearchResult]:
        response = _request(
            "POST",
            f"{self.base_url}/search",
            self.name,
            self.timeout_s,
            json={"query": query, "max_results": k, "include_raw_content": True, "search_depth": "advanced"},
            headers={"Authorization": f"Bearer {self._key}"},
        )
        data = _get_json(response, self.name)
        return [
            SearchResult(
                title=str(item.get("title", "")),
                url=str(item.get("url", "")),
                snippet=str(item.get("content", "") or ""),
                content=str(item.get("raw_content") or "")[:_CONTENT_LIMIT],
            )
            for item in data.get("results", [])[:k]
            if isinstance(item, dict)
        ]


class BraveSearcher:
    name = "brave"
    default_base_url = "https://api.search.brave.com"

    def __init__(self, api_key: str, *, base_url: str | None = None, timeout_s: float = 20.0) -> None:
        self._key = api_key
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.timeout_s = timeout_s

    def search(self, query: str, k: int = 5) -> list[SearchResult]:
        response = _request(
            "GET",
            f"{self.base_url}/res/v1/web/search",
            self.name,
            self.timeout_s,
            params={"q": query, "count": min(k, 20)},
            headers={"X-Subscription-Token": self._key, "Accept": "application/json"},
        )
        data = _get_json(response, self.name)
        items = (data.get("web") or {}).get("results", [])
        return [
            SearchResult(
                title=str(item.get("title", "")),
                url=str(item.get("url", "")),
                snippet=str(item.get("description", "")),
                content="\n".join(str(s) for s in item.get("extra_snippets", []) or [])[:_CONTENT_LIMIT],
            )
            for item in items[:k]
            if isinstance(item, dict)
        ]


class GoogleSearcher:
    name = "google"
    default_base_url = "https://www.googleapis.com"

    def __init__(
        self, api_key: str, cse_id: str, *, base_url: str | None = None, timeout_s: float = 20.0
    ) -> None:
        self._key = api_key
        self.cse_id = cse_id
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.timeout_s = timeout_s

    def search(self, query: str, k: int = 5) -> list[SearchResult]:
        response = _request(
            "GET",
            f"{self.base_url}/customsearch/v1",
            self.name,
            self.timeout_s,
            params={"key": self._key, "cx": self.cse_id, "q": query, "num": max(1, min(k, 10))},
        )
        data = _get_json(response, self.name)
        return [
            SearchResult(
                title=str(item.get("title", "")),
                url=str(item.get("link", "")),
                snippet=str(item.get("snippet", "")),
            )
            for item in data.get("items", [])[:k]
            if isinstance(item, dict)
        ]


class DuckDuckGoSearcher:
    name = "duckduckgo"

    def __init__(self, *, timeout_s: float = 20.0) -> None:
        from ddgs import DDGS  # optional extra; make_searcher checks that it imports

        self._ddgs = DDGS
        self.timeout_s = timeout_s

    def search(self, query: str, k: int = 5) -> list[SearchResult]:
        try:
            items = self._ddgs(timeout=int(self.timeout_s)).text(query, max_results=k)
        except Exception as exc:  # ddgs raises its own exception types for rate limits and timeouts
            raise SearchError(f"duckduckgo search failed ({type(exc).__name__})") from None
        return [
            SearchResult(
                title=str(item.get("title", "")),
                url=str(item.get("href", "")),
                snippet=str(item.get("body", "")),
            )
            for item in (items or [])[:k]
            if isinstance(item, dict)
        ]
