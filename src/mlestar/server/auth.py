"""Access control for the API: a bearer token whenever the server is reachable beyond localhost.

With a token configured, every ``/api`` request must carry it, either as ``Authorization: Bearer
<token>`` or as ``?token=<token>`` (EventSource and download links cannot set headers).
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, status

from mlestar.server.options import ServerOptions


def presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query_params.get("token") or None


def token_matches(expected: str, given: str | None) -> bool:
    # Constant-time comparison so the token cannot be guessed byte by byte from timings.
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def require_token(request: Request) -> None:
    """FastAPI dependency guarding every API route."""
    settings: ServerOptions = request.app.state.settings
    if not settings.auth_required:
        return
    if settings.token is None or not token_matches(settings.token, presented_token(request)):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong access token",
            headers={"WWW-Authenticate": "Bearer"},
        )
