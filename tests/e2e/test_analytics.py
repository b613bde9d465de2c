"""The analytics page in a real browser: a rep's own numbers, charts drawn, filters applied."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from crm_app.domain import Source, Stage
from crm_app.services.leads import move_lead_to_stage
from tests.e2e.conftest import APP_NOW, choose_viewer
from tests.factories import make_lead, make_user

pytestmark = pytest.mark.e2e

D = timedelta(days=1)


@pytest.fixture(scope="module")
def ana_team(app_session) -> dict:
    """Anabel's small pipeline (referrals: 2 won of 3 closed, $30,000) and Anatole's one win."""
    anabel = make_user(app_session, "Anabel Roi")
    anatole = make_user(app_session, "Anatole Other")
    anais = make_user(app_session, "Anais Boss", role="manager")

    def lead(name, owner, source, created_days, value, moves=()):
        created = make_lead(app_session, name, now=APP_NOW, owner=owner, source=source, deal_value=value,
                            created_ago=created_days * D)
        for stage, days_ago in moves:
            move_lead_to_stage(app_session, lead_id=created.id, to_stage=stage, now=APP_NOW - days_ago * D)
        return created

    lead("Ana Ref Won Early", anabel, Source.REFERRAL, 40, 10_000, [(Stage.CONTACTED, 38), (Stage.WON, 30)])
    lead("Ana Ref Won Late", anabel, Source.REFERRAL, 25, 20_000, [(Stage.CONTACTED, 20), (Stage.WON, 10)])
    lead("Ana Ref Lost", anabel, Source.REFERRAL, 20, 5_000, [(Stage.LOST, 15)])
    lead("Ana Webinar Lost", anabel, Source.WEBINAR, 35, 8_000, [(Stage.CONTACTED, 33), (Stage.LOST, 31)])
    lead("Ana Site Open", anabel, Source.WEBSITE, 5, 3_000)
    lead("Ana Other Ref", anatole, Source.REFERRAL, 12, 7_000, [(Stage.WON, 2)])
    return {"anabel": anabel, "anatole": anatole, "anais": anais}


def _view_as(page: Page, option: str) -> None:
    """Look at this page signed in as the person of `option` ("Name (role)")."""
    choose_viewer(page, option.rsplit(" (", 1)[0])


def _source_row(page: Page, source: str):
    return page.locator(f".source-row[data-source={source}]")


def test_a_rep_sees_their_own_source_roi_and_charts(page, ana_team):
    page.goto("/analytics")
    _view_as(page, "Anabel Roi (rep)")
    expect(page.locator(".scope-label")).to_contain_text("5 leads created in the last 90 days · Anabel Roi")

    referral = _source_row(page, "referral")
    expect(referral.locator(".conversion")).to_have_text("67%")
    expect(referral.locator(".won-revenue")).to_have_text("$30,000")
    expect(_source_row(page, "webinar").locator(".conversion")).to_have_text("0%")
    # Ranked by conversion: referral first, the website lead (nothing closed) last.
    expect(page.locator(".source-row")).to_have_count(3)
    expect(page.locator(".source-row").first).to_have_attribute("data-source", "referral")
    expect(page.locator(".source-row").last).to_have_attribute("data-source", "website")

    # Funnel: 5 leads; 3 got past New (the lost referral was lost from New), 2 won.
    expect(page.locator(".funnel-row[data-stage=new] .reached")).to_have_text("5")
    expect(page.locator(".funnel-row[data-stage=contacted] .reached")).to_have_text("3")
    expect(page.locator(".funnel-row[data-stage=won] .reached")).to_have_text("2")

    expect(page.locator(".source-roi .js-plotly-plot").first).to_be_visible()
    expect(page.locator(".funnel .js-plotly-plot")).to_be_visible()
    expect(page.locator(".weekly-tier-chart.js-plotly-plot, .weekly-tier-chart .js-plotly-plot").first).to_be_attached()


def test_a_shorter_period_keeps_only_leads_created_in_it(page, ana_team):
    page.goto("/analytics")
    _view_as(page, "Anabel Roi (rep)")
    expect(_source_row(page, "referral").locator(".conversion")).to_have_text("67%")
    page.get_by_role("radio", name="Last 30 days").click()
    # The 40- and 35-day-old leads drop out: referrals are 1 won of 2 closed, $20,000.
    expect(page.locator(".scope-label")).to_contain_text("3 leads created in the last 30 days")
    expect(_source_row(page, "referral").locator(".conversion")).to_have_text("50%")
    expect(_source_row(page, "referral").locator(".won-revenue")).to_have_text("$20,000")
    expect(_source_row(page, "webinar")).to_have_count(0)


def test_a_manager_can_look_at_one_rep(page, ana_team):
    page.goto("/analytics")
    _view_as(page, "Anais Boss (manager)")
    expect(page.locator(".scope-label")).to_contain_text("whole team")
    page.locator(".owner-filter").click()
    page.get_by_role("option", name="Anatole Other").click()
    expect(page.locator(".scope-label")).to_contain_text("1 lead created in the last 90 days · Anatole Other")
    expect(page.locator(".source-row")).to_have_count(1)
    expect(_source_row(page, "referral").locator(".conversion")).to_have_text("100%")
    expect(_source_row(page, "referral").locator(".won-revenue")).to_have_text("$7,000")


def test_a_manager_sets_a_source_cost_and_a_bad_one_is_explained(page, ana_team, app_session):
    from decimal import Decimal

    from crm_app.db.models import SourceCost

    page.goto("/settings")
    _view_as(page, "Anais Boss (manager)")
    row = page.locator(".cost-row[data-key=events]")
    row.locator("input").fill("-40")
    row.locator(".setting-save").click()
    expect(row.locator(".setting-error")).to_have_text("A cost cannot be negative.")
    app_session.expire_all()
    assert app_session.get(SourceCost, "events") is None
    row.locator("input").fill("1,500")
    row.locator(".setting-save").click()
    expect(row).to_contain_text("Saved")
    expect(row.locator(".setting-error")).to_have_count(0)
    app_session.expire_all()
    try:
        assert app_session.get(SourceCost, "events").cost == Decimal("1500")
    finally:  # other modules' pages read the same database
        stored = app_session.get(SourceCost, "events")
        if stored is not None:
            app_session.delete(stored)
            app_session.commit()
