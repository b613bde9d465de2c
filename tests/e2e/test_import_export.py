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
    # The upload is not kept once imported: importing again means choosing the file again, and the
    # mapping chosen for the same columns stays.
    expect(page.locator(".file-removed")).to_be_visible()
    expect(page.get_by_role("button", name="Import", exact=True)).to_be_disabled()
    _upload(page, path)
    expect(page.locator(".file-removed")).to_have_count(0)  # the new upload has arrived
    expect(page.get_by_role("combobox", name="Field for Result")).to_have_text("Outcome (won / lost)")
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
    expect(page.locator(".validation-report")).to_contain_text('"many" is not a whole number of employees.')
    expect(report.first).to_contain_text('Unknown source "Carrier pigeon"')
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
    assert app_session.execute(text("SELECT source, custom_fields->>'source_detail' FROM leads "
                                    "WHERE email = 'fair@example.com'")).one() == ("events", "Trade show")


def _uploads() -> set[str]:
    from crm_app.state.importing import imports_dir

    return {p.name for p in imports_dir().glob("*.csv")}


def test_a_crm_export_maps_itself_and_its_undated_rows_keep_the_order_the_manager_gives(
        page, seeded_app_data, app_session, tmp_path):
    from crm_app.demo.crm_export import write_lead_history_csv

    path = write_lead_history_csv(tmp_path / "Lead history (old CRM).csv", rows=60, seed=3)
    before = _uploads()
    page.goto("/import")
    choose_viewer(page, "Maya Manager")
    _upload(page, path)
    # Guessed from the headers and the values: no typing 0/1 anywhere.
    expect(page.get_by_role("combobox", name="Field for Converted")).to_have_text("Outcome (won / lost)")
    expect(page.get_by_role("combobox", name="Field for Prospect ID")).to_have_text("External id")
    expect(page.get_by_role("combobox", name="Field for Lead Number")).to_have_text("Ignore")
    row_ids = page.get_by_role("checkbox", name="Use row numbers as ids (no id or email column)")
    expect(row_ids).not_to_be_checked()
    # Placeholder words are missing values, on, with the list in view.
    expect(page.get_by_role("checkbox", name="Read these words as missing values")).to_be_checked()
    expect(page.get_by_role("textbox", name="Placeholder words")).to_have_value(
        "select, n/a, na, -, --, none, null, unknown")
    # Source words to map, each once with its rows; the outcome needs nothing.
    expect(page.locator(".word-row").filter(has_text='"Google"')).to_contain_text("rows")
    expect(page.get_by_role("combobox", name="Outcome for 0")).to_have_count(0)
    # A preview row stays compact however many custom fields it has.
    row = page.locator(".preview-row").first
    expect(row).to_contain_text("fields: Lead Origin:")
    assert row.bounding_box()["height"] < 120
    # No dates: the page asks for the order of the rows.
    page.get_by_role("radio", name="Newest first").click()
    page.get_by_role("combobox", name="Default source").click()
    page.get_by_role("option", name="Website").click()
    expect(page.locator(".preview-row").first).to_contain_text("Website")
    page.get_by_role("button", name="Validate").click()
    expect(page.locator(".report-summary")).to_contain_text("All 60 rows are valid.")
    expect(page.locator(".validation-notes")).to_contain_text("take the default source Website")
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator(".import-summary")).to_contain_text("Created 60, updated 0, skipped 0")
    record = app_session.execute(text(
        "SELECT id, file_name, row_order, dated_rows, row_count FROM imports ORDER BY id DESC LIMIT 1")).one()
    assert (record.file_name, record.row_order, record.dated_rows, record.row_count) == (
        "Lead history (old CRM).csv", "newest_first", 0, 60)
    leads = app_session.execute(text("SELECT import_row, dates_known FROM leads WHERE import_id = :id "
                                     "ORDER BY id"), {"id": record.id}).all()
    assert [r.import_row for r in leads] == list(range(60, 0, -1)) and not any(r.dates_known for r in leads)
    audit = app_session.execute(text(
        "SELECT new->>'file' FROM audit_log WHERE action = 'leads_imported' ORDER BY id DESC LIMIT 1"
    )).scalar_one()
    assert audit == "Lead history (old CRM).csv"
    assert _uploads() == before  # the upload was deleted


def test_dates_and_id_clashes_are_questions_in_the_page(page, seeded_app_data, app_session, tmp_path):
    path = tmp_path / "dated.csv"
    path.write_text("Record ID,E-mail,Created,Lead Source\n"
                    "R-1,dated1@example.com,03/04/2026,Referral\n"
                    "R-2,dated2@example.com,05/06/2026,Referral\n")
    before = _uploads()
    page.goto("/import")
    choose_viewer(page, "Maya Manager")
    _upload(page, path)
    expect(page.locator(".row-order")).to_have_count(0)  # the file has dates
    page.get_by_role("checkbox", name="Use row numbers as ids (no id or email column)").click()
    page.get_by_role("button", name="Validate").click()
    expect(page.locator(".report-summary")).to_contain_text("Fix the mapping first:")
    expect(page.locator(".report-summary")).to_contain_text("row numbers are ids too")
    page.get_by_role("checkbox", name="Use row numbers as ids (no id or email column)").click()
    page.get_by_role("button", name="Validate").click()
    expect(page.locator(".report-summary")).to_contain_text("could be day first or month first")
    page.get_by_role("combobox", name="Date format").click()
    page.get_by_role("option", name="Day first (31/03/2026)").click()
    page.get_by_role("button", name="Validate").click()
    expect(page.locator(".report-summary")).to_contain_text("All 2 rows are valid.")
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator(".import-summary")).to_contain_text("Created 2")
    created = app_session.execute(text("SELECT created_at FROM leads "
                                       "WHERE email = 'dated1@example.com'")).scalar_one()
    assert (created.day, created.month) == (3, 4)
    assert app_session.execute(text("SELECT date_format FROM imports ORDER BY id DESC LIMIT 1")
                               ).scalar_one() == "day_first"
    assert _uploads() == before


def test_a_running_import_is_cancelled_from_the_page_and_stores_nothing(page, seeded_app_data, app_session,
                                                                        tmp_path):
    path = tmp_path / "to-cancel.csv"
    path.write_text(HEADER + "".join(f"Cancelled Person {i},cancelled{i}@import.example,Cancelco,50,Referral,,North\n"
                                     for i in range(30_000)))
    page.goto("/import")
    choose_viewer(page, "Maya Manager")
    _upload(page, path)
    expect(page.locator(".preview-row")).to_have_count(10)
    page.get_by_role("button", name="Import", exact=True).click()
    page.locator(".cancel-import").click()
    expect(page.locator(".import-message")).to_contain_text("Import cancelled: nothing was stored.", timeout=120_000)
    expect(page.locator(".cancel-import")).to_have_count(0)
    app_session.rollback()
    assert app_session.execute(
        text("SELECT count(*) FROM leads WHERE email LIKE 'cancelled%@import.example'")).scalar_one() == 0


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
    # Only the link is needed: the browser's own download is cancelled, so that closing the tab never
    # waits on it (once in a full run the context's close hung 15 minutes after this test).
    download_info.value.cancel()
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
