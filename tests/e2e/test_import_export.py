"""Import and export in a real browser: upload -> map -> preview -> validate -> import -> summary,
and "Export CSV" on the Leads page downloads exactly the filtered list."""

from __future__ import annotations

import csv
import io
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from tests.e2e.conftest import choose_viewer

pytestmark = pytest.mark.e2e

HEADER = "Full Name,E-mail,Organisation,Employees,Lead Source,Result,Region\n"


def _upload(page, path):
    page.locator(".csv-drop input[type=file]").set_input_files(str(path))
    expect(page.locator(".uploaded-name")).to_have_text(path.name)


def test_a_manager_uploads_maps_previews_validates_and_imports(page, seeded_app_data, app_session, tmp_path):
    path = tmp_path / "old-crm.csv"
    path.write_text(HEADER + "".join(
        f"Imported Person {i},imported{i}@example.com,Importco {i},{20 + i * 20},Referral,{'yes' if i % 2 else ''},"
        f"North\n" for i in range(12)))
    page.goto("/import")
    choose_viewer(page, "Maya Manager")
    _upload(page, path)
    # Guessed mapping: the header "Organisation" is the company; "Result" is not guessed, so map it.
    expect(page.get_by_role("combobox", name="Field for Organisation")).to_have_text("Company")
    page.get_by_role("combobox", name="Field for Result").click()
    page.get_by_role("option", name="Outcome (won / lost)").click()
    # The preview shows the first 10 rows as they will be stored.
    rows = page.locator(".preview-row")
    expect(rows).to_have_count(10)
    expect(rows.nth(1)).to_contain_text("Imported Person 1")
    expect(rows.nth(1)).to_contain_text("Won")
    expect(rows.nth(1)).to_contain_text("Region: North")
    page.get_by_role("button", name="Validate").click()
    expect(page.locator(".report-summary")).to_contain_text("All 12 rows are valid.")
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator(".import-summary")).to_contain_text("Created 12, updated 0, skipped 0")
    assert app_session.execute(
        text("SELECT count(*) FROM leads WHERE email LIKE 'imported%@example.com'")).scalar_one() == 12
    # Importing the same file again changes nothing and duplicates nothing.
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator(".import-summary")).to_contain_text("Created 0, updated 0, skipped 12")


def test_a_bad_row_is_reported_in_words_and_nothing_is_imported(page, seeded_app_data, app_session, tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text(HEADER + "Good Person,good@example.com,Goodco,10,Referral,,West\n"
                             "Bad Person,bad-at-example,Badco,many,Carrier pigeon,,West\n")
    page.goto("/import")
    choose_viewer(page, "Maya Manager")
    _upload(page, path)
    bad = page.locator(".preview-row").nth(1)
    expect(bad).to_contain_text('"bad-at-example" is not an email address.')
    expect(bad).to_contain_text("Bad Person")  # a row with problems still shows what it holds
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator(".import-message")).to_contain_text("Nothing was imported")
    report = page.locator(".report-row")
    expect(report).to_have_count(3)
    expect(report.nth(1)).to_contain_text('"many" is not a whole number of employees.')
    assert app_session.execute(text("SELECT count(*) FROM leads WHERE email = 'good@example.com'")).scalar_one() == 0


def test_an_unknown_source_is_mapped_in_the_page(page, seeded_app_data, app_session, tmp_path):
    path = tmp_path / "fair.csv"
    path.write_text(HEADER + "Fair Visitor,fair@example.com,Fairco,10,Trade show,,South\n")
    page.goto("/import")
    choose_viewer(page, "Maya Manager")
    _upload(page, path)
    expect(page.locator(".preview-row").first).to_contain_text('Unknown source "Trade show"')
    page.get_by_role("combobox", name="Source for Trade show").click()
    page.get_by_role("option", name="Events").click()
    expect(page.locator(".preview-row").first).to_contain_text("Events")
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator(".import-summary")).to_contain_text("Created 1")
    assert app_session.execute(text("SELECT source FROM leads WHERE email = 'fair@example.com'")).scalar_one() == "events"


def test_a_rep_cannot_import(page, seeded_app_data):
    page.goto("/import")
    choose_viewer(page, "Ria Rep")
    expect(page.locator(".managers-only")).to_be_visible()
    expect(page.locator(".csv-drop")).to_have_count(0)


def test_export_csv_downloads_exactly_the_filtered_list(page, seeded_app_data):
    page.goto("/leads")
    choose_viewer(page, "Ria Rep")
    expect(page.locator(".lead-row")).to_have_count(2)
    page.get_by_placeholder("Search name, company or email").fill("grace")
    expect(page.locator(".lead-row")).to_have_count(1)
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Export CSV").click()
    download = download_info.value
    assert download.suggested_filename.startswith("leads-") and download.suggested_filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(open(download.path(), encoding="utf-8").read())))
    assert [r["Name"] for r in rows] == ["Grace Hopper"]
    assert rows[0]["Owner"] == "Ria Rep" and rows[0]["Tier"] in ("Hot", "Warm", "Cold")


def test_an_export_link_stops_working_once_its_user_signs_out(page, seeded_app_data):
    page.goto("/leads")
    choose_viewer(page, "Ria Rep")
    expect(page.locator(".lead-row")).to_have_count(2)
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Export CSV").click()
    link = download_info.value.url
    assert page.request.get(link).status == 200
    page.locator(".sign-out").click()
    page.wait_for_url(re.compile(r"/sign-in"))
    refused = page.request.get(link)
    assert refused.status == 403
    assert "has ended" in refused.text() and "Grace Hopper" not in refused.text()


def test_an_export_link_without_a_valid_token_is_refused(page, seeded_app_data):
    response = page.request.get("/export/leads.csv?token=forged.token")
    assert response.status == 403
    assert "not valid" in response.text()
