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
    choose_viewer(page, "Ria Rep")
    expect(page.locator(".lead-row").first).to_contain_text("Ada Lovelace")
    page.get_by_role("radio", name="Whole team").click()
    page.get_by_placeholder("Search name, company or email").fill("bletchley")
    expect(page.locator(".lead-row")).to_have_count(1)
    expect(page.locator(".lead-row").first).to_contain_text("Alan Turing")
    expect(page.get_by_text(re.compile(r"1-1 of 1"))).to_be_visible()
