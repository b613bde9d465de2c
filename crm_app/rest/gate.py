"""The API's front door, before FastAPI reads a byte of the body: size, key, rate.

1. A body larger than settings.api_max_body_bytes (CRM_API_MAX_BODY_MB) is refused with 413: at
   once when Content-Length says so, else as soon as the streamed body passes the limit.
2. The API key is checked and the request counted against the key's per-minute limit (429 over
   it) before the body is parsed, so a malformed body costs its sender a request like any other,
   and nobody without a key makes the server parse 50 MB of JSON.
3. A request without a valid key (401) is counted against its client address
   (settings.api_failed_key_rate a minute); past that, 429.

The key's principal is left in `scope["state"]` for the routes' `principal` dependency, and every
answer carries the rate headers.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from crm_app.db.engine import get_engine
from crm_app.db.models import utcnow
from crm_app.http_security import client_address
from crm_app.services import api_keys
from crm_app.services.api_keys import KeyRefused
from crm_app.settings import settings

# Readable without a key: the API's documentation.
PUBLIC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/openapi.json"})


def error_response(status: int, message: str, fields=(), headers=None) -> JSONResponse:
    """The API's one error shape: {"error": {"status", "message", "fields": [{"field", "message"}]}}."""
    body = {"error": {"status": status, "message": message,
                      "fields": [{"field": f, "message": m} for f, m in fields]}}
    return JSONResponse(body, status_code=status, headers=headers)


def _too_large() -> str:
    mb = settings.api_max_body_bytes / (1024 * 1024)
    return f"The request body is over the limit of {mb:g} MB: send smaller batches."


def _secret(headers: dict[str, str]) -> str | None:
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return headers.get("x-api-key")


def _admit(secret: str | None, source: str) -> tuple[int, str, Any, api_keys.RateDecision]:
    """(status, message, principal, rate decision): 0 when the request may go on."""
    now = utcnow()
    with Session(get_engine()) as session:  # as the owner: nobody is acting until the key is known
        try:
            found = api_keys.authenticate(session, secret)
        except KeyRefused as error:
            decision = api_keys.take_keyless_request(session, source, now, settings.api_failed_key_rate)
            if not decision.allowed:
                return (429, f"Too many requests without a valid API key from {source}; retry in "
                             f"{decision.reset_seconds} s.", None, decision)
            return 401, str(error), None, decision
        decision = api_keys.take_request(session, found, now)
    if not decision.allowed:
        return (429, f"This key's limit of {decision.limit} requests a minute is reached; "
                     f"retry in {decision.reset_seconds} s.", found, decision)
    return 0, "", found, decision


class ApiGate:
    """ASGI middleware for the /api/v1 app (see the module's docstring)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        root = scope.get("root_path", "")
        path = scope["path"][len(root):] if scope["path"].startswith(root) else scope["path"]
        if path in PUBLIC_PATHS:
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        limit = settings.api_max_body_bytes
        length = headers.get("content-length")
        if length is not None and (not length.strip().isdecimal() or int(length) > limit):
            refusal = error_response(413, _too_large(), headers={"Connection": "close"})
            return await refusal(scope, receive, send)

        try:
            status, message, principal, decision = await run_in_threadpool(_admit, _secret(headers),
                                                                           client_address(scope))
        except Exception as error:  # the key check reads the database: while it is away, 503 JSON
            from crm_app.db.outage import database_unavailable
            from crm_app.rest.outage import RETRY_AFTER_SECONDS, UNAVAILABLE

            if not database_unavailable(error):
                raise
            refusal = error_response(503, UNAVAILABLE, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
            return await refusal(scope, receive, send)
        rate = {"X-RateLimit-Limit": str(decision.limit), "X-RateLimit-Remaining": str(decision.remaining)}
        if status:
            extra = ({"WWW-Authenticate": "Bearer"} if status == 401
                     else {"Retry-After": str(decision.reset_seconds)})
            return await error_response(status, message, headers={**rate, **extra})(scope, receive, send)
        state = scope.setdefault("state", {})
        state["principal"], state["rate_headers"] = principal, rate

        seen = 0

        async def bounded_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # FastAPI re-raises an HTTPException met while reading the body; the API's
                    # handler turns it into the JSON error.
                    raise HTTPException(413, _too_large(), headers={"Connection": "close"})
            return message

        async def send_with_rate(message):
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                missing = [(k.lower().encode(), v.encode()) for k, v in rate.items()
                           if k.lower().encode() not in present]
                message["headers"] = [*message.get("headers", []), *missing]
            await send(message)

        await self.app(scope, bounded_receive, send_with_rate)
