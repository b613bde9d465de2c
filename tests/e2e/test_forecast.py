"""The forecast page in a real browser: a manager sees the team, sets targets and reads the backtest; a
rep sees only their own numbers (row-level security) and Today warns them below their target."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import text

from crm_app.domain import Stage
from crm_app.services.forecast import set_sales_target
from crm_app.services.leads import move_lead_to_stage
from tests.e2e.conftest import APP_NOW, choose_viewer
from tests.factories import make_lead, make_user

pytestmark = pytest.mark.e2e

D = timedelta(days=1)


@pytest.fixture(scope="module")
def forecast_team(app_session) -> dict:
    """Fiona's closed history (12 won after 11..44 days, 8 lost), one open deal of hers in negotiation
    and one of Felix's; Fiona's monthly target far above what she can close."""
    fiona = make_user(app_session, "Fiona Forecast")
    felix = make_user(app_session, "Felix Other")
    farah = make_user(app_session, "Farah Boss", role="manager")

    def closed(i: int, won: bool, days: int) -> None:
        lead = make_lead(app_session, f"Fiona Past {i}", now=APP_NOW, owner=fiona, deal_value=20_000,
                         created_ago=(200 - i) * D)
        start = APP_NOW - (200 - i) * D
        move_lead_to_stage(app_session, lead_id=lead.id, to_stage=Stage.NEGOTIATION, now=start + D)
        move_lead_to_stage(app_session, lead_id=lead.id, to_stage=Stage.WON if won else Stage.LOST,
                           now=start + days * D)

    for i in range(12):
        closed(i, True, 11 + 3 * i)
    for i in range(12, 20):
        closed(i, False, 6)

    def open_deal(name: str, owner, value: int):
        lead = make_lead(app_session, name, now=APP_NOW, owner=owner, deal_value=value, created_ago=10 * D)
        move_lead_to_stage(app_session, lead_id=lead.id, to_stage=Stage.NEGOTIATION, now=APP_NOW - 5 * D)
        return lead

    big = open_deal("Fiona Big Deal", fiona, 900_000)
    secret = open_deal("Felix Secret Deal", felix, 800_000)
    set_sales_target(app_session, user_id=fiona.id, typed="5000000", now=APP_NOW, actor=None)
    yield {"fiona": fiona, "felix": felix, "farah": farah, "big": big, "secret": secret}
    ids = {"ids": [fiona.id, felix.id, farah.id]}
    app_session.execute(text("DELETE FROM sales_targets WHERE user_id = ANY(:ids)"), ids)
    app_session.execute(text("DELETE FROM leads WHERE owner_id = ANY(:ids)"), ids)
    app_session.execute(text("DELETE FROM users WHERE id = ANY(:ids)"), ids)
    app_session.commit()


def _deal_names(page: Page):
    return page.locator(".forecast-deals .deal-row a")


def test_a_rep_sees_only_their_own_forecast_and_is_warned_below_target(page: Page, forecast_team):
    page.goto("/forecast")
    choose_viewer(page, "Fiona Forecast")
    expect(page.locator(".forecast-ready")).to_be_attached()
    expect(page.locator(".forecast-scope")).to_have_text("Fiona Forecast · 1 open deals")
    expect(_deal_names(page)).to_have_text(["Fiona Big Deal"])
    expect(_deal_names(page).first).to_have_attribute("href", f"/leads/{forecast_team['big'].id}")
    expect(page.get_by_text("Felix Secret Deal")).to_have_count(0)
    # Her target, the gap and what would close it; no team controls, no backtest.
    expect(page.locator(".forecast-summary .target")).to_have_text("$5,000,000")
    expect(page.locator(".forecast-summary .gap")).to_contain_text("short")
    expect(page.locator(".gap-message")).to_contain_text("short of the target")
    expect(page.locator(".owner-filter")).to_have_count(0)
    expect(page.locator(".forecast-backtest")).to_have_count(0)
    expect(page.locator(".forecast-targets")).to_have_count(0)
    # The months table: this month, the next two, and the three together.
    expect(page.locator(".window-row")).to_have_count(4)

    page.goto("/")
    expect(page.locator(".target-warning")).to_contain_text("against your target of $5,000,000")


def test_a_manager_sees_the_team_sets_a_target_and_reads_the_backtest(page: Page, forecast_team):
    page.goto("/forecast")
    choose_viewer(page, "Farah Boss")
    expect(page.locator(".forecast-ready")).to_be_attached()
    expect(_deal_names(page).filter(has_text="Fiona Big Deal")).to_have_count(1)
    expect(_deal_names(page).filter(has_text="Felix Secret Deal")).to_have_count(1)

    # A bad target is refused where it was typed; a good one is stored.
    felix_row = page.locator(f".target-row[data-user='{forecast_team['felix'].id}']")
    felix_row.locator("input").fill("-10")
    felix_row.locator(".target-save").click()
    expect(felix_row.locator(".target-error")).to_contain_text("negative")
    felix_row.locator("input").fill("250,000")
    felix_row.locator(".target-save").click()
    expect(felix_row.locator(".target-error")).to_have_count(0)
    expect(page.get_by_text("Target saved.")).to_be_visible()

    # Felix's own view: his deal, his target.
    page.locator(".owner-filter").click()
    page.get_by_role("option", name="Felix Other").click()
    expect(page.locator(".forecast-scope")).to_have_text("Felix Other · 1 open deals")
    expect(_deal_names(page)).to_have_text(["Felix Secret Deal"])
    expect(page.locator(".forecast-summary .target")).to_have_text("$250,000")

    # The backtest: three methods scored, the chart drawn.
    expect(page.locator(".backtest-ready")).to_be_attached(timeout=60_000)
    expect(page.locator(".method-row")).to_have_count(3)
    expect(page.locator(".backtest-chart .js-plotly-plot, .backtest-chart.js-plotly-plot").first).to_be_attached()
