"""The dashboard in a real browser: the queue ranks the rep's leads, and acting on an item updates the
lead in the database and reorders the queue at once."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import delete, select

from crm_app.db.models import Activity, Lead, User
from crm_app.domain import ActivityKind as K
from crm_app.domain import Stage
from tests.e2e.conftest import APP_NOW, sign_in_as
from tests.factories import make_lead, make_user

pytestmark = pytest.mark.e2e

HOT = [(K.PRICING_REQUEST, timedelta(minutes=20)), (K.DEMO_REQUEST, timedelta(days=2))]
RECENT = timedelta(days=1)  # in a stage for a day: not stuck


@pytest.fixture(scope="module")
def dash(app_session):
    """One rep per test, so no test sees another's actions; leads of known scores.

    Removed again afterwards: other modules read the shared app's team (the smoke test expects its
    own rep to be the first rep in the picker and four leads in the whole team)."""

    def book(rep_name: str, prefix: str):
        rep = make_user(app_session, rep_name)
        first = make_lead(app_session, f"{prefix} Hot First", now=APP_NOW, owner=rep, company_size=120,
                          activities=HOT, created_ago=RECENT)  # 85
        second = make_lead(app_session, f"{prefix} Hot Second", now=APP_NOW, owner=rep, company_size=10,
                           activities=HOT, created_ago=RECENT)  # 75
        stuck = make_lead(app_session, f"{prefix} Stuck Deal", now=APP_NOW, owner=rep,
                          stage=Stage.NEGOTIATION, created_ago=timedelta(days=21))
        return rep, first, second, stuck

    data = {
        "order": book("DashOrder Rep", "Dash Order"),
        "call": book("DashCall Rep", "Dash Call"),
        "snooze": book("DashSnooze Rep", "Dash Snooze"),
        "quiet": make_user(app_session, "DashQuiet Rep"),
    }
    yield data
    app_session.rollback()
    reps = [data[k][0] for k in ("order", "call", "snooze")] + [data["quiet"]]
    rep_ids = [rep.id for rep in reps]
    # Activities, follow-ups and stage changes go with their leads (ON DELETE CASCADE).
    app_session.execute(delete(Lead).where(Lead.owner_id.in_(rep_ids)))
    app_session.execute(delete(User).where(User.id.in_(rep_ids)))
    app_session.commit()


def _view_as(page, rep_name: str) -> None:
    sign_in_as(page, rep_name, "/dashboard")
    expect(page.locator(".signed-in-name")).to_have_text(rep_name)


def test_queue_shows_the_reps_fresh_requests_first_then_the_stuck_deal(page, dash):
    rep, first, second, stuck = dash["order"]
    assert first.score > second.score >= 70
    _view_as(page, rep.name)

    items = page.locator(".queue-item")
    expect(items).to_have_count(3)
    expect(items.nth(0)).to_contain_text("Dash Order Hot First")
    expect(items.nth(0).locator(".score-badge")).to_have_text(str(first.score))
    expect(items.nth(0).locator(".queue-headline")).to_have_text(
        re.compile(r"^Asked for pricing \d+ min ago: call within the hour$"))
    expect(items.nth(0).locator(".queue-kind")).to_have_text("Call now")
    expect(items.nth(1)).to_contain_text("Dash Order Hot Second")
    expect(items.nth(2).locator(".queue-headline")).to_have_text(
        "Stuck in Negotiation for 21 days (limit 14): re-engage or close")
    expect(items.nth(0).locator(".queue-lead")).to_have_attribute("href", f"/leads/{first.id}")


def test_logging_a_call_with_a_note_stores_it_and_reorders_the_queue(page, dash, app_session):
    rep, first, second, _ = dash["call"]
    _view_as(page, rep.name)
    items = page.locator(".queue-item")
    expect(items.first).to_contain_text("Dash Call Hot First")

    items.first.locator(".log-call").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Log a call · Dash Call Hot First")
    dialog.get_by_placeholder(re.compile("What happened")).fill("Walked through pricing, sending terms")
    dialog.locator(".save-log").click()

    expect(dialog).to_be_hidden()
    expect(items).to_have_count(2)
    expect(items.first).to_contain_text("Dash Call Hot Second")
    app_session.expire_all()
    call = app_session.execute(
        select(Activity).where(Activity.lead_id == first.id, Activity.kind == K.CALL.value)
    ).scalar_one()
    assert (call.body, call.user_id) == ("Walked through pricing, sending terms", rep.id)
    assert app_session.get(Lead, first.id).last_contacted_at is not None


def test_snoozing_an_item_takes_it_off_the_queue(page, dash, app_session):
    rep, first, second, _ = dash["snooze"]
    _view_as(page, rep.name)
    items = page.locator(".queue-item")
    expect(items.first).to_contain_text("Dash Snooze Hot First")

    items.first.locator(".snooze").click()
    page.get_by_role("menuitem", name="Tomorrow 9:00").click()

    expect(items).to_have_count(2)
    expect(items.first).to_contain_text("Dash Snooze Hot Second")
    app_session.expire_all()
    assert app_session.get(Lead, first.id).snoozed_until > APP_NOW


def test_a_rep_with_nothing_to_do_reads_a_calm_empty_state(page, dash):
    _view_as(page, dash["quiet"].name)
    expect(page.locator(".queue-empty")).to_contain_text("Nothing urgent. Nice work.")
    expect(page.locator(".queue-item")).to_have_count(0)
