"""The FastAPI application: REST API, live events and the web UI, in one process."""

from __future__ import annotations

import sqlite3
from importlib.metadata import version
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from mlestar.errors import RunNotFound
from mlestar.server.api import router
from mlestar.server.auth import require_token
from mlestar.server.control import RunControl
from mlestar.server.guard import BrowserGuard
from mlestar.server.options import ServerOptions
from mlestar.server.runs import RunService

STATIC_DIR = Path(__file__).parent / "static"


def create_app(settings: ServerOptions) -> FastAPI:
    settings.check()
    app = FastAPI(
        title="mlestar",
        version=version("mlestar"),
        description="Watch, steer and inspect MLE-STAR runs. With a token configured, send it as "
        "`Authorization: Bearer <token>` or `?token=<token>`.",
        # The stock docs pages load their scripts from a CDN: the UI must work offline, so the
        # schema is served (behind the token) and the interactive pages are left out.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.service = RunService(settings)
    app.state.control = RunControl(app.state.service)
    app.add_middleware(BrowserGuard, settings=settings)
    app.include_router(router)

    @app.get("/api/openapi.json", include_in_schema=False, dependencies=[Depends(require_token)])
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.exception_handler(RunNotFound)
    async def run_not_found(request: Request, exc: RunNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(sqlite3.DatabaseError)
    async def unreadable_store(request: Request, exc: sqlite3.DatabaseError) -> JSONResponse:
        return JSONResponse({"detail": f"the run store cannot be read: {exc}"}, status_code=409)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        # The page holds no data; everything it shows comes through the (guarded) API.
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
