"""Import, in the browser (issue #14): "import the valid rows, skip the rest" as an explicit choice, the
rows left out downloadable as CSV with their problems, and a preview that clips long values."""

from __future__ import annotations

import csv

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from tests.e2e.conftest import choose_viewer

pytestmark = pytest.mark.e2e

HEADER = "Full Name,E-mail,Lead Source,Region\n"


def test_the_valid_rows_are_imported_and_the_skipped_ones_downloaded_with_their_problems(
        page, app_session, tmp_path):
    path = tmp_path / "mixed.csv"
    long_region = "North " * 1000  # 6,000 characters: the preview shows the start
    path.write_text(HEADER
                    + f"Skip Good One,skipgood1@example.com,Referral,{long_region}\n"
                    + "Skip Bad Email,skip-bad-at-example,Referral,West\n"
                    + "Skip Good Two,skipgood2@example.com,Referral,East\n"
                    + "Skip Pigeon,skippigeon@example.com,Carrier pigeon,South\n")
    page.goto("/import")
    choose_viewer(page, "Maya Manager")
    page.locator(".csv-drop input[type=file]").set_input_files(str(path))
    expect(page.locator(".uploaded-name")).to_have_text("mixed.csv")
    custom = page.locator(".preview-custom").first
    expect(custom).to_contain_text("Region: North North")
    assert len(custom.inner_text()) < 700 and custom.inner_text().rstrip().endswith("…")
    try:
        page.get_by_role("button", name="Validate").click()
        expect(page.locator(".report-summary")).to_contain_text("2 of 4 rows have problems")
        # All or nothing by default: nothing is imported.
        expect(page.locator(".skip-invalid")).not_to_be_checked()
        # The rows with problems, with why, before deciding.
        with page.expect_download() as before_import:
            page.locator(".download-skipped").click()
        rows = list(csv.DictReader(open(before_import.value.path(), newline="", encoding="utf-8")))
        assert [r["Full Name"] for r in rows] == ["Skip Bad Email", "Skip Pigeon"]
        page.locator(".skip-invalid").click()
        expect(page.locator(".skip-invalid")).to_be_checked()
        page.get_by_role("button", name="Import", exact=True).click()
        expect(page.locator(".import-summary")).to_contain_text("Created 2")
        expect(page.locator(".import-summary")).to_contain_text("2 rows with problems were not imported.")
        stored = app_session.execute(text("SELECT email FROM leads WHERE email LIKE 'skip%@example.com' "
                                          "ORDER BY email")).scalars().all()
        assert stored == ["skipgood1@example.com", "skipgood2@example.com"]
        assert app_session.execute(text("SELECT length(custom_fields->>'Region') FROM leads "
                                        "WHERE email = 'skipgood1@example.com'")
                                   ).scalar_one() == len(long_region.strip())
        # After the import the upload is gone, the rows left out are still there to download.
        expect(page.locator(".file-removed")).to_be_visible()
        with page.expect_download() as after_import:
            page.locator(".download-skipped").click()
        assert after_import.value.suggested_filename == "mixed-rows-not-imported.csv"
        rows = list(csv.DictReader(open(after_import.value.path(), newline="", encoding="utf-8")))
        assert [(r["Row in file"], r["Full Name"]) for r in rows] == [
            ("2", "Skip Bad Email"), ("4", "Skip Pigeon")]
        assert '"skip-bad-at-example" is not an email address.' in rows[0]["Problems (not imported)"]
        assert 'Unknown source "Carrier pigeon"' in rows[1]["Problems (not imported)"]
    finally:
        app_session.execute(text("DELETE FROM leads WHERE email LIKE 'skip%@example.com'"))
        app_session.commit()
