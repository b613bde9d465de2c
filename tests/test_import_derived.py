"""An import scores and assesses the leads it writes before writing them (importing/derive.py), then
writes each lead once. What it stores must be what rescoring and reassessing the leads afterwards
would store, and a changed lead must be written once, not once for its data, again for its score and
again for its risk. The keys a file is checked with (keys.py) must say what a dict would."""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from crm_app.domain import ActivityKind, Source, Stage
from crm_app.scoring import RuleBasedScoringEngine
from crm_app.services.importing import ImportMapping, import_file, validate_file
from crm_app.services.importing.keys import AllDifferent, FirstRows
from crm_app.services.leads import log_activity
from crm_app.services.risk import reassess_risk_in_transaction
from crm_app.services.scoring import rescore_leads_in_transaction
from tests.conftest import NOW
from tests.factories import make_lead

HEADER = ["Name", "Email", "Employees", "Source", "Stage", "Closed", "Plan"]
MAPPING = ImportMapping(columns={"Name": "name", "Email": "email", "Employees": "company_size",
                                 "Source": "source", "Stage": "stage", "Closed": "closed_at", "Plan": "custom"},
                        date_format="iso", defaults={"source": "website"})
DERIVED = ("score, tier, score_reasons, score_valid_until, score_at_close, risk_level, risk_points, risk_reasons, "
           "risk_valid_until, last_reply_at, last_reply_sentiment")


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def stored_leads(session) -> list[tuple]:
    return [tuple(r) for r in session.execute(text(f"SELECT id, stage, closed_at, {DERIVED} FROM leads ORDER BY id"))]


def stored_as_rescored(session) -> list[tuple]:
    """Every stored lead's row, after asserting that rescoring and reassessing each lead alone would
    store exactly the same."""
    imported = stored_leads(session)
    every = [row[0] for row in imported]
    rescore_leads_in_transaction(session, every, NOW)
    reassess_risk_in_transaction(session, every, NOW)
    session.flush()
    assert stored_leads(session) == imported
    return imported


def a_team_with_history(session) -> dict[str, int]:
    """Leads whose scores and risk depend on their activities, stage and dates."""
    keen = make_lead(session, "Keen Buyer", now=NOW, stage=Stage.QUALIFIED, company_size=20,
                     activities=[(ActivityKind.PRICING_REQUEST, timedelta(hours=3)),
                                 (ActivityKind.EMAIL_RECEIVED, timedelta(days=2))])
    stalled = make_lead(session, "Stalled Deal", now=NOW, stage=Stage.PROPOSAL, created_ago=timedelta(days=90),
                        activities=[(ActivityKind.CALL, timedelta(days=40))])
    closing = make_lead(session, "Closing Deal", now=NOW, stage=Stage.NEGOTIATION,
                        activities=[(ActivityKind.DEMO_REQUEST, timedelta(days=12)),
                                    (ActivityKind.MEETING, timedelta(days=3))])
    won = make_lead(session, "Won Before", now=NOW, stage=Stage.WON,
                    activities=[(ActivityKind.PRICING_PAGE_VISIT, timedelta(days=20))])
    log_activity(session, lead_id=keen.id, kind=ActivityKind.EMAIL_RECEIVED, now=NOW,
                 occurred_at=NOW - timedelta(hours=1), body="This is terrible, we are very unhappy and cancel.")
    session.commit()
    return {"keen": keen.id, "stalled": stalled.id, "closing": closing.id, "won": won.id}


def test_what_an_import_stores_is_what_rescoring_and_reassessing_would_store(session, tmp_path):
    ids = a_team_with_history(session)
    rows = [
        ["", "keen.buyer@example.com", "400", "", "", "", "gold"],  # bigger company: a higher score
        ["", "stalled.deal@example.com", "", "", "Negotiation", "", ""],  # moved: no longer stalled
        ["", "closing.deal@example.com", "", "", "Won", "2026-11-10", ""],  # closed at a date: score then
        ["", "won.before@example.com", "", "", "Qualified", "", ""],  # reopened
        ["New Won", "new.won@example.com", "900", "Referral", "Won", "2026-11-01", "silver"],
        ["New Open", "new.open@example.com", "5", "Website", "Proposal", "", ""],
    ]
    summary = import_file(session, write_csv(tmp_path / "crm.csv", rows), MAPPING, now=NOW)
    assert (summary.created, summary.updated) == (2, 4)
    imported = stored_as_rescored(session)
    by_id = {row[0]: row for row in imported}
    assert by_id[ids["stalled"]][1] == "negotiation"
    closing, reopened = by_id[ids["closing"]], by_id[ids["won"]]
    assert (closing[1], closing[8]) == ("won", None) and closing[7] is not None  # closed: a score then, no risk
    assert reopened[2] is None and reopened[8] is not None  # reopened: open again, at risk or not
    assert by_id[ids["keen"]][3] > 0


class RubricInPython(RuleBasedScoringEngine):
    """The rubric, but not the rubric itself: rescoring with it takes the lead-by-lead Python path."""


def test_with_the_rubric_matched_leads_derived_in_the_database_hold_what_python_scoring_gives(session, tmp_path):
    """With the rules, an import scores and assesses its changed matched leads in SQL (derive.py); each
    must hold exactly what the engine and the risk rules in Python give it afterwards, including a reply
    stored without its tone (scored and kept, as the Python path does), a deal the file closes (its score
    at close from the activities before) and a deal it reopens."""
    ids = a_team_with_history(session)
    session.execute(text("UPDATE activities SET sentiment = NULL WHERE lead_id = :id AND kind = 'email_received'"),
                    {"id": ids["keen"]})
    session.commit()
    rows = [
        ["", "keen.buyer@example.com", "400", "", "", "", "gold"],
        ["", "stalled.deal@example.com", "", "", "Negotiation", "", ""],
        ["", "closing.deal@example.com", "", "", "Won", "2026-11-10", ""],
        ["", "won.before@example.com", "", "", "Qualified", "", ""],
    ]
    summary = import_file(session, write_csv(tmp_path / "crm.csv", rows), MAPPING, now=NOW)
    assert summary.updated == 4
    imported = stored_leads(session)
    unscored = session.execute(text("SELECT count(*) FROM activities WHERE lead_id = :id AND sentiment IS NULL "
                                    "AND kind = 'email_received' AND btrim(body) <> ''"), {"id": ids["keen"]}).scalar_one()
    assert unscored == 0  # the reply's tone was scored and kept
    every = [row[0] for row in imported]
    rescore_leads_in_transaction(session, every, NOW, engine=RubricInPython())
    reassess_risk_in_transaction(session, every, NOW)
    session.flush()
    assert stored_leads(session) == imported
    keen = next(row for row in imported if row[0] == ids["keen"])
    assert any("Negative reply" in reason["text"] for reason in keen[10])  # the reply's tone counted


def test_a_changed_lead_is_written_once_with_its_data_score_and_risk(session, tmp_path):
    for i in range(6):
        make_lead(session, f"Stored Person {i}", now=NOW, source=Source.REFERRAL,
                  activities=[(ActivityKind.EMAIL_RECEIVED, timedelta(days=i + 1))])
    rows = [["", f"stored.person.{i}@example.com", str(100 * i + 60), "", "Contacted", "", ""] for i in range(6)]
    rows += [["", "stored.person.0@nowhere.example", "", "Website", "", "", ""]]  # one new lead
    updates = "SELECT n_tup_upd, n_tup_ins FROM pg_stat_xact_user_tables WHERE relname = 'leads'"
    before = session.execute(text(updates)).one()
    summary = import_file(session, write_csv(tmp_path / "crm.csv", rows), MAPPING, now=NOW)
    after = session.execute(text(updates)).one()
    assert (summary.created, summary.updated) == (1, 6)
    assert (after.n_tup_upd - before.n_tup_upd, after.n_tup_ins - before.n_tup_ins) == (6, 1)
    moved = session.execute(text("SELECT count(*) FROM leads WHERE stage = 'contacted' AND risk_at = :now "
                                 "AND scored_at = :now"), {"now": NOW}).scalar_one()
    assert moved == 6


def test_a_file_repeating_an_email_far_down_names_the_first_row(tmp_path, monkeypatch):
    from crm_app.services.importing import keys

    monkeypatch.setattr(keys, "MERGE_EVERY", 7)  # the repeat is found in the merged, sorted keys
    rows = [[f"P{i}", f"p{i}@example.com", "", "Website", "", "", ""] for i in range(40)]
    rows.append(["Again", "P3@EXAMPLE.COM", "", "Website", "", "", ""])
    report = validate_file(write_csv(tmp_path / "twice.csv", rows), MAPPING, now=NOW)
    assert [(e.row, e.message) for e in report.errors] == [
        (41, "Same email as row 4: a lead appears once per file.")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=4), max_size=300), st.integers(min_value=1, max_value=40))
def test_first_rows_say_what_a_dict_says(keys, merge_every):
    index, first = FirstRows(merge_every), {}
    for row, key in enumerate(keys, start=1):
        assert index.first(key, row) == first.setdefault(key, row)
    assert len(index) == len(first)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.text(max_size=3), max_size=30), max_size=12), st.integers(min_value=1, max_value=40))
def test_all_different_says_what_a_set_says(chunks, merge_every):
    values, seen = AllDifferent(merge_every), []
    for chunk in chunks:
        values.add_many(chunk)
        seen += chunk
    assert values.holds() == (len(set(seen)) == len(seen))


def test_new_leads_sharing_facts_are_derived_once_and_each_stores_what_rescoring_would(session, tmp_path):
    """New leads are scored and assessed once per distinct facts, then joined back to their rows: each
    must still hold what rescoring and reassessing it alone stores, including rows whose facts differ
    only by a blank, a date, or a custom value written 1 or 1.0 (kept apart as the model reads them)."""
    sizes, stages = ["", "5", "900"], ["", "Won", "Proposal", "Lost"]
    plans, closed = ["", "gold", "1", "1.0"], ["", "2026-11-01", "2026-11-02"]
    rows = []
    for i in range(96):  # every row's facts are shared with at least one other row
        n = i % 48
        rows.append([f"Person {i}", f"person.{i}@example.com", sizes[n % 3], ["Referral", "Website"][n // 24],
                     stages[n % 4], closed[(n // 4) % 3], plans[(n // 12) % 4]])
    summary = import_file(session, write_csv(tmp_path / "crm.csv", rows), MAPPING, now=NOW)
    assert summary.created == 96
    facts = session.execute(text("SELECT count(DISTINCT (company_size, source, custom_fields::text, stage, "
                                 "stage_entered_at, created_at)) FROM leads")).scalar_one()
    assert 1 < facts < 96
    imported = stored_as_rescored(session)
    plans_stored = {r[0] for r in session.execute(text("SELECT custom_fields->>'Plan' FROM leads"))}
    assert {"1", "1.0", "gold", None} <= plans_stored
