"""The gate in front of Reflex's upload endpoint (crm_app/upload_guard.py, issue #17 item 6): refused
before the body is read unless a live manager's session sends it, and never more than the limit.

Here the gate stands in front of a small Starlette route that parses the multipart body as Reflex's
upload endpoint does (request.form()) and records what it received; the sessions are real ones in
PostgreSQL. tests/e2e/test_upload_limits.py tries the same against the running app."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from crm_app.services import accounts
from crm_app.upload_guard import UploadGuard
from tests.conftest import NOW
from tests.factories import TEST_PASSWORD, make_user

HANDLER = "state.import_state.handle_upload"
LIMIT = 64 * 1024


def _app(session, received: list[int]):
    async def upload(request: Request):
        form = await request.form()
        sizes = [len(await f.read()) for f in form.getlist("files")]
        received.append(sum(sizes))
        return JSONResponse({"ok": True})

    def role_of(token: str):
        user = accounts.session_user(session, token, NOW)
        return user.role if user else None

    inner = Starlette(routes=[Route("/_upload", upload, methods=["POST"])])
    return UploadGuard(inner, max_bytes=lambda: LIMIT, handlers=lambda: {HANDLER}, role_of=role_of)


def _post(app, *, cookie: str | None, body, handler: str = HANDLER, headers: dict | None = None):
    """POST from a thread with its own event loop (Playwright may hold the main thread's)."""
    result: dict = {}

    def run():
        async def go():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                all_headers = {"reflex-client-token": "made-up-token", "reflex-event-handler": handler,
                               **(headers or {})}
                if cookie:
                    all_headers["cookie"] = f"crm_session={cookie}"
                return await client.post("/_upload", content=body, headers=all_headers)
        result["response"] = asyncio.run(go())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    return result["response"]


def _multipart(size: int) -> tuple[bytes, str]:
    boundary = "----crmtest"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"leads.csv\"\r\n"
            f"Content-Type: text/csv\r\n\r\n").encode() + b"x" * size + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class Counted:
    """A request body that counts how much of it the server pulled."""

    def __init__(self, size: int, chunk: int = 16 * 1024):
        self.size, self.chunk, self.pulled = size, chunk, 0

    async def __aiter__(self):
        yield _multipart(0)[0].split(b"\r\n--")[0]  # a file part's headers, then its endless content
        while self.pulled < self.size:
            n = min(self.chunk, self.size - self.pulled)
            self.pulled += n
            yield b"x" * n


def _token(session, name: str, role: str) -> str:
    user = make_user(session, name, role=role)
    token, _ = accounts.sign_in(session, email=user.email, password=TEST_PASSWORD, now=NOW)
    return token


@pytest.mark.parametrize("cookie", [None, "not-a-session-token"])
def test_without_a_live_session_nothing_of_the_body_is_read(session, cookie):
    received: list[int] = []
    body = Counted(1024 * 1024)
    response = _post(_app(session, received), cookie=cookie, body=body,
                     headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 401
    assert "sign in again" in response.json()["error"]["message"]
    assert received == [] and body.pulled <= body.chunk  # at most what the transport sends unasked


def test_a_rep_and_an_unknown_handler_are_refused_before_the_body(session):
    received: list[int] = []
    rep = _token(session, "Rita Rep", "rep")
    manager = _token(session, "Mona Manager", "manager")
    body, kind = _multipart(1000)
    refused = _post(_app(session, received), cookie=rep, body=body, headers={"content-type": kind})
    assert refused.status_code == 403 and refused.json()["error"]["message"] == "Only a manager can import leads."
    other = _post(_app(session, received), cookie=manager, body=body, handler="state.other.handler",
                  headers={"content-type": kind})
    assert other.status_code == 400
    assert received == []


def test_a_manager_uploads_within_the_limit_and_is_refused_past_it(session):
    received: list[int] = []
    manager = _token(session, "Mona Manager", "manager")
    app = _app(session, received)
    body, kind = _multipart(LIMIT // 2)
    assert _post(app, cookie=manager, body=body, headers={"content-type": kind}).status_code == 200
    assert received == [LIMIT // 2]
    # Too large by its Content-Length: refused at once.
    body, kind = _multipart(LIMIT * 2)
    refused = _post(app, cookie=manager, body=body, headers={"content-type": kind})
    assert refused.status_code == 413 and "larger than" in refused.json()["error"]["message"]
    # Too large without a Content-Length (streamed): cut off at the limit, the route never finishes.
    streamed = Counted(LIMIT * 20)
    refused = _post(app, cookie=manager, body=streamed, headers={"content-type": _multipart(0)[1]})
    assert refused.status_code == 413
    assert streamed.pulled <= LIMIT + 2 * streamed.chunk
    assert received == [LIMIT // 2]
