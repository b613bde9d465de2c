"""A rep's loop in a real browser (issue #14): schedule the next step after logging, see each deal's
activity status on the board, hear of a pricing request through the bell (and the browser), and close
deals with a lost reason (shown in Analytics) or a confirmed close value and date."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from crm_app.db.models import FollowUp, Lead
from crm_app.domain import Role, Stage
from tests.e2e.conftest import APP_NOW, sign_in_as
from tests.e2e.test_pipeline import drag_card_to_column
from tests.factories import make_lead, make_user

pytestmark = pytest.mark.e2e

REP = "Fiona Followup"
# Records each browser notification the page shows (the browser's own is not observable headless).
FAKE_NOTIFICATION = """
window.__shown = [];
window.Notification = class {
  constructor(title, options) { window.__shown.push(options.body); }
  static get permission() { return 'granted'; }
  static requestPermission() { return Promise.resolve('granted'); }
};
"""


@pytest.fixture(scope="module")
def loop(app_session):
    """Fiona's deals and a website key acting as an admin (a rep's key may not post prospect events).
    Removed afterwards with everything that hangs off them."""
    from crm_app.services.api_keys import create_key
    from crm_app.services.permissions import CurrentUser

    rep = make_user(app_session, REP)

    def lead(name, **kw):
        return make_lead(app_session, name, now=APP_NOW, owner=rep, company=f"{name.split()[-1]} GmbH",
                         created_ago=timedelta(days=5), **kw)

    leads = {"log": lead("Fu Logger"), "late": lead("Fu Overdue"), "quiet": lead("Fu Quiet"),
             "ask": lead("Fu Pricing"), "lose": lead("Fu Loser", stage=Stage.PROPOSAL, deal_value=9_000),
             "win": lead("Fu Winner", stage=Stage.NEGOTIATION, deal_value=48_000)}
    # Overdue for longer than the due sweep looks back: on the board, not in the bell.
    app_session.add(FollowUp(lead_id=leads["late"].id, owner_id=rep.id, due_at=APP_NOW - timedelta(days=3),
                             kind="call", note="Promised a call back"))
    app_session.commit()
    admin = app_session.execute(
        text("SELECT id, email, name FROM users WHERE role = 'admin' ORDER BY id LIMIT 1")).one()
    secret, key_id = create_key(app_session, CurrentUser(admin.id, admin.email, admin.name, Role.ADMIN),
                                name="Website (follow-up test)", scope="write", user_id=admin.id, now=APP_NOW)
    yield {"rep": rep, "leads": leads, "secret": secret}
    app_session.rollback()
    ids = [x.id for x in leads.values()]
    app_session.execute(text("DELETE FROM audit_log WHERE lead_id = ANY(:ids)"), {"ids": ids})
    app_session.execute(text("DELETE FROM leads WHERE id = ANY(:ids)"), {"ids": ids})  # follow-ups go too
    app_session.execute(text("DELETE FROM users WHERE id = :u"), {"u": rep.id})  # and notifications
    app_session.execute(text("DELETE FROM api_keys WHERE id = :k"), {"k": key_id})
    app_session.commit()


def _card(page, lead):
    return page.locator(f'[data-rfd-draggable-id="{lead.id}"]')


def _background(locator) -> tuple[int, ...]:
    rgb = locator.evaluate("el => getComputedStyle(el).backgroundColor")
    return tuple(int(n) for n in re.findall(r"\d+", rgb)[:3])


def test_schedule_the_next_step_after_logging_and_see_it_on_the_card(page, loop, app_session):
    lead = loop["leads"]["log"]
    sign_in_as(page, REP, f"/leads/{lead.id}")
    expect(page.locator(".no-follow-ups")).to_be_visible()
    page.get_by_role("combobox", name="Activity type").click()
    page.get_by_role("option", name="Call").click()
    page.get_by_placeholder("What happened?").fill("Talked budget; they want the pricing in writing")
    page.get_by_role("button", name="Log activity").click()

    panel = page.locator(".next-step-panel")
    expect(panel).to_contain_text("Schedule the next step")
    expect(panel.get_by_role("combobox", name="Next step")).to_have_text("Email")  # after a call, the email
    panel.get_by_role("combobox", name="Due").click()
    page.get_by_role("option", name="Tomorrow 9:00").click()
    panel.get_by_placeholder("What for?").fill("Send the pricing for 40 seats")
    panel.locator(".schedule-next-step").click()

    expect(panel).to_have_count(0)
    step = page.locator(".follow-up")
    expect(step).to_have_count(1)
    expect(step).to_have_attribute("data-status", "planned")
    expect(step).to_contain_text("Email")
    expect(step).to_contain_text("Send the pricing for 40 seats")
    app_session.expire_all()
    stored = app_session.execute(text("SELECT kind, note, due_at FROM follow_ups WHERE lead_id = :id"),
                                 {"id": lead.id}).one()
    assert (stored.kind, stored.note) == ("email", "Send the pricing for 40 seats")
    assert (stored.due_at.hour, stored.due_at.minute) == (9, 0) and stored.due_at > APP_NOW
    # Scheduling logged nothing more: the call once.
    assert app_session.execute(text("SELECT count(*) FROM activities WHERE lead_id = :id AND kind = 'call'"),
                               {"id": lead.id}).scalar_one() == 1

    # The board: planned green, overdue red, none grey, as Pipedrive shows it.
    page.goto("/pipeline")
    expect(page.locator('.pipeline-board[data-ready="true"]')).to_have_count(1)
    planned, overdue, none = (_card(page, loop["leads"][k]).locator(".activity-status")
                              for k in ("log", "late", "quiet"))
    expect(planned).to_have_attribute("data-activity", "planned")
    expect(overdue).to_have_attribute("data-activity", "overdue")
    expect(none).to_have_attribute("data-activity", "none")
    green, red, grey = _background(planned), _background(overdue), _background(none)
    assert green[1] > green[0] and green[1] > green[2], green
    assert red[0] > red[1] and red[0] > red[2], red
    assert max(grey) - min(grey) < 30, grey  # a grey: no channel stands out

    # Done on the lead page turns the card grey.
    page.goto(f"/leads/{loop['leads']['late'].id}")
    expect(page.locator(".follow-up")).to_have_attribute("data-status", "overdue")
    page.locator(".follow-up-done").click()
    expect(page.locator(".no-follow-ups")).to_be_visible()
    page.goto("/pipeline")
    expect(page.locator('.pipeline-board[data-ready="true"]')).to_have_count(1)
    expect(_card(page, loop["leads"]["late"]).locator(".activity-status")).to_have_attribute("data-activity", "none")


def test_a_pricing_request_through_the_api_rings_the_bell_and_opens_the_lead(page, loop, app_url):
    lead = loop["leads"]["ask"]
    page.context.add_init_script(FAKE_NOTIFICATION)
    sign_in_as(page, REP, "/pipeline")
    bell = page.locator(".bell")
    expect(bell).to_have_attribute("data-loaded", "1")
    expect(bell).to_have_attribute("data-unread", "0")
    expect(page.locator(".bell-count")).to_have_count(0)

    with httpx.Client(base_url=f"{app_url}/api/v1", headers={"Authorization": f"Bearer {loop['secret']}"},
                      timeout=30) as api:
        sent = api.post("/events", json={"lead": {"id": lead.id}, "type": "pricing_request"})
    assert sent.status_code == 201, sent.text

    # No reload: the live channel brings it within seconds, with the count and a browser notification.
    expect(page.locator(".bell-count")).to_have_text("1", timeout=20_000)
    page.wait_for_function("() => window.__shown.length === 1")
    assert page.evaluate("window.__shown") == ["Fu Pricing (Pricing GmbH) asked for pricing"]
    page.locator(".bell-button").click()
    item = page.locator(".bell-panel .notification").first
    expect(item).to_contain_text("Fu Pricing (Pricing GmbH) asked for pricing")
    expect(item).to_have_attribute("data-unread", "1")
    item.click()
    page.wait_for_url(re.compile(rf"/leads/{lead.id}$"))
    expect(page.get_by_role("heading", name="Fu Pricing")).to_be_visible()
    expect(bell).to_have_attribute("data-unread", "0")


def test_a_drag_to_lost_asks_why_and_analytics_counts_it(page, loop, app_session):
    lead = loop["leads"]["lose"]
    page.set_viewport_size({"width": 2800, "height": 1000})  # all eight columns on screen
    sign_in_as(page, REP, "/pipeline")
    expect(page.locator('.pipeline-board[data-ready="true"]')).to_have_count(1)
    drag_card_to_column(page, lead.id, "lost")
    dialog = page.locator('.close-deal-dialog[data-stage="lost"]')
    expect(dialog).to_contain_text("Fu Loser")
    # Nothing moves until a reason is given.
    dialog.locator(".confirm-close").click()
    expect(dialog.locator(".error-lost_reason")).to_have_text("Choose why the deal was lost.")
    app_session.expire_all()
    assert app_session.get(Lead, lead.id).stage == "proposal"

    dialog.get_by_role("combobox", name="Lost reason").click()
    page.get_by_role("option", name="Chose a competitor").click()
    dialog.get_by_placeholder("Anything to add?").fill("Went with the incumbent")
    dialog.locator(".confirm-close").click()
    expect(dialog).to_have_count(0)
    expect(page.locator('[data-rfd-droppable-id="lost"]').locator(f'[data-rfd-draggable-id="{lead.id}"]')) \
        .to_have_count(1)
    app_session.expire_all()
    stored = app_session.get(Lead, lead.id)
    assert (stored.stage, stored.lost_reason, stored.lost_note) == ("lost", "Chose a competitor",
                                                                     "Went with the incumbent")

    page.goto("/analytics")
    by_source = page.locator(".lost-by-source")
    row = by_source.locator(".lost-reason-row", has_text="Chose a competitor")
    expect(row.locator(".lost-total")).to_have_text("1")
    expect(page.locator(".lost-by-stage .lost-reason-row", has_text="Chose a competitor")).to_be_visible()
    expect(page.locator(".lost-by-stage thead")).to_contain_text("Proposal")


def test_won_confirms_the_close_value_and_date(page, loop, app_session):
    lead = loop["leads"]["win"]
    sign_in_as(page, REP, f"/leads/{lead.id}")
    page.get_by_role("combobox", name="Move to stage").click()
    page.get_by_role("option", name="Won").click()
    dialog = page.locator('.close-deal-dialog[data-stage="won"]')
    value = dialog.locator("input[name=won_value]")
    expect(value).to_have_value("48000")
    value.fill("lots")
    dialog.locator(".confirm-close").click()
    expect(dialog.locator(".error-won_value")).to_contain_text("as a number")
    value.fill("52500")
    yesterday = (APP_NOW - timedelta(days=1)).date()
    dialog.locator("input[name=closed_on]").fill(yesterday.isoformat())
    dialog.locator(".confirm-close").click()
    expect(dialog).to_have_count(0)
    expect(page.get_by_role("combobox", name="Move to stage")).to_have_text("Won")
    app_session.expire_all()
    stored = app_session.get(Lead, lead.id)
    assert (stored.stage, int(stored.deal_value), stored.closed_at.date()) == ("won", 52500, yesterday)
