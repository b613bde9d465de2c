"""CSV import on a real PostgreSQL: mapping, per-row validation, all-or-nothing writes, idempotent re-import."""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from crm_app.db.models import Lead
from crm_app.domain import Source
from crm_app.services.importing import (
    MAX_REPORTED,
    ImportMapping,
    ImportRejected,
    guess_mapping,
    import_file,
    load_mapping,
    preview,
    read_csv_format,
    unknown_values,
    validate_file,
)
from crm_app.settings import REPO_ROOT
from tests.conftest import NOW
from tests.factories import make_lead

HEADER = ["Full Name", "E-mail", "Company", "Employees", "Lead Source", "Status", "Amount", "Created", "Industry"]
BANK_CSV = REPO_ROOT.parent / "shared" / "data" / "bank-additional-full.csv"


def write_csv(path: Path, rows: list[list[str]], header=HEADER, delimiter=",", encoding="utf-8") -> Path:
    with path.open("w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def people(n: int, start: int = 0) -> list[list[str]]:
    return [
        [f"Person {i}", f"person{i}@example.com", f"Company {i % 7}", str(10 + i), "LinkedIn", "New",
         f"{1000 + i}", "2026-01-15", "Retail" if i % 2 else "Banking"]
        for i in range(start, start + n)
    ]


def mapping() -> ImportMapping:
    return ImportMapping(columns=guess_mapping(HEADER))


def snapshot(session) -> list:
    """Everything an import may touch, row by row."""
    return [
        session.execute(text(f"SELECT * FROM {table} ORDER BY id")).all()
        for table in ("leads", "stage_changes", "activities")
    ]


def test_headers_are_guessed_and_other_columns_become_custom_fields():
    assert guess_mapping(HEADER) == {
        "Full Name": "name", "E-mail": "email", "Company": "company", "Employees": "company_size",
        "Lead Source": "source", "Status": "stage", "Amount": "deal_value", "Created": "created_at",
        "Industry": "custom",
    }


def test_sniffs_semicolons_bom_quotes_and_latin1(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b'Name;Email;Notes\n"M\xfcller; Jos\xe9";mj@example.com;"two\nlines"\n')
    fmt = read_csv_format(path)
    assert (fmt.encoding, fmt.delimiter, fmt.headers) == ("latin-1", ";", ("Name", "Email", "Notes"))
    utf8 = tmp_path / "bom.csv"
    utf8.write_bytes("\ufeffName;Email;Notes\n\"Müller; José\";mj@example.com;\"two\nlines\"\n".encode("utf-8"))
    fmt = read_csv_format(utf8)
    assert (fmt.encoding, fmt.delimiter, fmt.headers) == ("utf-8-sig", ";", ("Name", "Email", "Notes"))
    shown = preview(utf8, ImportMapping(columns={"Name": "name", "Email": "email"}, defaults={"source": "website"}),
                    now=NOW)
    assert shown[0].fields["Name"] == "Müller; José"
    assert shown[0].fields["Custom fields"] == "Notes: two\nlines"


def test_every_bad_row_is_reported_with_its_row_column_and_reason(tmp_path):
    rows = people(6)
    rows[1][1] = "not-an-email"
    rows[2][4] = "Carrier pigeon"
    rows[3][3] = "lots"
    rows[4][7] = (NOW + timedelta(days=3)).strftime("%Y-%m-%d")
    rows[5][1] = rows[0][1].upper()  # the same person twice
    report = validate_file(write_csv(tmp_path / "bad.csv", rows), mapping(), now=NOW)
    assert not report.ok
    assert (report.rows, report.valid_rows, report.error_count) == (6, 1, 5)
    found = {(e.row, e.column): e.message for e in report.errors}
    assert found[(2, "E-mail")] == '"not-an-email" is not an email address.'
    assert found[(3, "Lead Source")].startswith('Unknown source "Carrier pigeon": map it to one of LinkedIn')
    assert found[(4, "Employees")] == '"lots" is not a whole number of employees.'
    assert "is in the future" in found[(5, "Created")]
    assert found[(6, "E-mail")] == "Same email as row 1: a lead appears once per file."
    assert "Nothing is imported until every row is valid" in report.summary()


def test_unknown_source_words_are_listed_once_and_a_value_map_resolves_them(tmp_path):
    rows = people(4)
    rows[0][4], rows[1][4], rows[2][4] = "Trade show", "trade show", "Google Ads"
    path = write_csv(tmp_path / "words.csv", rows)
    assert unknown_values(path, mapping(), "source") == ["Trade show", "Google Ads"]
    mapped = ImportMapping(columns=guess_mapping(HEADER),
                           values={"source": {"trade show": "events", "google ads": "paid_search"}})
    assert unknown_values(path, mapped, "source") == []
    assert validate_file(path, mapped, now=NOW).ok


def test_the_report_keeps_the_first_errors_but_counts_all(tmp_path):
    rows = people(MAX_REPORTED + 50)
    for row in rows:
        row[1] = "broken"
    report = validate_file(write_csv(tmp_path / "many.csv", rows), mapping(), now=NOW)
    assert report.error_count == MAX_REPORTED + 50
    assert len(report.errors) == MAX_REPORTED
    assert f"the first {MAX_REPORTED} are listed" in report.summary()


def test_a_mapping_that_names_a_missing_column_or_a_field_twice_is_refused(tmp_path):
    path = write_csv(tmp_path / "a.csv", people(2))
    columns = {**guess_mapping(HEADER), "Company": "email", "Fax": "phone"}
    report = validate_file(path, ImportMapping(columns=columns), now=NOW)
    messages = [(e.column, e.message) for e in report.errors]
    assert ("Fax", 'The mapping names a column "Fax" the file does not have.') in messages
    assert any(column in ("E-mail", "Company") and "already the Email column" in m for column, m in messages)


def test_import_stores_fields_custom_fields_and_scores(session, tmp_path):
    summary = import_file(session, write_csv(tmp_path / "ok.csv", people(3)), mapping(), now=NOW)
    assert (summary.created, summary.updated, summary.skipped) == (3, 0, 0)
    lead = session.execute(text("SELECT * FROM leads WHERE email = 'person2@example.com'")).one()
    assert (lead.name, lead.company, lead.company_size, lead.source, lead.stage) == (
        "Person 2", "Company 2", 12, "linkedin", "new")
    assert float(lead.deal_value) == 1002.0
    assert lead.custom_fields == {"Industry": "Banking"}
    assert lead.created_at.date().isoformat() == "2026-01-15"
    # Scored in the same transaction, by the team's engine (the rubric: small company, no activity).
    assert (lead.score, lead.tier, lead.score_reasons) == (0, "cold", [])
    history = session.execute(
        text("SELECT from_stage, to_stage FROM stage_changes WHERE lead_id = :id"), {"id": lead.id}).all()
    assert history == [(None, "new")]
    # Open deals get their risk assessed in the same transaction too.
    assert lead.risk_level is not None and lead.risk_at is not None


def test_a_custom_number_too_large_for_a_float_is_kept_as_text(session, tmp_path):
    # Stored as a JSON number it would be Infinity, which PostgreSQL refuses: the import used to fail
    # as "unexpected" after validation had called the file valid.
    rows = people(3)
    rows[0][8], rows[1][8], rows[2][8] = "1e999", "9" * 400, "-2.5e3"
    path = write_csv(tmp_path / "huge.csv", rows)
    assert validate_file(path, mapping(), now=NOW).ok
    import_file(session, path, mapping(), now=NOW)
    stored = session.execute(text("SELECT custom_fields->'Industry' FROM leads ORDER BY email")).scalars().all()
    assert stored == ["1e999", "9" * 400, -2500.0]


def test_a_failed_import_leaves_the_database_exactly_as_it_was(session, tmp_path):
    make_lead(session, "Already Here", now=NOW)
    import_file(session, write_csv(tmp_path / "first.csv", people(5)), mapping(), now=NOW)
    before = snapshot(session)
    # A newer export: changes to the five stored rows, new people, and one bad row at the very end.
    rows = people(8)
    for row in rows:
        row[2] = "Renamed Co"
    rows.append(["Bad Row", "bad@example.com", "X", "-4", "LinkedIn", "New", "1", "2026-01-01", ""])
    with pytest.raises(ImportRejected) as rejected:
        import_file(session, write_csv(tmp_path / "second.csv", rows), mapping(), now=NOW + timedelta(hours=1))
    assert rejected.value.report.errors[0].row == 9
    assert snapshot(session) == before


def test_a_row_clashing_with_stored_leads_rolls_back_everything(session, tmp_path):
    header = ["id", "email", "name"]
    import_file(session, write_csv(tmp_path / "a.csv", [["A-1", "a@example.com", "Ann"],
                                                        ["A-2", "b@example.com", "Bob"]], header=header),
                ImportMapping(columns=guess_mapping(header), defaults={"source": "website"}), now=NOW)
    before = snapshot(session)
    # Row 2 says the lead with id A-1 has Bob's email: which lead is meant cannot be decided.
    rows = [["A-3", "c@example.com", "Cy"], ["A-1", "b@example.com", "Ann"]]
    with pytest.raises(ImportRejected, match="Row 2: the external id belongs to one stored lead"):
        import_file(session, write_csv(tmp_path / "b.csv", rows, header=header),
                    ImportMapping(columns=guess_mapping(header), defaults={"source": "website"}), now=NOW)
    assert snapshot(session) == before


def test_reimport_updates_matched_leads_and_creates_no_duplicates(session, tmp_path):
    path = write_csv(tmp_path / "crm.csv", people(4))
    import_file(session, path, mapping(), now=NOW)
    again = import_file(session, path, mapping(), now=NOW + timedelta(hours=1))
    assert (again.created, again.updated, again.skipped) == (0, 0, 4)

    rows = people(5)  # one new person
    rows[0][2] = "New Employer"  # a change
    rows[1][2] = ""  # a blank cell keeps what is stored
    rows[1][8] = "Insurance"  # custom fields are merged, the file's value wins
    rows[2][5] = "Won"  # a stage move is recorded
    later = NOW + timedelta(days=1)
    summary = import_file(session, write_csv(tmp_path / "newer.csv", rows), mapping(), now=later)
    assert (summary.created, summary.updated, summary.skipped) == (1, 3, 1)
    assert session.execute(text("SELECT count(*) FROM leads")).scalar_one() == 5
    stored = {r.email: r for r in session.execute(text("SELECT * FROM leads"))}
    assert stored["person0@example.com"].company == "New Employer"
    assert stored["person0@example.com"].version == 2
    assert stored["person1@example.com"].company == "Company 1"
    assert stored["person1@example.com"].custom_fields == {"Industry": "Insurance"}
    won = stored["person2@example.com"]
    assert (won.stage, won.closed_at, won.score_at_close) == ("won", later, 0)
    moves = session.execute(text("SELECT from_stage, to_stage, changed_at FROM stage_changes WHERE lead_id = :id "
                                 "ORDER BY id"), {"id": won.id}).all()
    assert [(m.from_stage, m.to_stage) for m in moves] == [(None, "new"), ("new", "won")]
    assert moves[-1].changed_at == later


def test_reimport_matches_leads_created_in_the_app_by_email(session, tmp_path):
    ada = make_lead(session, "Ada Lovelace", now=NOW, source=Source.REFERRAL)
    rows = [["Ada L.", "ADA.LOVELACE@example.com", "Engines", "120", "Referral", "Qualified", "5000", "", "Math"]]
    summary = import_file(session, write_csv(tmp_path / "one.csv", rows), mapping(), now=NOW)
    assert (summary.created, summary.updated) == (0, 1)
    session.refresh(ada)
    # Bigger company now: rescored in the same transaction (+10 over 50 employees).
    assert (ada.company_size, ada.stage, ada.score, ada.tier) == (120, "qualified", 10, "cold")
    assert session.execute(text("SELECT count(*) FROM leads")).scalar_one() == 1


def test_files_without_email_use_row_numbers_as_ids_and_reimport_is_idempotent(session, tmp_path):
    header = ["age", "job", "duration", "y"]
    rows = [[str(30 + i), "admin." if i % 2 else "unknown", str(100 * i), "yes" if i % 3 == 0 else "no"]
            for i in range(30)]
    path = write_csv(tmp_path / "calls.csv", rows, header=header, delimiter=";")
    bank = load_mapping(REPO_ROOT / "docs" / "mappings" / "bank-marketing.json")
    first = import_file(session, path, bank, now=NOW)
    assert first.created == 30
    again = import_file(session, path, bank, now=NOW)
    assert (again.created, again.updated, again.skipped) == (0, 0, 30)
    lead = session.execute(text("SELECT * FROM leads WHERE external_id = 'bank-additional-full:row-3'")).one()
    # Row 3: i = 2, job "unknown" counts as missing, duration ignored, y = no -> lost.
    assert (lead.name, lead.stage, lead.source, lead.custom_fields) == (
        "Bank client 3", "lost", "cold_outreach", {"age": 32})
    assert lead.closed_at is not None and lead.score_at_close == 0
    # File order is time order (the row clock) and id order.
    order = session.execute(text("SELECT external_id FROM leads ORDER BY closed_at, id")).scalars().all()
    assert order == [f"bank-additional-full:row-{n}" for n in range(1, 31)]


def test_defaults_fill_new_leads_only_and_never_move_stored_ones(session, tmp_path):
    header = ["Name", "Email"]
    path = write_csv(tmp_path / "plain.csv", [["Kim", "kim@example.com"]], header=header)
    defaults = ImportMapping(columns=guess_mapping(header), defaults={"source": "events", "stage": "contacted"})
    import_file(session, path, defaults, now=NOW)
    session.execute(text("UPDATE leads SET stage = 'qualified', source = 'referral'"))
    summary = import_file(session, path, defaults, now=NOW)
    assert (summary.created, summary.updated, summary.skipped) == (0, 0, 1)
    assert session.execute(text("SELECT stage, source FROM leads")).one() == ("qualified", "referral")


def test_a_dry_run_reports_but_writes_nothing(session, tmp_path):
    before = snapshot(session)
    summary = import_file(session, write_csv(tmp_path / "dry.csv", people(10)), mapping(), now=NOW, dry_run=True)
    assert (summary.created, summary.dry_run) == (10, True)
    assert snapshot(session) == before


def test_rows_with_no_source_need_a_default(session, tmp_path):
    header = ["Name", "Email"]
    path = write_csv(tmp_path / "nosource.csv", [["Kim", "kim@example.com"]], header=header)
    report = validate_file(path, ImportMapping(columns=guess_mapping(header)), now=NOW)
    assert [e.column for e in report.errors] == ["source"]
    assert "Choose a default" in report.errors[0].message
    summary = import_file(session, path, ImportMapping(columns=guess_mapping(header),
                                                       defaults={"source": "events"}), now=NOW)
    assert summary.created == 1
    assert session.query(Lead).one().source == "events"


def test_a_thousand_generated_rows_import_in_one_go(session, tmp_path):
    rows = people(1000)
    for i, row in enumerate(rows):
        row[5] = ("New", "Contacted", "Won", "Lost")[i % 4]
        row[4] = ("LinkedIn", "Website", "Referral", "Paid search")[i % 4]
    progress = []
    summary = import_file(session, write_csv(tmp_path / "k.csv", rows), mapping(), now=NOW, progress=progress.append)
    assert (summary.rows, summary.created) == (1000, 1000)
    counts = dict(session.execute(text("SELECT stage, count(*) FROM leads GROUP BY stage")).all())
    assert counts == {"new": 250, "contacted": 250, "won": 250, "lost": 250}
    # Every closed lead has what analytics need; scores obey the rubric (+10 above 50 employees).
    assert session.execute(text(
        "SELECT count(*) FROM leads WHERE stage IN ('won', 'lost') AND (closed_at IS NULL OR score_at_close IS NULL)"
    )).scalar_one() == 0
    assert session.execute(text("SELECT count(*) FROM leads WHERE score = 10")).scalar_one() == 959  # 51 employees and up
    assert progress[-1].phase == "done" and progress[-1].rows_read == 1000


@pytest.mark.skipif(not BANK_CSV.exists(), reason=f"the bank marketing data is not at {BANK_CSV}")
def test_the_bank_file_validates_with_its_mapping():
    bank = load_mapping(REPO_ROOT / "docs" / "mappings" / "bank-marketing.json")
    report = validate_file(BANK_CSV, bank, now=NOW)
    assert (report.rows, report.error_count) == (41188, 0)
    assert read_csv_format(BANK_CSV).delimiter == ";"
