"""Lead detail in a real browser: the breakdown adds up, logging rescores, bad edits are explained."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from crm_app.db.models import Activity, Lead
from crm_app.domain import ActivityKind as K
from crm_app.domain import Source
from tests.e2e.conftest import APP_NOW, forget_browser, sign_in_cookie
from tests.factories import make_lead, make_user

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def detail_leads(app_session):
    rep = make_user(app_session, "Detta Rep")
    warm = make_lead(app_session, "Katherine Johnson", now=APP_NOW, owner=rep, company="Orbital Co",
                     company_size=300, source=Source.EVENTS, deal_value=25000,
                     activities=[(K.DEMO_REQUEST, timedelta(days=3)), (K.EMAIL_OPENED, timedelta(days=2))])
    other = make_lead(app_session, "Dorothy Vaughan", now=APP_NOW, owner=rep, company="Fortran Works")
    return {"rep": rep, "warm": warm, "other": other}


@pytest.fixture
def page(page, app_session, app_url, detail_leads):
    """This module's leads belong to Detta Rep: look at them signed in as her."""
    page.context.clear_cookies()
    page.context.add_cookies([sign_in_cookie(app_session, app_url, "Detta Rep")])
    return page


def test_another_rep_guessing_the_id_sees_no_lead(page, detail_leads, app_session, app_url):
    lead = detail_leads["warm"]
    forget_browser(page)
    page.context.add_cookies([sign_in_cookie(app_session, app_url, "Ria Rep")])
    page.goto(f"/leads/{lead.id}")
    expect(page.get_by_text(f"There is no lead {lead.id}.")).to_be_visible()
    expect(page.get_by_text("Katherine Johnson")).to_have_count(0)


def _reason_points(page) -> list[int]:
    return [int(t.strip().lstrip("+")) for t in page.locator(".reason-points").all_inner_texts()]


def test_breakdown_adds_up_to_the_score_shown(page, detail_leads):
    lead = detail_leads["warm"]
    page.goto(f"/leads/{lead.id}")
    expect(page.locator(".detail-score")).to_have_text(str(lead.score))
    expect(page.locator(".reason-row")).to_have_count(len(lead.score_reasons))
    assert sum(_reason_points(page)) == lead.score == 10 + 15 + 10
    expect(page.locator(".reason-total")).to_have_text(str(lead.score))
    expect(page.get_by_text("Requested a demo on")).to_be_visible()


def test_logging_an_email_reply_raises_the_score_and_shows_it_at_once(page, detail_leads, app_session):
    lead = detail_leads["warm"]
    page.goto(f"/leads/{lead.id}")
    expect(page.locator(".detail-score")).to_have_text(str(lead.score))
    page.get_by_role("combobox", name="Activity type").click()
    page.get_by_role("option", name="Email received").click()
    page.get_by_placeholder("What happened?").fill("Can we see pricing for 300 seats?")
    page.get_by_role("button", name="Log activity").click()
    # +20 recent activity, +5 one more interaction.
    new_score = lead.score + 25
    expect(page.locator(".detail-score")).to_have_text(str(new_score))
    expect(page.locator(".score-change")).to_have_text(f"Logged. Score {lead.score} → {new_score}")
    assert sum(_reason_points(page)) == new_score
    expect(page.locator(".timeline-entry").first).to_contain_text("Can we see pricing for 300 seats?")
    app_session.expire_all()
    assert app_session.get(Lead, lead.id).score == new_score
    assert app_session.scalar(
        select(Activity.body).where(Activity.lead_id == lead.id, Activity.kind == "email_received")
    ) == "Can we see pricing for 300 seats?"


def test_a_note_without_text_is_refused_where_it_was_typed(page, detail_leads):
    lead = detail_leads["other"]
    page.goto(f"/leads/{lead.id}")
    page.get_by_role("combobox", name="Activity type").click()
    page.get_by_role("option", name="Note").click()
    page.get_by_role("button", name="Log activity").click()
    expect(page.locator(".activity-error")).to_have_text("A note needs some text.")


def test_a_bad_edit_is_explained_beside_the_field_and_nothing_is_lost(page, detail_leads, app_session):
    lead = detail_leads["other"]
    page.goto(f"/leads/{lead.id}")
    page.get_by_role("button", name="Edit").click()
    page.locator("input[name=company_size]").fill("lots")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".error-company_size")).to_contain_text("whole number")
    page.locator("input[name=company_size]").fill("75")
    page.locator("input[name=name]").fill("<script>alert(1)</script> Dorothy")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("dialog")).to_be_hidden()
    # Stored and shown as plain text; the size over 50 now scores +10.
    expect(page.get_by_role("heading", name=re.compile("alert"))).to_have_text("<script>alert(1)</script> Dorothy")
    expect(page.locator(".detail-score")).to_have_text(str(lead.score + 10))
    app_session.expire_all()
    stored = app_session.get(Lead, lead.id)
    assert (stored.company_size, stored.email) == (75, lead.email)


def test_markup_and_sql_looking_text_in_a_note_is_stored_and_shown_as_plain_text(page, detail_leads, app_session):
    lead = detail_leads["other"]
    hostile = """<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> '); DROP TABLE leads; --"""
    page.goto(f"/leads/{lead.id}")
    page.get_by_role("combobox", name="Activity type").click()
    page.get_by_role("option", name="Note").click()
    page.get_by_placeholder("What happened?").fill(hostile)
    page.get_by_role("button", name="Log activity").click()
    expect(page.locator(".timeline-entry").first).to_contain_text(hostile)  # the text, character for character
    assert page.evaluate("window.__pwned === undefined")  # nothing in it ran
    expect(page.locator(".timeline-entry img")).to_have_count(0)
    app_session.expire_all()
    assert app_session.scalar(select(Activity.body).where(Activity.lead_id == lead.id, Activity.kind == "note")) == hostile
    assert app_session.scalar(select(Lead.id).where(Lead.id == lead.id)) == lead.id  # the table is still there


@pytest.fixture
def model_scores(app_session, database_url):
    """The app scores with a real model for this test: trained by the app's own training on a demo
    history (in a scratch database), stored in the app's database and made the team's engine; the
    rules again afterwards, so the other browser tests see the scores they expect."""
    from sqlalchemy import text
    from sqlmodel import Session

    from crm_app.db.engine import make_engine
    from crm_app.db.models import ScoringModel
    from crm_app.demo.generator import generate_demo_data
    from crm_app.services.model_training import activate_model, deactivate_models, train_model
    from crm_app.services.scoring_settings import set_engine_choice
    from tests.conftest import scratch_database

    with scratch_database(database_url, "crm_e2e_history") as url:
        history = make_engine(url)
        generate_demo_data(history, leads=800, seed=5, now=APP_NOW)
        with Session(history) as session:
            trained = session.get(ScoringModel, train_model(session, now=APP_NOW).model_id)
        history.dispose()
    copy = ScoringModel(version=9000 + trained.version, trained_at=trained.trained_at, rows=trained.rows,
                        features=trained.features, metrics=trained.metrics, is_active=False, model=trained.model)
    app_session.add(copy)
    app_session.commit()
    stored = copy.id
    activate_model(app_session, stored, actor=None)
    set_engine_choice(app_session, mode="model", now=APP_NOW, actor=None)
    yield stored
    set_engine_choice(app_session, mode="rules", now=APP_NOW, actor=None)
    deactivate_models(app_session, actor=None)
    # Gone again: the model page's tests expect a database where no model was trained yet.
    app_session.execute(text("DELETE FROM scoring_models WHERE id = :id"), {"id": stored})
    app_session.commit()


def test_logging_a_call_leaves_the_models_score_and_reasons_as_they_were(page, app_session, detail_leads,
                                                                           model_scores):
    """A rep's own work is never a signal: with the model scoring, a logged call changes nothing."""
    from crm_app.services.scoring import rescore_lead

    lead = make_lead(app_session, "Mary Jackson", now=APP_NOW, owner=detail_leads["rep"],
        company="Wind Tunnel Ltd", company_size=200,
        source=Source.REFERRAL, deal_value=30000,
        activities=[(K.PRICING_REQUEST, timedelta(days=2)), (K.EMAIL_RECEIVED, timedelta(days=1)),
                    (K.PAGE_VISIT, timedelta(hours=5))])  # fmt: skip
    rescore_lead(app_session, lead, APP_NOW)  # by the model now
    app_session.commit()
    before = (lead.score, lead.score_reasons)
    assert any(r["text"].startswith("Asked for pricing on") for r in lead.score_reasons), lead.score_reasons
    page.goto(f"/leads/{lead.id}")
    expect(page.locator(".detail-score")).to_have_text(str(lead.score))
    page.get_by_role("combobox", name="Activity type").click()
    page.get_by_role("option", name="Call").click()
    page.get_by_placeholder("What happened?").fill("Walked through the proposal; she will talk to finance.")
    page.get_by_role("button", name="Log activity").click()
    expect(page.locator(".score-change")).to_have_text(f"Logged. Score stays {lead.score}")
    expect(page.locator(".detail-score")).to_have_text(str(lead.score))
    expect(page.locator(".timeline-entry").first).to_contain_text("Walked through the proposal")
    assert sum(_reason_points(page)) == lead.score
    app_session.expire_all()
    stored = app_session.get(Lead, lead.id)
    assert (stored.score, stored.score_reasons) == before


def test_a_rep_logs_that_the_prospect_asked_for_pricing_on_the_call(page, app_session, detail_leads):
    """Issue #14: what the prospect asked for on a call is theirs, heard by the rep, and scores."""
    lead = make_lead(app_session, "Annie Easley", now=APP_NOW, owner=detail_leads["rep"], company="Centaur Co",
                     company_size=80)
    before = lead.score
    page.goto(f"/leads/{lead.id}")
    expect(page.locator(".detail-score")).to_have_text(str(before))
    page.get_by_role("combobox", name="Activity type").click()
    page.get_by_role("option", name="Note").click()
    expect(page.locator(".asked-pricing")).to_have_count(0)  # a note is not the prospect speaking
    page.get_by_role("combobox", name="Activity type").click()
    page.get_by_role("option", name="Call").click()
    page.locator(".asked-pricing").click()
    expect(page.locator(".asked-pricing")).to_have_attribute("data-state", "checked")
    page.get_by_placeholder("What happened?").fill("Wants a quote for 80 seats.")
    page.get_by_role("button", name="Log activity").click()
    expect(page.locator(".score-change")).to_have_text(re.compile(rf"Logged\. Score {before} → \d+"))
    app_session.expire_all()
    stored = app_session.get(Lead, lead.id)
    assert stored.score > before
    expect(page.locator(".detail-score")).to_have_text(str(stored.score))
    expect(page.locator(".timeline-entry").filter(has_text="Pricing request: Said on a call")).to_contain_text(
        "Detta Rep")
    assert any(r["text"].startswith("Asked for pricing") for r in stored.score_reasons)
    expect(page.locator(".asked-pricing")).to_have_attribute("data-state", "unchecked")  # ready for the next one
