"""A page while the database is away: a "Reconnecting to the database..." notice in place of the
content (not the framework's "An error occurred"), and the page back by itself, without a reload,
once the database answers again."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.conftest import database_away
from tests.e2e.conftest import APP_CONNECTIONS

pytestmark = pytest.mark.e2e


def test_a_page_says_reconnecting_while_the_database_is_away_and_recovers_without_a_reload(
        page, app_database_url, seeded_app_data):
    page.goto("/leads")
    expect(page.locator(".lead-name", has_text="Ada Lovelace")).to_be_visible()
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    with database_away(app_database_url, APP_CONNECTIONS):
        page.locator(".nav-link", has_text="Pipeline").click()  # its on_load needs the database
        notice = page.locator(".db-reconnecting")
        expect(notice).to_be_visible()
        expect(notice).to_contain_text("Reconnecting to the database...")
        expect(page.get_by_text("An error occurred")).to_have_count(0)
    # The database is back: the board loads by itself.
    expect(page.locator(".db-reconnecting")).to_have_count(0, timeout=30_000)
    expect(page.locator(".deal-name", has_text="Ada Lovelace")).to_be_visible()
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    assert page.url.endswith("/pipeline")
