"""The REST API on the running app, with the browser watching: an admin makes a key on the API keys
page, an outside system uses it, and the rep's open Today page and board change without a reload."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from tests.e2e.conftest import sign_in_as
from tests.factories import make_user

pytestmark = pytest.mark.e2e


def _create_key_in_ui(page, name: str, acts_as: str, scope_label: str = "Write (and read)") -> str:
    sign_in_as(page, "Abe Admin", "/api-keys")
    page.locator("#field-name").fill(name)
    page.locator(".key-user").click()
    page.get_by_role("option", name=acts_as).click()
    if scope_label != "Write (and read)":
        page.get_by_role("combobox").filter(has_text="Write (and read)").click()
        page.get_by_role("option", name=scope_label).click()
    page.locator(".create-key").click()
    secret = page.locator(".new-secret")
    expect(secret).to_contain_text("crm_")
    return secret.inner_text().strip()


@pytest.fixture
def live_rep(app_session):
    """A rep of their own, so the leads this test adds stay out of the other tests' queues."""
    user = make_user(app_session, "Lou Live")
    yield user
    app_session.rollback()
    ids = [row[0] for row in app_session.execute(text("SELECT id FROM leads WHERE owner_id = :u"), {"u": user.id})]
    for table in ("activities", "stage_changes", "audit_log"):
        app_session.execute(text(f"DELETE FROM {table} WHERE lead_id = ANY(:ids)"), {"ids": ids})
    app_session.execute(text("DELETE FROM leads WHERE id = ANY(:ids)"), {"ids": ids})
    app_session.execute(text("DELETE FROM users WHERE id = :u"), {"u": user.id})  # their keys and sessions go too
    app_session.commit()


def test_an_event_from_the_api_shows_on_the_reps_open_pages(page, browser, app_url, live_rep):
    # A website reports what prospects do: its key acts as a manager (a rep's key may not), and it
    # gives the new lead to Lou.
    secret = _create_key_in_ui(page, "Website forms", "Maya Manager (manager)")
    api = httpx.Client(base_url=f"{app_url}/api/v1", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    created = api.post("/leads", json={"email": "live.wire@example.com", "name": "Live Wire", "company": "Wires Ltd",
                                       "company_size": 10, "source": "website",
                                       "owner_email": live_rep.email})
    assert created.status_code == 201, created.text
    lead = created.json()
    assert lead["tier"] == "cold" and lead["owner"]["name"] == "Lou Live"

    # Lou has Today open in one tab and the board in another.
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=app_url)
    today = context.new_page()
    sign_in_as(today, "Lou Live", "/")
    expect(today.locator(".queue-empty")).to_be_visible()
    board = context.new_page()
    board.goto("/pipeline")
    card = board.locator(f'[data-card-id="{lead["id"]}"]')
    expect(board.locator('.pipeline-column[data-stage="new"]').locator(card)).to_have_count(1)

    # The website reports a pricing request and a demo request: the lead turns Hot.
    events = api.post("/events/batch", json={"events": [
        {"lead": {"email": "live.wire@example.com"}, "type": "pricing_request"},
        {"lead": {"email": "live.wire@example.com"}, "type": "demo_request"},
    ]})
    assert events.status_code == 201, events.text
    assert events.json()["leads"][0]["tier"] == "hot"
    # Without a reload, Today now says to call them, with the new score.
    item = today.locator(".queue-item").filter(has_text="Live Wire")
    expect(item).to_have_count(1, timeout=15_000)
    expect(item.locator(".score-badge")).to_have_text(str(events.json()["leads"][0]["score"]))

    # A stage move through the API moves the card on the open board.
    moved = api.post(f"/leads/{lead['id']}/stage", json={"stage": "contacted"})
    assert moved.status_code == 200, moved.text
    expect(board.locator('.pipeline-column[data-stage="contacted"]').locator(card)).to_have_count(1, timeout=15_000)
    expect(board.locator('.pipeline-column[data-stage="new"]').locator(card)).to_have_count(0)
    context.close()
    api.close()


def test_keys_are_made_and_revoked_on_the_api_keys_page(page, app_url, live_rep):
    sign_in_as(page, "Abe Admin", "/api-keys")
    page.locator(".create-key").click()  # nothing filled in
    expect(page.locator(".error-name")).to_contain_text("Name the key")
    page.locator("#field-name").fill("Email tool")
    page.locator("#field-rate").fill("lots")
    page.locator(".create-key").click()
    expect(page.locator(".error-rate")).to_contain_text("whole number")
    page.locator("#field-rate").fill("600")
    page.locator(".create-key").click()
    expect(page.locator(".error-user")).to_contain_text("Choose the person")

    secret = _create_key_in_ui(page, "Email tool", "Lou Live (rep)")
    who = httpx.get(f"{app_url}/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert who.status_code == 200 and who.json()["acts_as"]["name"] == "Lou Live"
    # After a reload the secret is gone for good (the page's load forgets it); the list shows only
    # its first characters.
    page.reload()
    page.wait_for_function("secret => !document.body.innerHTML.includes(secret)", arg=secret)
    expect(page.locator(".new-secret")).to_have_count(0)
    row = page.locator('.key-row[data-name="Email tool"]').first
    expect(row).to_contain_text(secret[:12])

    row.locator(".revoke-key").click()
    # Irreversible: the confirmation says what stops, then the key is revoked.
    expect(page.locator(".revoke-confirm .confirm-impact")).to_contain_text("acting as Lou Live")
    page.locator(".revoke-confirm .confirm-ok").click()
    expect(page.locator(".keys-message")).to_contain_text("Revoked")
    refused = httpx.get(f"{app_url}/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]


def test_a_rep_is_refused_the_api_keys_page(page):
    sign_in_as(page, "Ria Rep", "/api-keys")
    expect(page.locator(".refused")).to_contain_text("Only an admin can manage API keys.")
    expect(page.locator(".create-key")).to_have_count(0)


def test_the_api_docs_are_served_by_the_app(app_url):
    spec = httpx.get(f"{app_url}/api/v1/openapi.json").json()
    assert spec["info"]["title"] == "Pipeline CRM API"
    assert {"/leads", "/events", "/events/batch", "/leads/{lead_id}/stage"} <= set(spec["paths"])
    docs = httpx.get(f"{app_url}/api/v1/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
