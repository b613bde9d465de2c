"""What every HTTP answer of the app carries, and who is asking.

- `client_address`: the address a request came from, as Reflex's own websocket sees it: the socket's
  peer, or, behind reverse proxies (Reflex's `trusted_proxy_hops`, REFLEX_TRUSTED_PROXY_HOPS), the
  address that many hops back in X-Forwarded-For. Throttles count per this address.
- `SecurityHeaders`: ASGI middleware around the whole app (pages, websocket, API, export) that adds
  the Content-Security-Policy, frame and MIME-sniffing protections to every answer, and refuses a
  websocket opened from another site's page (cross-site websocket hijacking: the session cookie
  travels with the handshake).
- `safe_next_path`: where a sign-in may send the browser afterwards (never another site).
- `origin_allowed`: a state-changing request or websocket comes from this app's own pages (or an
  origin configured in CRM_ALLOWED_ORIGINS).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}


def _trusted_proxy_hops() -> int:
    from reflex.config import get_config

    return int(get_config().trusted_proxy_hops or 0)


def client_address(scope: Scope) -> str:
    """The client's address (at most 64 characters), "unknown" when the server does not say."""
    address = (scope.get("client") or ("unknown",))[0] or "unknown"
    hops = _trusted_proxy_hops()
    if hops:
        forwarded = [ip.strip() for ip in _headers(scope).get("x-forwarded-for", "").split(",") if ip.strip()]
        if len(forwarded) >= hops:
            address = forwarded[-hops]
    return str(address)[:64]


# --- Where to go after signing in ----------------------------------------------------------------

SIGN_IN_PATH = "/sign-in"


def _leaves_the_site(target: str) -> bool:
    if not target.startswith("/") or target.startswith("//"):
        return True
    if any(ch.isspace() or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch == "\\" for ch in target):
        return True
    parts = urlsplit(target)
    return bool(parts.scheme or parts.netloc) or parts.path.startswith("//")


def safe_next_path(target: str | None) -> str:
    """`target` if it is a path of this app, else "/". Browsers drop TAB, CR and LF inside URLs and read
    a backslash as a slash, so "/\\t/evil.example" and "/\\\\evil.example" would leave the site: any
    control character, whitespace or backslash refuses, as do a scheme, a host, "//" and the sign-in
    page itself (a loop). The path decoded once more must pass too ("/%2F%2Fevil.example"), in case a
    router decodes it before navigating."""
    if not isinstance(target, str) or len(target) > 2000:
        return "/"
    path = urlsplit(target).path
    if _leaves_the_site(target) or _leaves_the_site(unquote(path) or "/"):
        return "/"
    if path.rstrip("/") == SIGN_IN_PATH:
        return "/"
    return target


def next_from_url(url: str) -> str:
    """The safe `next` of a page address like "/sign-in?next=%2Fleads"."""
    values = parse_qs(urlsplit(str(url)).query).get("next") or ["/"]
    return safe_next_path(values[0])


# --- Same-origin checks ------------------------------------------------------------------------------


def _allowed_origins() -> tuple[str, ...]:
    from crm_app.settings import settings

    return settings.allowed_origins


def origin_allowed(headers: dict[str, str]) -> bool:
    """A request's Origin is this app's own (its host, whatever scheme a proxy saw) or one configured
    in CRM_ALLOWED_ORIGINS. No Origin at all (not a browser's cross-site request) is allowed."""
    origin = headers.get("origin")
    if origin is None:
        return True
    if origin.rstrip("/") in _allowed_origins():
        return True
    host = headers.get("x-forwarded-host") if _trusted_proxy_hops() else None
    return bool(origin) and origin != "null" and urlsplit(origin).netloc == (host or headers.get("host", ""))


# --- Headers on every answer -------------------------------------------------------------------------

# What the Reflex app needs, checked in headless Chromium (tests/e2e/test_web_security.py): its pages
# are React with inline scripts and styles (Radix, Emotion, Plotly), and Reflex runs the scripts a
# server event sends (rx.call_script) with eval; the websocket and every fetch go to this origin.
APP_CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "worker-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
# The API's interactive docs (FastAPI's Swagger UI) load their script and style from its CDN.
DOCS_CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net",
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net",
    "img-src 'self' data: https://fastapi.tiangolo.com",
    "object-src 'none'",
    "base-uri 'self'",
    "frame-ancestors 'none'",
])
# JSON, CSV and other answers that are not pages: nothing may run or frame them.
DATA_CSP = "default-src 'none'; frame-ancestors 'none'"
DOCS_PATH = "/api/v1/docs"


def security_headers(path: str, secure: bool) -> list[tuple[bytes, bytes]]:
    if path.startswith(DOCS_PATH):
        csp = DOCS_CSP
    elif path.startswith(("/api/", "/export/", "/auth/", "/_upload", "/ping", "/_health", "/health")):
        csp = DATA_CSP
    else:
        csp = APP_CSP
    headers = [
        ("content-security-policy", csp),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("cross-origin-opener-policy", "same-origin"),
    ]
    if secure:
        headers.append(("strict-transport-security", "max-age=31536000"))
    return [(k.encode(), v.encode()) for k, v in headers]


_BOOT = secrets.token_bytes(16)


def worker_id() -> str:
    """An opaque name of this web worker process (the same for every connection it holds, another in
    each worker; neither its pid nor the host). A page shows the one holding its live connection as
    its frame's `data-worker` (AppState.served_by), so an operator or a test can tell where a tab
    landed. (Granian does not send headers with a websocket's accept, so the handshake cannot say.)"""
    return hashlib.sha256(_BOOT + str(os.getpid()).encode()).hexdigest()[:12]


class SecurityHeaders:
    """ASGI middleware around the whole app: security headers on every HTTP answer (one the app set
    itself is kept), and a websocket opened from another site's page is refused."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            if not origin_allowed(_headers(scope)):
                await receive()  # websocket.connect
                return await send({"type": "websocket.close", "code": 1008})
            return await self.app(scope, receive, send)
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from crm_app.settings import settings

        added = security_headers(scope.get("path", ""), settings.secure_cookies)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                missing = [(k, v) for k, v in added if k not in present]
                message["headers"] = [*message.get("headers", []), *missing]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def with_security_headers(app):
    """For rx.App(api_transformer=[..., with_security_headers])."""
    return SecurityHeaders(app)
