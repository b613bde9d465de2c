"""A gate in front of Reflex's upload endpoint (`POST /_upload`), which reads the whole request body
into the server before the app's handler sees anything: a signed-out tab or any client inventing a
token could otherwise make a worker take hundreds of megabytes.

Before a byte of the body is read, the gate answers:
- 403 when the request comes from another site's page (Origin);
- 400 when it names an upload handler other than the Import page's;
- 401 without a live sign-in session (the `crm_session` cookie, checked in the database);
- 403 when that session's user, as the database says now, is not a manager or an admin (a demoted
  manager's open tab is refused, whatever the tab's state says);
- 413 when its Content-Length is over CRM_IMPORT_MAX_MB.
A body sent without a Content-Length (chunked) is counted as it streams and cut off with 413 at the
limit. Starlette then spools the file to disk past its first megabyte (its multipart parser), and the
Import page's handler copies it to the imports folder in chunks: memory stays flat whatever the size.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from crm_app.auth_routes import SESSION_COOKIE
from crm_app.db.engine import get_engine
from crm_app.db.models import utcnow
from crm_app.domain import Role
from crm_app.http_security import _headers, origin_allowed
from crm_app.services import accounts

UPLOAD_PATH = "/_upload"
MANAGER_ROLES = (Role.MANAGER, Role.ADMIN)


class _TooLarge(Exception):
    """The streamed body passed the limit."""


def too_large_message(limit: int) -> str:
    return (f"The file is larger than {limit / 1024 / 1024:,.0f} MB, the most this server accepts "
            "(CRM_IMPORT_MAX_MB): split it, or leave out columns you do not need.")


def _cookie(headers: dict[str, str]) -> str:
    try:
        jar = SimpleCookie(headers.get("cookie", ""))
    except CookieError:
        return ""
    morsel = jar.get(SESSION_COOKIE)
    return morsel.value[:100] if morsel else ""


def _session_role(token: str) -> Role | None:
    """The role of the token's signed-in user, now (None: no live session)."""
    with Session(get_engine()) as session:  # sessions are the tables' owner's to read
        user = accounts.session_user(session, token, utcnow())
    return user.role if user is not None else None


async def _refuse(send, status: int, message: str) -> None:
    body = json.dumps({"error": {"status": status, "message": message, "fields": []}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class UploadGuard:
    """ASGI middleware: checks an upload's sender and size before the upload endpoint reads it."""

    def __init__(self, app, *, max_bytes: Callable[[], int], handlers: Callable[[], set[str]],
                 path: str = UPLOAD_PATH, role_of: Callable[[str], Role | None] = _session_role):
        self.app, self.max_bytes, self.handlers, self.path = app, max_bytes, handlers, path
        self.role_of = role_of

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") != self.path:
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        limit = self.max_bytes()
        if not origin_allowed(headers):
            return await _refuse(send, 403, "Upload from the app's own Import page.")
        if headers.get("reflex-event-handler", "") not in self.handlers():
            return await _refuse(send, 400, "This server takes uploads only on its Import page.")
        token = _cookie(headers)
        role = await run_in_threadpool(self.role_of, token) if token else None
        if role is None:
            return await _refuse(send, 401, "Your session has ended: sign in again, then choose the file "
                                            "again.")
        if role not in MANAGER_ROLES:
            return await _refuse(send, 403, "Only a manager can import leads.")
        try:
            declared = int(headers.get("content-length", ""))
        except ValueError:
            declared = None
        if declared is not None and declared > limit:
            return await _refuse(send, 413, too_large_message(limit))

        seen = 0
        cut_off = started = False

        async def counted_receive():
            nonlocal seen, cut_off
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    cut_off = True
                    raise _TooLarge
            return message

        async def quiet_send(message):
            nonlocal started
            if cut_off:
                return  # the app's own error answer to the cut-off body: ours goes instead
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, quiet_send)
        except Exception:
            if not cut_off:
                raise
        if cut_off and not started:
            await _refuse(send, 413, too_large_message(limit))


def with_upload_guard(app):
    """For rx.App(api_transformer=[..., with_upload_guard, ...])."""
    from crm_app.settings import settings
    from crm_app.state.importing import ImportState

    handler = f"{ImportState.get_full_name()}.handle_upload"
    return UploadGuard(app, max_bytes=lambda: settings.import_max_bytes, handlers=lambda: {handler})
