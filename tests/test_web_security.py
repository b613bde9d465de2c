"""The web layer's own defences (issue #17, item 10), without a browser: where a sign-in may send the
browser, the session cookie the sign-in route sets, and the headers every answer carries. The
running app is checked in headless Chromium in tests/e2e/test_web_security.py."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from sqlalchemy import text
from sqlmodel import Session
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from crm_app.http_security import SecurityHeaders, safe_next_path

LEAVES_THE_SITE = [
    "/\t/evil.example",
    "/%09/evil.example",
    "/\n/evil.example",
    "/\r/evil.example",
    "/\t\t/evil.example",
    "\t//evil.example",
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "https://evil.example",
    "http:evil.example",
    "javascript:alert(1)",
    "evil.example",
    "//evil.example/%2F..",
    " /leads",
    "/ /evil.example",
    "/\u00a0/evil.example",
    "/\u2028/evil.example",
    "/\x00/evil.example",
    "/\x7f/evil.example",
    "/\x85/evil.example",
    "/\u3000/evil.example",
    "",
    "/sign-in",
    "/sign-in/",
    "/sign-in?next=//evil.example",
    None,
    42,
    ["/leads"],
    "/%2F%2Fevil.example",
    "/%2fevil.example",
    "/%5Cevil.example",
    "/%0a/evil.example",
    "/%E2%80%A8/evil.example",
]
STAYS = [
    "/",
    "/leads",
    "/leads/12",
    "/pipeline?owner=mine",
    "/leads?q=a%2Fb",
    "/leads#top",
    "/sign-inx",
    "/leads?q=caf%C3%A9",
]


@pytest.mark.parametrize("target", LEAVES_THE_SITE)
def test_a_next_that_could_leave_the_site_goes_home(target):
    from crm_app.state.auth import _safe_next
    from urllib.parse import quote

    assert safe_next_path(target) == "/"
    if isinstance(target, str):  # as the sign-in page reads it from its own address
        assert _safe_next(f"http://app.test/sign-in?next={quote(target, safe='')}") == "/"


@pytest.mark.parametrize("target", STAYS)
def test_a_next_inside_the_app_is_kept(target):
    assert safe_next_path(target) == target


def _app(**routes) -> Starlette:
    return Starlette(
        routes=[
            Route(path, lambda request, body=body: PlainTextResponse(body)) for path, body in routes.items()
        ]
    )


def test_every_answer_carries_the_security_headers():
    client = TestClient(
        SecurityHeaders(_app(**{"/leads": "page", "/api/v1/me": "{}", "/api/v1/docs": "docs"}))
    )
    for path in ("/leads", "/api/v1/me", "/api/v1/docs", "/missing"):
        headers = client.get(path).headers
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
    assert "script-src 'self'" in client.get("/leads").headers["content-security-policy"]
    assert client.get("/api/v1/me").headers["content-security-policy"].startswith("default-src 'none'")


def test_a_websocket_from_another_site_is_refused():
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocketDisconnect

    async def echo(websocket):
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    client = TestClient(SecurityHeaders(Starlette(routes=[WebSocketRoute("/_event", echo)])))
    with client.websocket_connect("/_event", headers={"Origin": "http://testserver"}) as ws:  # its own host
        assert ws.receive_text() == "hello"
    with client.websocket_connect("/_event") as ws:  # not a browser: no Origin
        assert ws.receive_text() == "hello"
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/_event", headers={"Origin": "https://evil.example"}) as ws:
            ws.receive_text()


@pytest.fixture
def signed_up(engine):
    """A committed user (the route opens sessions of its own), removed afterwards."""
    from tests.factories import make_user

    with Session(engine, expire_on_commit=False) as session:
        user = make_user(session, f"Cookie{uuid.uuid4().hex[:6]} Tester")
    yield user
    with Session(engine) as session:
        session.execute(text("DELETE FROM users WHERE id = :id"), {"id": user.id})
        session.commit()


def _ticket(engine, user) -> str:
    from crm_app.db.models import utcnow
    from crm_app.services.accounts import sign_in_ticket
    from tests.factories import TEST_PASSWORD

    with Session(engine) as session:
        return sign_in_ticket(session, email=user.email, password=TEST_PASSWORD, now=utcnow())[0]


@pytest.mark.parametrize("secure", [False, True])
def test_the_sign_in_route_sets_an_httponly_cookie_once_per_ticket(engine, signed_up, monkeypatch, secure):
    from crm_app import auth_routes
    from crm_app.api import api
    from crm_app.db.models import utcnow
    from crm_app.services.accounts import session_user

    monkeypatch.setattr(
        auth_routes, "settings", dataclasses.replace(auth_routes.settings, secure_cookies=secure)
    )
    client = TestClient(api, base_url="https://app.test" if secure else "http://app.test")
    ticket = _ticket(engine, signed_up)
    answer = client.post("/auth/session", json={"ticket": ticket}, headers={"Origin": str(client.base_url)})
    assert answer.status_code == 204
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("crm_session=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert ("Secure" in cookie) is secure and "Path=/" in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    with Session(engine) as session:
        assert session_user(session, token, utcnow()).id == signed_up.id
    # A ticket is spent once; another site's page cannot sign a browser in (login CSRF).
    again = client.post("/auth/session", json={"ticket": ticket}, headers={"Origin": str(client.base_url)})
    assert again.status_code == 403 and "set-cookie" not in again.headers
    csrf = client.post(
        "/auth/session",
        json={"ticket": _ticket(engine, signed_up)},
        headers={"Origin": "https://evil.example"},
    )
    assert csrf.status_code == 403 and "set-cookie" not in csrf.headers
    # Signing out ends the session and clears the cookie.
    out = client.post(
        "/auth/sign-out", headers={"Origin": str(client.base_url)}, cookies={"crm_session": token}
    )
    assert out.status_code == 204 and 'crm_session=""' in out.headers["set-cookie"]
    with Session(engine) as session:
        assert session_user(session, token, utcnow()) is None


def test_a_ticket_expires_within_a_minute(engine, signed_up):
    from datetime import timedelta

    from crm_app.db.models import utcnow
    from crm_app.services.accounts import redeem_ticket

    ticket = _ticket(engine, signed_up)
    with Session(engine) as session:
        assert redeem_ticket(session, ticket, utcnow() + timedelta(seconds=61)) is None
