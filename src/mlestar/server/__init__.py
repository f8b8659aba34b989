"""Web UI, REST API and live events for mlestar runs (``mlestar serve``)."""

from __future__ import annotations

from mlestar.server.app import create_app
from mlestar.server.options import TOKEN_ENV, ServerOptions

__all__ = ["TOKEN_ENV", "ServerOptions", "create_app"]
