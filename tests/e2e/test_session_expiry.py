"""Sessions ending under a browser that is still open: expiry, idle timeout and sign-out elsewhere.

The server trusts a tab's check of its session for at most RECHECK_SECONDS (crm_app/state/base.py), so
a tab that was just checked keeps working that long; a new tab, or any event after that, checks again.
The tests act like a user: open a tab, or wait that long and then use the page."""

from __future__ import annotations

import hashlib
import re
import time
from urllib.parse import unquote, urlsplit

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from crm_app.state.base import RECHECK_SECONDS
from tests.e2e.conftest import E2E_PASSWORD, email_of, sign_in_as

pytestmark = pytest.mark.e2e

ENDED = "Your session has ended: sign in again."


def _token(page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "crm_session")


def _session_row(app_session, token: str):
    app_session.expire_all()
    return app_session.execute(
        text("SELECT id, expires_at, last_seen_at, revoked_at FROM auth_sessions WHERE token_hash = :h"),
        {"h": hashlib.sha256(token.encode()).hexdigest()},
    ).one()


def _end_in_database(app_session, token: str, how: str) -> None:
    """What time does to a session: opened long ago and past its expiry though used a minute ago, or
    within its expiry but unused for longer than the idle limit (CRM_SESSION_HOURS, _IDLE_MINUTES)."""
    moved = {
        "expired": "created_at = now() - interval '3 days', expires_at = now() - interval '1 hour', "
                   "last_seen_at = now() - interval '1 minute'",
        "idle": "last_seen_at = now() - interval '3 days', created_at = now() - interval '3 days', "
                "expires_at = now() + interval '1 hour'",
    }[how]
    try:
        app_session.execute(text(f"UPDATE auth_sessions SET {moved} WHERE token_hash = :h"),
                            {"h": hashlib.sha256(token.encode()).hexdigest()})
        app_session.commit()
    except Exception:
        app_session.rollback()  # the session is shared by the whole run
        raise


def _on_sign_in(page, next_path: str) -> None:
    page.wait_for_url(re.compile(r"/sign-in"))
    query = urlsplit(page.url).query
    assert f"next={next_path}" in unquote(query), page.url
    page.locator(".sign-in-ready").wait_for(state="attached")


def _sign_in_again(page, name: str, back_to: str) -> None:
    page.locator("#field-email").fill(email_of(name))
    page.locator("#field-password").fill(E2E_PASSWORD)
    page.locator(".sign-in-submit").click()
    page.wait_for_url(lambda url: urlsplit(url).path.rstrip("/") == back_to)
    expect(page.locator(".signed-in-name")).to_have_text(name)


@pytest.mark.parametrize("how", ["expired", "idle"])
def test_a_session_that_ended_sends_a_new_tab_to_sign_in_with_a_reason_and_back(page, app_session, how):
    sign_in_as(page, "Sam Seller", "/leads")
    expect(page.locator(".signed-in-name")).to_have_text("Sam Seller")
    _end_in_database(app_session, _token(page), how)

    tab = page.context.new_page()  # same browser, same cookie, a tab the server has not checked yet
    tab.goto("/pipeline")
    _on_sign_in(tab, "/pipeline")
    expect(tab.locator(".sign-in-message")).to_have_text(ENDED)
    expect(tab.get_by_text("Sam Seller")).to_have_count(0)
    _sign_in_again(tab, "Sam Seller", "/pipeline")
    tab.close()


def test_an_expired_session_stops_the_open_tab_at_its_next_action_and_returns_there(page, app_session):
    sign_in_as(page, "Sam Seller", "/leads")
    expect(page.locator(".lead-row").first).to_be_visible()
    checked = time.monotonic()  # the sign-in was the server's last check of this tab's session
    _end_in_database(app_session, _token(page), "expired")
    # Wait out the time the server trusts its last check, then use the page: a search sends an event.
    time.sleep(max(0.0, RECHECK_SECONDS + 2 - (time.monotonic() - checked)))
    page.get_by_placeholder("Search name, company or email").fill("alan")
    _on_sign_in(page, "/leads")
    expect(page.locator(".sign-in-message")).to_have_text(ENDED)
    _sign_in_again(page, "Sam Seller", "/leads")
    expect(page.locator(".lead-row").first).to_be_visible()


def test_signing_out_ends_the_session_for_any_browser_holding_its_token(page, app_session, browser, app_url):
    sign_in_as(page, "Sam Seller", "/")
    token = _token(page)
    page.locator(".sign-out").click()
    page.wait_for_url(re.compile(r"/sign-in"))
    assert _session_row(app_session, token).revoked_at is not None
    # The token itself is dead, not only forgotten by this browser: another browser holding it is refused.
    elsewhere = browser.new_context(base_url=app_url)
    try:
        elsewhere.add_cookies([{"name": "crm_session", "value": token, "url": app_url}])
        stolen = elsewhere.new_page()
        stolen.goto("/leads")
        stolen.wait_for_url(re.compile(r"/sign-in"))
        expect(stolen.locator(".lead-row")).to_have_count(0)
    finally:
        elsewhere.close()


def test_signing_out_in_one_tab_ends_the_session_for_a_fresh_load_in_another(page):
    sign_in_as(page, "Sam Seller", "/")
    other = page.context.new_page()
    other.goto("/pipeline")
    expect(other.locator(".signed-in-name")).to_have_text("Sam Seller")

    page.locator(".sign-out").click()
    page.wait_for_url(re.compile(r"/sign-in"))
    page.locator(".sign-in-ready").wait_for(state="attached")
    expect(page.locator(".sign-in-message")).to_have_count(0)  # they chose to: no "session ended" reason
    assert "crm_session" not in {c["name"] for c in page.context.cookies() if c["value"]}

    other.goto("/leads")  # a fresh load in the other tab, well within its 30 s recheck
    other.wait_for_url(re.compile(r"/sign-in"), timeout=10_000)
    expect(other.get_by_text("Sam Seller")).to_have_count(0)
    other.close()
