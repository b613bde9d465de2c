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
    profile_file,
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


def test_close_value_and_expected_close_date_are_recognised():
    assert guess_mapping(["Name", "Close Value", "Expected Close Date", "Notes"]) == {
        "Name": "name", "Close Value": "deal_value", "Expected Close Date": "closed_at", "Notes": "custom",
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


# --- Files as CRMs export them (issue #13) ----------------------------------------------------------


def _custom(session, email: str) -> dict:
    return session.execute(text("SELECT custom_fields FROM leads WHERE email = :e"),
                           {"e": email}).scalar_one()


def test_formatted_numbers_are_stored_as_numbers_each_column_read_its_own_way(session, tmp_path):
    header = ["Name", "Email", "Amount", "Employees", "Views", "Budget", "Discount"]
    rows = [
        ["Ann", "ann@example.com", "$1,200", "1,532", "2,5", "1.234,5", "12%"],
        ["Bob", "bob@example.com", "1,532.50", "12", "1,25", "2.000", "5%"],
        ["Cy", "cy@example.com", "€ 3 400", "2,000", "3", "900", "0%"],
    ]
    path = write_csv(tmp_path / "formatted.csv", rows, header=header)
    plain = ImportMapping(columns=guess_mapping(header), defaults={"source": "website"})
    report = validate_file(path, plain, now=NOW)
    assert report.ok, report.errors
    # "Employees" has only "1,532"-like values: read with a point, and the report says so.
    assert [w.column for w in report.warnings] == ["Employees"]
    assert '"1,532" could be 1532 or 1.532' in report.warnings[0].message
    import_file(session, path, plain, now=NOW)
    stored = session.execute(text(
        "SELECT email, deal_value, company_size, custom_fields FROM leads ORDER BY email")).all()
    assert [(r.email, float(r.deal_value), r.company_size) for r in stored] == [
        ("ann@example.com", 1200.0, 1532), ("bob@example.com", 1532.5, 12), ("cy@example.com", 3400.0, 2000)]
    # Custom fields are JSON numbers, so the model's feature spec sees numeric columns.
    assert [r.custom_fields for r in stored] == [
        {"Views": 2.5, "Budget": 1234.5, "Discount": 0.12},
        {"Views": 1.25, "Budget": 2000, "Discount": 0.05},
        {"Views": 3, "Budget": 900, "Discount": 0},
    ]
    assert session.execute(text(
        "SELECT count(*) FROM leads, jsonb_each(custom_fields) f WHERE jsonb_typeof(f.value) <> 'number'"
    )).scalar_one() == 0


def test_a_decimal_separator_given_in_the_mapping_settles_an_ambiguous_column(tmp_path):
    header = ["Name", "Email", "Employees"]
    path = write_csv(tmp_path / "de.csv", [["Ann", "ann@example.com", "1.532"]], header=header)
    mapping_ = ImportMapping.from_dict({"columns": guess_mapping(header), "defaults": {"source": "website"},
                                        "decimal_separators": {"Employees": ","}})
    report = validate_file(path, mapping_, now=NOW)
    assert report.ok and report.warnings == []
    assert preview(path, mapping_, now=NOW)[0].fields["Size"] == "1532"


def test_a_mostly_numeric_column_under_the_models_numeric_share_is_noted_with_what_broke_it(tmp_path):
    from crm_app.scoring.features import NUMERIC_SHARE

    header = ["Name", "Email", "Budget"]
    rows = [[f"P{i}", f"p{i}@example.com", str(1000 + i)] for i in range(90)]
    rows += [[f"Q{i}", f"q{i}@example.com", "TBD"] for i in range(8)]
    rows += [["R1", "r1@example.com", "ask Bob"], ["R2", "r2@example.com", "n/a"]]  # n/a: a placeholder
    report = validate_file(write_csv(tmp_path / "budget.csv", rows, header=header),
                           ImportMapping(columns=guess_mapping(header), defaults={"source": "website"}),
                           now=NOW)
    assert report.ok
    (note,) = report.warnings
    assert note.column == "Budget"
    assert f"at least {NUMERIC_SHARE:.0%}" in note.message and '"Budget" is 91% numbers' in note.message
    assert '"TBD" (8 rows), "ask Bob" (1 row)' in note.message


def test_placeholder_words_are_missing_values_by_default(session, tmp_path):
    header = ["Name", "Email", "Lead Source", "Specialization", "City", "Country"]
    rows = [["Ann", "ann@example.com", "-", "Select", "N/A", "null"],
            ["Bob", "bob@example.com", "Referral", "Finance", "Pune", "India"]]
    path = write_csv(tmp_path / "selects.csv", rows, header=header)
    defaults = {"source": "website"}
    import_file(session, path, ImportMapping(columns=guess_mapping(header), defaults=defaults), now=NOW)
    ann = session.execute(text("SELECT source, custom_fields FROM leads "
                               "WHERE email = 'ann@example.com'")).one()
    assert ann == ("website", {})
    assert _custom(session, "bob@example.com") == {"Specialization": "Finance", "City": "Pune",
                                                   "Country": "India"}
    # A mapping file without "missing_values" gets the same list; an empty list turns it off.
    assert ImportMapping.from_dict({}).missing_values == ImportMapping().missing_values
    assert "select" in ImportMapping().missing_values and "n/a" in ImportMapping().missing_values
    kept = validate_file(path, ImportMapping.from_dict({"columns": guess_mapping(header), "defaults": defaults,
                                                        "missing_values": []}), now=NOW)
    # "-" is then a source word, which takes the default.
    assert kept.ok and any(w.message.startswith("1 source word is not ours") for w in kept.warnings)


def test_an_export_with_a_converted_flag_and_prospect_ids_maps_itself(session, tmp_path):
    from crm_app.demo.crm_export import write_lead_history_csv

    path = write_lead_history_csv(tmp_path / "Leads.csv", rows=300, seed=5)
    fmt_profile = profile_file(path)
    guessed = guess_mapping(fmt_profile.fmt.headers, fmt_profile)
    assert guessed["Converted"] == "outcome"
    assert guessed["Prospect ID"] == "external_id"
    assert guessed["Lead Number"] == "ignore"  # a second id: no signal, and it counts up with time
    assert guessed["Lead Source"] == "source"
    assert guessed["Do Not Email"] == "custom"
    # 0/1 are understood: the only words left to map are the old CRM's sources.
    mapping_ = ImportMapping(columns=guessed, defaults={"source": "website"})
    assert unknown_values(path, mapping_, "outcome") == []
    summary = import_file(session, path, mapping_, now=NOW)
    assert summary.created == 300
    with path.open() as handle:
        converted = sum(row["Converted"] == "1" for row in csv.DictReader(handle))
    assert session.execute(text("SELECT count(*) FROM leads WHERE stage = 'won'")).scalar_one() == converted
    lost = session.execute(text("SELECT count(*) FROM leads WHERE stage = 'lost'")).scalar_one()
    assert lost == 300 - converted
    # Each lead keeps the file's own source word next to the source it counts under.
    details = dict(session.execute(text(
        "SELECT custom_fields->>'source_detail', count(*) FROM leads GROUP BY 1")).all())
    assert details["Google"] > 0 and details["Olark Chat"] > 0 and None not in details


def test_status_is_the_outcome_when_it_holds_flags_and_the_stage_when_it_holds_stages(tmp_path):
    header = ["Email", "Status", "Lead ID", "Account Number"]
    flags = write_csv(tmp_path / "flags.csv", [[f"p{i}@example.com", ("Yes", "No")[i % 2], f"L-{i}", "A-1"]
                                               for i in range(6)], header=header)
    profile = profile_file(flags)
    assert guess_mapping(header, profile) == {"Email": "email", "Status": "outcome", "Lead ID": "external_id",
                                              "Account Number": "custom"}  # repeats: not an id
    stages = write_csv(tmp_path / "stages.csv",
                       [[f"p{i}@example.com", ("New", "Won", "Lost")[i % 3], "L-1", "A-1"] for i in range(6)],
                       header=header)
    assert guess_mapping(header, profile_file(stages)) == {"Email": "email", "Status": "stage",
                                                           "Lead ID": "custom", "Account Number": "custom"}


def test_row_number_ids_next_to_an_id_column_report_the_clash_not_an_empty_file(tmp_path):
    header = ["Prospect ID", "Email"]
    path = write_csv(tmp_path / "ids.csv", [["P-1", "a@example.com"], ["P-2", "b@example.com"]],
                     header=header)
    both = ImportMapping(columns={"Prospect ID": "external_id", "Email": "email"},
                         defaults={"source": "website"}, row_id_prefix="ids:row-")
    report = validate_file(path, both, now=NOW)
    assert not report.ok
    assert report.summary().startswith("Fix the mapping first:")
    assert "row numbers are ids too" in report.summary()
    assert "no data rows" not in report.summary()


def test_unknown_words_are_reported_once_each_with_their_rows(tmp_path):
    rows = people(40)
    for i, row in enumerate(rows):
        row[4] = ("Google", "Olark Chat", "LinkedIn", "google")[i % 4]
    report = validate_file(write_csv(tmp_path / "words.csv", rows), mapping(), now=NOW)
    assert report.error_count == 2  # two words, not thirty rows
    assert [e.message.split(":")[0] for e in report.errors] == [
        'Unknown source "Google" in 20 rows (the first is row 1)',
        'Unknown source "Olark Chat" in 10 rows (the first is row 2)',
    ]
    assert report.valid_rows == 10
    assert report.summary().startswith("30 of 40 rows have problems: 2 problems.")


def _lead_id_sequence(session) -> tuple:
    return session.execute(text("SELECT last_value, is_called FROM leads_id_seq")).one()


def test_a_dry_run_leaves_the_lead_id_sequence_alone(session, tmp_path):
    make_lead(session, "Already Here", now=NOW)
    before = _lead_id_sequence(session)
    summary = import_file(session, write_csv(tmp_path / "dry.csv", people(25)), mapping(), now=NOW,
                          dry_run=True)
    assert summary.created == 25
    assert _lead_id_sequence(session) == before
    import_file(session, write_csv(tmp_path / "real.csv", people(2)), mapping(), now=NOW)
    ids = session.execute(text("SELECT id FROM leads ORDER BY id")).scalars().all()
    assert ids[1:] == [ids[0] + 1, ids[0] + 2]  # the real import numbers on from the stored lead


def test_an_undated_file_keeps_its_rows_order_and_records_no_made_up_history(session, tmp_path):
    header = ["Prospect ID", "Converted", "Origin"]
    rows = [[f"P-{n}", str(n % 2), "API"] for n in range(6, 0, -1)]  # listed newest (P-6) first
    path = write_csv(tmp_path / "undated.csv", rows, header=header)
    profile = profile_file(path)
    mapping_ = ImportMapping(columns=guess_mapping(header, profile), defaults={"source": "website"},
                             row_order="newest_first")
    assert validate_file(path, mapping_, now=NOW).has_dates is False
    summary = import_file(session, path, mapping_, now=NOW, file_name="Leads export (old CRM).csv")
    leads = session.execute(text(
        "SELECT id, external_id, import_id, import_row, dates_known, created_at, closed_at, stage FROM leads"
        " ORDER BY id")).all()
    # Ids oldest first: the file's last row is the oldest lead.
    assert [r.external_id for r in leads] == [f"P-{n}" for n in range(1, 7)]
    assert [r.import_row for r in leads] == [6, 5, 4, 3, 2, 1]
    assert {r.import_id for r in leads} == {summary.import_id}
    assert not any(r.dates_known for r in leads)
    # One stage change per lead: it arrived where it is; no "new", no stages passed on the way.
    history = session.execute(text(
        "SELECT lead_id, from_stage, to_stage FROM stage_changes ORDER BY lead_id")).all()
    assert [(h.from_stage, h.to_stage) for h in history] == [(None, r.stage) for r in leads]
    record = session.execute(text("SELECT * FROM imports WHERE id = :id"), {"id": summary.import_id}).one()
    assert (record.file_name, record.row_count, record.dated_rows, record.row_order, record.date_format) == (
        "Leads export (old CRM).csv", 6, 0, "newest_first", "auto")
    audit = session.execute(text("SELECT new FROM audit_log WHERE action = 'leads_imported'")).scalar_one()
    assert audit["file"] == "Leads export (old CRM).csv"


def test_a_dated_file_records_its_dates_and_no_row_order(session, tmp_path):
    header = ["Email", "Created", "Closed", "Outcome"]
    rows = [["a@example.com", "31/01/2026", "03/02/2026", "won"], ["b@example.com", "02/02/2026", "", ""]]
    path = write_csv(tmp_path / "dated.csv", rows, header=header)
    mapping_ = ImportMapping(columns=guess_mapping(header), defaults={"source": "website"},
                             row_order="oldest_first")
    summary = import_file(session, path, mapping_, now=NOW)
    a = session.execute(text("SELECT * FROM leads WHERE email = 'a@example.com'")).one()
    assert (a.created_at.date().isoformat(), a.closed_at.date().isoformat(), a.dates_known) == (
        "2026-01-31", "2026-02-03", True)  # "31/01" settles the column: day first
    assert session.execute(text("SELECT row_order, dated_rows FROM imports WHERE id = :id"),
                           {"id": summary.import_id}).one() == (None, 2)


def test_ambiguous_dates_are_a_question_for_the_user_not_a_guess(tmp_path):
    header = ["Email", "Created"]
    path = write_csv(tmp_path / "dates.csv",
                     [["a@example.com", "03/04/2026"], ["b@example.com", "05/06/2026"]], header=header)
    auto = ImportMapping(columns=guess_mapping(header), defaults={"source": "website"})
    report = validate_file(path, auto, now=NOW)
    assert not report.ok and "could be day first or month first" in report.summary()
    auto.date_format = "month_first"
    assert validate_file(path, auto, now=NOW).ok
    assert preview(path, auto, now=NOW)[0].errors == []


def test_cells_are_stored_as_typed_except_for_the_spaces_around_them(session, tmp_path):
    header = ["Name", "Email", "Note"]
    path = write_csv(tmp_path / "tabs.csv", [["\t=1+1", "t@example.com", "\t=HYPERLINK(\"x\")"],
                                             ["  Ann  ", "ann@example.com", " =2+2 "]], header=header)
    import_file(session, path, ImportMapping(columns=guess_mapping(header), defaults={"source": "website"}),
                now=NOW)
    stored = dict(session.execute(text("SELECT email, name FROM leads")).all())
    assert stored == {"t@example.com": "\t=1+1", "ann@example.com": "Ann"}
    assert _custom(session, "t@example.com") == {"Note": "\t=HYPERLINK(\"x\")"}
    assert _custom(session, "ann@example.com") == {"Note": " =2+2"}  # no formula made by removing a space


def test_the_preview_comes_from_the_profile_kept_for_the_file(tmp_path, monkeypatch):
    from crm_app.services.importing import read

    path = write_csv(tmp_path / "kept.csv", people(50))
    preview(path, mapping(), now=NOW)
    reads = []
    monkeypatch.setattr(read, "_rows", lambda *a: reads.append(a) or iter(()))
    shown = preview(path, mapping(), now=NOW)
    unknown_values(path, mapping(), "source")
    assert len(shown) == 10 and reads == []  # no reading of the file for a mapping change
    path.write_text(path.read_text() + "Person X,px@example.com,Co,5,LinkedIn,New,1,2026-01-15,Retail\n")
    preview(path, mapping(), now=NOW)
    assert len(reads) == 1  # a changed file is read again


def test_imports_are_read_and_added_by_managers_only_and_never_changed(session, tmp_path):
    from sqlalchemy.exc import DBAPIError

    from crm_app.db.security import apply_acting_user
    from tests.factories import make_user

    rep, manager = make_user(session, "Rita Rep"), make_user(session, "Manny Manager", role="manager")
    import_id = import_file(session, write_csv(tmp_path / "a.csv", people(2)), mapping(), now=NOW).import_id

    def attempt(user_id: int, sql: str) -> int | str:
        try:
            with session.begin_nested():
                apply_acting_user(session.connection(), user_id)
                result = session.execute(text(sql), {"id": import_id, "rep": rep.id, "manager": manager.id})
                count = len(result.all()) if result.returns_rows else result.rowcount
                session.execute(text("RESET ROLE"))
                return count
        except DBAPIError as error:
            refused = "row-level security" in str(error.orig) or "permission denied" in str(error.orig)
            return "refused" if refused else str(error.orig)

    add = ("INSERT INTO imports (file_name, imported_at, actor_id, row_count, dated_rows, date_format) "
           "VALUES ('x.csv', now(), :{who}, 1, 0, 'auto')")
    assert attempt(rep.id, "SELECT * FROM imports") == 0
    assert attempt(rep.id, add.format(who="rep")) == "refused"
    assert attempt(manager.id, "SELECT * FROM imports WHERE id = :id") == 1
    assert attempt(manager.id, add.format(who="rep")) == "refused"  # only as themself
    assert attempt(manager.id, add.format(who="manager")) == 1
    assert attempt(manager.id, "UPDATE imports SET file_name = 'y.csv' WHERE id = :id") == "refused"
    assert attempt(manager.id, "DELETE FROM imports WHERE id = :id") == "refused"


def test_a_column_of_many_values_is_profiled_one_by_one_past_the_limit(tmp_path, monkeypatch):
    from crm_app.services.importing import read

    monkeypatch.setattr(read, "MAX_DISTINCT", 5)
    monkeypatch.setattr(read, "_CHUNK", 4)
    header = ["Id", "Twice", "Amount", "Kind"]
    rows = [[f"ID-{i}", f"T-{i % 9}", f"{1000 + i:,}", ("a", "b")[i % 2]] for i in range(12)]
    profile = read._profile(write_csv(tmp_path / "many.csv", rows, header=header))
    ids, twice, amount, kind = (profile.columns[h] for h in header)
    assert (ids.complete, ids.unique, ids.filled) == (False, True, 12)
    assert (twice.complete, twice.unique) == (False, False)  # T-0 comes back in row 10
    assert amount.number_shapes == {"either_comma": 12}
    assert (kind.complete, dict(kind.counts)) == (True, {"a": 6, "b": 6})


def test_the_lead_history_example_mapping_reads_the_generated_export(session, tmp_path):
    from crm_app.demo.crm_export import write_lead_history_csv

    path = write_lead_history_csv(tmp_path / "Leads.csv", rows=400, seed=9)
    example = load_mapping(REPO_ROOT / "docs" / "mappings" / "lead-history.json")
    report = validate_file(path, example, now=NOW)
    assert report.ok and report.warnings == [] and not report.has_dates
    summary = import_file(session, path, example, now=NOW)
    assert session.execute(text("SELECT row_order FROM imports WHERE id = :id"),
                           {"id": summary.import_id}).scalar_one() == "newest_first"
    assert session.execute(text(
        "SELECT count(*) FROM leads WHERE custom_fields ? 'Tags' OR custom_fields ? 'Lead Number'"
    )).scalar_one() == 0


def test_import_the_valid_rows_and_list_the_skipped_ones_with_their_problems(session, tmp_path):
    from crm_app.services.importing import write_skipped_rows

    rows = people(3, start=900)
    rows.append(["Bad Email", "not-an-email", "X", "10", "LinkedIn", "New", "1", "2026-01-15", "=1+1"])
    rows.append(["Pigeon", "pigeon@example.com", "X", "10", "Carrier pigeon", "New", "1", "2026-01-15", ""])
    rows.append(list(rows[0]))  # the same person twice
    path = write_csv(tmp_path / "mixed.csv", rows)
    with pytest.raises(ImportRejected):
        import_file(session, path, mapping(), now=NOW)
    summary = import_file(session, path, mapping(), now=NOW, skip_invalid=True)
    assert (summary.created, summary.invalid) == (3, 3)
    assert "3 rows with problems were not imported." in summary.describe()
    stored = session.execute(text("SELECT count(*) FROM leads WHERE email LIKE 'person9%@example.com' "
                                  "OR email = 'pigeon@example.com'")).scalar_one()
    assert stored == 3
    target = tmp_path / "skipped.csv"
    assert write_skipped_rows(path, mapping(), target, now=NOW) == 3
    skipped = list(csv.DictReader(target.open(newline="")))
    assert [r["Row in file"] for r in skipped] == ["4", "5", "6"]
    assert '"not-an-email" is not an email address.' in skipped[0]["Problems (not imported)"]
    assert skipped[0]["Industry"] == "'=1+1"  # protected for spreadsheets, as an export is
    assert 'Unknown source "Carrier pigeon"' in skipped[1]["Problems (not imported)"]
    assert "Same email as row 1" in skipped[2]["Problems (not imported)"]
    # A file with no valid row is refused even so.
    with pytest.raises(ImportRejected):
        import_file(session, write_csv(tmp_path / "bad.csv", rows[3:5]), mapping(), now=NOW, skip_invalid=True)


def test_an_open_deal_with_an_expected_close_date_ahead_imports_and_a_won_one_closes_on_it(session, tmp_path):
    # Issue #16 item 5: CRM exports carry an "Expected Close Date", in the future for open deals. It
    # is the close of a closed deal; on an open one it is no close (the forecast times open deals from
    # the team's history), and a date ahead must not refuse the row.
    header = ["Name", "Email", "Lead Source", "Stage", "Close Value", "Created", "Expected Close Date"]
    ahead = (NOW + timedelta(days=20)).strftime("%Y-%m-%d")
    rows = [["Open Olga", "olga@example.com", "Website", "Proposal", "12000", "2026-09-01", ahead],
            ["Won Walt", "walt@example.com", "Website", "Won", "8000", "2026-08-01", "2026-10-05"]]
    path = write_csv(tmp_path / "pipeline.csv", rows, header=header)
    summary = import_file(session, path, ImportMapping(columns=guess_mapping(header)), now=NOW)
    assert summary.created == 2
    stored = {r.name: r for r in session.execute(text(
        "SELECT name, stage, deal_value, closed_at FROM leads "
        "WHERE email IN ('olga@example.com', 'walt@example.com')"))}
    olga = stored["Open Olga"]
    assert (olga.stage, float(olga.deal_value), olga.closed_at) == ("proposal", 12000.0, None)
    assert (stored["Won Walt"].stage, float(stored["Won Walt"].deal_value)) == ("won", 8000.0)
    assert stored["Won Walt"].closed_at.date().isoformat() == "2026-10-05"
