"""Deal risk in a real browser: the kanban card, the lead page and the action queue show it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from crm_app.domain import ActivityKind as K
from crm_app.domain import Stage
from crm_app.services.leads import log_activity
from tests.e2e.conftest import APP_NOW, choose_viewer, sign_in_as

pytestmark = pytest.mark.e2e

REP = "Riskia Rep"
NO = "We've decided to go with another vendor. Thanks for your time."


@pytest.fixture(scope="module")
def risky(app_session):
    """Deals whose prospect said no 2 days ago, unanswered; and a calm one beside them."""
    from tests.factories import make_lead, make_user

    rep = make_user(app_session, REP)
    # In Proposal and Negotiation for 3 days (not stuck), emailed or called since.
    sour = make_lead(app_session, "Rita Sour", now=APP_NOW, owner=rep, stage=Stage.PROPOSAL, company="Sour Ltd",
                     deal_value=30_000, created_ago=timedelta(days=3),
                     activities=[(K.EMAIL_SENT, timedelta(days=2, hours=5))])
    calm = make_lead(app_session, "Carl Calm", now=APP_NOW, owner=rep, stage=Stage.PROPOSAL, company="Calm Ltd",
                     deal_value=20_000, created_ago=timedelta(days=3), activities=[(K.CALL, timedelta(hours=3))])
    queued = make_lead(app_session, "Quinn Queue", now=APP_NOW, owner=rep, stage=Stage.NEGOTIATION,
                       company="Queue Ltd", created_ago=timedelta(days=3),
                       activities=[(K.EMAIL_SENT, timedelta(days=2, hours=5))])
    log_activity(app_session, lead_id=sour.id, kind=K.EMAIL_RECEIVED, now=APP_NOW,
                 occurred_at=APP_NOW - timedelta(days=2, hours=1), subject="Re: Proposal", body=NO)
    log_activity(app_session, lead_id=queued.id, kind=K.EMAIL_RECEIVED, now=APP_NOW,
                 occurred_at=APP_NOW - timedelta(days=2, hours=1), body="Budget frozen, unfortunately.")
    app_session.refresh(sour)
    app_session.refresh(calm)
    assert (sour.risk_level, calm.risk_level) == ("high", "low")
    return {"rep": rep, "sour": sour, "calm": calm, "queued": queued}


def test_the_kanban_card_flags_the_deal_at_risk_and_the_filter_keeps_only_it(page, risky):
    page.goto("/pipeline")
    choose_viewer(page, REP)
    expect(page.locator('.pipeline-board[data-ready="true"]')).to_have_count(1)
    sour = page.locator(f'[data-rfd-draggable-id="{risky["sour"].id}"]')
    calm = page.locator(f'[data-rfd-draggable-id="{risky["calm"].id}"]')
    expect(sour.locator(".risk-flag")).to_have_text("At risk")
    expect(sour).to_have_attribute("data-risk", "high")
    expect(calm).to_be_visible()
    expect(calm.locator(".risk-flag")).to_have_count(0)

    page.get_by_role("combobox", name="Risk").click()
    page.get_by_role("option", name="High risk").click()
    expect(calm).to_have_count(0)
    expect(sour).to_be_visible()


def test_the_lead_page_shows_the_risk_with_its_reasons_and_the_tone_of_the_reply(page, risky):
    lead = risky["sour"]
    sign_in_as(page, REP, f"/leads/{lead.id}")
    panel = page.locator(".risk-panel")
    expect(panel.locator(".risk-level")).to_have_text(re.compile(r"High\s*·\s*55"))
    expect(panel.locator(".risk-reason")).to_have_count(2)
    expect(panel.locator(".risk-reason").nth(0)).to_contain_text("Negative reply on")
    expect(panel.locator(".risk-reason").nth(1)).to_contain_text("No contact from us since their reply on")
    reply = page.locator(".timeline-entry", has_text="Re: Proposal")
    expect(reply.locator(".tone-badge")).to_have_text("Negative")

    # The rep calls back: answered, the risk drops at once.
    page.get_by_role("combobox", name="Activity type").click()
    page.get_by_role("option", name="Call").click()
    page.get_by_role("button", name="Log activity").click()
    expect(panel.locator(".risk-level")).to_have_text(re.compile(r"Medium\s*·\s*40"))
    expect(panel.locator(".risk-reason")).to_have_count(1)


def test_the_action_queue_says_why_the_deal_is_at_risk(page, risky):
    page.goto("/dashboard")
    choose_viewer(page, REP)
    item = page.locator(".queue-item", has_text="Quinn Queue")
    expect(item).to_contain_text("At risk")
    expect(item.locator(".queue-headline")).to_have_text("At risk: negative reply 2 days ago, no contact since")
