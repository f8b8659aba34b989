"""Browser-side guards and response headers, as plain ASGI middleware.

(Not ``BaseHTTPMiddleware``: it buffers and breaks long-lived streamed responses such as SSE.)

A server on loopback without a token is still reachable by two browser tricks: a page of another
site posting to ``localhost`` (cross-site request forgery), and a hostile domain re-pointed at
127.0.0.1 (DNS rebinding). The guard refuses foreign ``Origin`` headers on state-changing requests
and, when no token protects the API, any ``Host`` that is not a loopback name.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlestar.server.options import ServerOptions, is_loopback

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# The UI loads nothing from elsewhere; the policy makes the browser enforce it too.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",  # tokens in URLs never leave through the Referer header
    "x-frame-options": "DENY",
}


def _host_name(netloc: str) -> str:
    return (urlsplit(f"//{netloc}").hostname or "").lower()


def refusal(method: str, headers: Headers, settings: ServerOptions) -> str | None:
    """Why a request must be refused before it reaches a route, or None to let it through."""
    host = headers.get("host", "")
    if not settings.auth_required and not is_loopback(_host_name(host)):
        return "unexpected Host header"
    origin = headers.get("origin")
    # Browsers send "null" from sandboxed frames and file:// pages: never our own UI.
    foreign = origin is not None and (origin == "null" or urlsplit(origin).netloc.lower() != host.lower())
    if method not in SAFE_METHODS and foreign:
        return "cross-origin request refused"
    return None


class BrowserGuard:
    """Refuses requests that can only come from a hostile page; adds security headers to the rest."""

    def __init__(self, app: ASGIApp, settings: ServerOptions) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        reason = refusal(scope["method"], Headers(scope=scope), self.settings)
        if reason is not None:
            await JSONResponse({"detail": reason}, status_code=403)(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers.setdefault(key, value)
                headers.setdefault("content-security-policy", CONTENT_SECURITY_POLICY)
            await send(message)

        await self.app(scope, receive, send_with_headers)
