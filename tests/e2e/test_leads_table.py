"""The ranked list renders from PostgreSQL in a real browser, best lead first, with its reasons."""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import choose_viewer

pytestmark = pytest.mark.e2e


def test_ranked_list_shows_the_top_lead_with_its_score_and_reasons(page, seeded_app_data):
    ada = seeded_app_data["leads"]["Ada Lovelace"]
    page.goto("/leads")
    choose_viewer(page, "Ria Rep")
    rows = page.locator(".lead-row")
    expect(rows.first).to_contain_text("Ada Lovelace")
    # Ria's two leads, best first; the score badge shows the stored score.
    expect(rows).to_have_count(2)
    expect(rows.first.locator(".score-badge")).to_have_text(str(ada.score))
    expect(rows.first).to_contain_text("+30 Asked for pricing")
    expect(rows.first).to_contain_text("Hot")
    expect(rows.nth(1)).to_contain_text("Grace Hopper")


def test_switching_to_whole_team_and_searching_filters_in_sql(page, seeded_app_data):
    page.goto("/leads")
    choose_viewer(page, "Maya Manager")
    page.get_by_role("radio", name="Whole team").click()
    page.get_by_placeholder("Search name, company or email").fill("bletchley")
    expect(page.locator(".lead-row")).to_have_count(1)
    expect(page.locator(".lead-row").first).to_contain_text("Alan Turing")
    expect(page.get_by_text(re.compile(r"1-1 of 1"))).to_be_visible()


def test_a_rep_searching_the_whole_team_never_finds_another_reps_lead(page, seeded_app_data):
    """Alan Turing is Sam's lead: Ria's "whole team" is her own leads and the pool (row-level security)."""
    page.goto("/leads")
    choose_viewer(page, "Ria Rep")
    expect(page.locator(".lead-row").first).to_contain_text("Ada Lovelace")
    page.get_by_role("radio", name="Whole team").click()
    page.get_by_placeholder("Search name, company or email").fill("bletchley")
    expect(page.get_by_text("No leads match these filters.")).to_be_visible()
    page.get_by_placeholder("Search name, company or email").fill("")
    expect(page.locator(".lead-row").filter(has_text="Edsger Dijkstra")).to_have_count(1)  # the pool
    expect(page.locator(".lead-row").filter(has_text="Alan Turing")).to_have_count(0)


@pytest.fixture(scope="module")
def pool_leads(app_session):
    from crm_app.domain import Source
    from tests.e2e.conftest import APP_NOW
    from tests.factories import make_lead

    return [make_lead(app_session, f"Pool Prospect {i}", now=APP_NOW, company=f"Poolco {i}",
                      source=Source.EVENTS, deal_value=1000 * (i + 1)) for i in range(3)]


def test_bulk_reassign_moves_the_selected_leads_to_a_rep(page, seeded_app_data, pool_leads, app_session):
    from crm_app.db.models import Lead

    sam = seeded_app_data["users"]["Sam Seller"]
    page.goto("/leads")
    choose_viewer(page, "Maya Manager")
    page.get_by_role("radio", name="Unassigned").click()
    page.get_by_placeholder("Search name, company or email").fill("Poolco")
    expect(page.locator(".lead-row")).to_have_count(3)
    # Sorted by value, the most valuable first.
    page.get_by_role("combobox", name="Sort by").click()
    page.get_by_role("option", name="Highest value").click()
    expect(page.locator(".lead-row").first).to_contain_text("Pool Prospect 2")
    page.get_by_label("Select Pool Prospect 2").click()
    page.get_by_label("Select Pool Prospect 0").click()
    expect(page.locator(".bulk-bar")).to_contain_text("2 selected")
    page.get_by_role("combobox", name="Reassign to").click()
    page.get_by_role("option", name="Sam Seller").click()
    page.get_by_role("button", name="Reassign", exact=True).click()
    # They leave the unassigned pool at once; the third stays.
    expect(page.locator(".lead-row")).to_have_count(1)
    expect(page.locator(".lead-row").first).to_contain_text("Pool Prospect 1")
    app_session.expire_all()
    owners = {lead.name: app_session.get(Lead, lead.id).owner_id for lead in pool_leads}
    assert owners == {"Pool Prospect 0": sam.id, "Pool Prospect 1": None, "Pool Prospect 2": sam.id}


def test_a_rep_can_select_but_not_reassign(page, seeded_app_data):
    page.goto("/leads")
    choose_viewer(page, "Ria Rep")
    page.get_by_label("Select Ada Lovelace").click()
    expect(page.locator(".bulk-bar")).to_contain_text("1 selected")
    expect(page.locator(".bulk-claim")).to_be_visible()  # a rep's own bulk actions
    expect(page.get_by_role("button", name="Reassign", exact=True)).to_have_count(0)
