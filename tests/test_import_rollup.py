"""An import keeps the analytics rollup, each lead's stage-history summary and the stay stored on each
stage change exactly as a rebuild from the leads and their stage changes would have them (the triggers
of migrations 0031-0037 move them by what the import's statements changed); an import that changes
nothing leaves them as they were, row for row."""

from __future__ import annotations

import csv
import importlib.util
import random
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from crm_app.domain import Source, Stage
from crm_app.services.importing import ImportMapping, import_file
from crm_app.settings import REPO_ROOT
from tests.test_analytics_rollup import NOW, _random_history, _random_leads, team  # noqa: F401 (fixture)

HEADER = ["Name", "Email", "Source", "Stage", "Created", "Closed", "Value"]
MAPPING = ImportMapping(columns={"Name": "name", "Email": "email", "Source": "source", "Stage": "stage",
                                 "Created": "created_at", "Closed": "closed_at", "Value": "deal_value"},
                        date_format="iso", defaults={"source": "website"})
STAGES = [s.value for s in Stage]
SOURCES = [s.value for s in Source]
WORDS = {"referral": "Referral", "paid_search": "Google Ads", "website": "website"}  # the file's own words


def _rollup15():
    """Migration 0031's module: its SQL of the rollup's facts and of the stage history, to rebuild them."""
    path = REPO_ROOT / "alembic" / "versions" / "20261203_0031_rollup15.py"
    spec = importlib.util.spec_from_file_location("rollup15_for_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stored(session) -> dict[str, list[tuple]]:
    """The rollup (rows whose sums are all zero count as absent), the summaries and the stored stays."""
    measures = "n, score_sum, value_sum, days_sum, days_n"
    return {
        "rollup": [tuple(r) for r in session.execute(text(
            f"SELECT kind, monthly, day, dates_known, owner_id, k1, k2, k3, {measures} FROM analytics_rollup "
            f"WHERE (n, score_sum, value_sum, days_sum, days_n) <> (0, 0, 0, 0, 0) "
            "ORDER BY kind, monthly, day, dates_known, owner_id, k1, k2, k3"))],
        "summaries": [tuple(r) for r in session.execute(text(
            "SELECT lead_id, furthest, lost_from_stage, stay_counts, stay_days FROM lead_stage_summaries "
            "ORDER BY lead_id"))],
        "stays": [tuple(r) for r in session.execute(text(
            "SELECT id, previous_stage, days_in_previous_stage FROM stage_changes ORDER BY id"))],
    }


def _rebuilt(session) -> dict[str, list[tuple]]:
    """What migration 0031's backfill computes from the leads and their stage changes alone: the
    summaries and stays from scratch (the stored ones wiped first), then the rollup by grouping every
    lead's facts. Done inside a savepoint that is rolled back."""
    rollup15 = _rollup15()
    savepoint = session.begin_nested()
    session.execute(text("DELETE FROM lead_stage_summaries"))
    session.execute(text("UPDATE stage_changes SET previous_stage = NULL, days_in_previous_stage = NULL"))
    session.execute(text(rollup15.history("SELECT id FROM public.leads", maintain=False)))
    session.execute(text("DELETE FROM analytics_rollup"))
    key, measures = rollup15.KEY, rollup15.MEASURES
    session.execute(text(
        f"INSERT INTO analytics_rollup ({key}, {', '.join(measures)}) "
        f"SELECT {key}, {', '.join(f'coalesce(sum({m}), 0)' for m in measures)} "
        f"FROM ({rollup15.by_grain(rollup15.facts('public.leads'), signed=False)}) d GROUP BY {key}"))
    rebuilt = _stored(session)
    savepoint.rollback()
    return rebuilt


def _closed(rng: random.Random, created):
    return min(created + timedelta(days=rng.uniform(0, 30)), NOW - timedelta(minutes=1))


def _file(path: Path, rng: random.Random, stored: list[tuple[int, str]], new: int) -> Path:
    """Rows for some stored leads (moved, closed, reopened, re-dated, re-sourced, or left as they are)
    and new leads with and without dates, in every stage."""
    rows = []
    for lead_id, email in stored:
        created = NOW - timedelta(days=rng.uniform(1, 400))
        stage = rng.choice(STAGES + [""])
        closed = _closed(rng, created) if stage in ("won", "lost") and rng.random() < 0.7 else None
        source = rng.choice(SOURCES + ["", "", "Referral", "Google Ads"])
        rows.append(["", email, WORDS.get(source, source), stage,
                     created.isoformat() if rng.random() < 0.3 else "", closed.isoformat() if closed else "",
                     str(rng.randint(0, 90) * 500) if rng.random() < 0.5 else ""])
    for i in range(new):
        dated = rng.random() < 0.7
        created = NOW - timedelta(days=rng.uniform(1, 400))
        stage = rng.choice(STAGES)
        closed = _closed(rng, created) if stage in ("won", "lost") and dated else None
        rows.append([f"New Person {i}", f"new.person.{i}@file.example", rng.choice(["Referral", "Google Ads", "website"]),
                     stage, created.isoformat() if dated else "", closed.isoformat() if closed else "",
                     str(rng.randint(0, 90) * 500)])
    rng.shuffle(rows)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


@pytest.mark.parametrize("seed", range(2))
def test_an_import_keeps_the_rollup_as_a_rebuild_has_it_and_one_changing_nothing_keeps_it_as_it_was(
        session, team, tmp_path, seed):  # noqa: F811 (the fixture imported above)
    rng = random.Random(seed)
    lead_ids = _random_leads(session, rng, team, 80)
    _random_history(session, rng, lead_ids)
    session.execute(text("UPDATE leads SET email = 'stored.' || id || '@file.example' WHERE id = ANY(:ids)"),
                    {"ids": lead_ids})
    session.commit()
    assert _stored(session) == _rebuilt(session)

    matched = [(i, f"STORED.{i}@file.example") for i in rng.sample(lead_ids, 50)]  # emails match in any case
    path = _file(tmp_path / "mixed.csv", rng, matched, new=40)
    summary = import_file(session, path, MAPPING, now=NOW)
    assert summary.created == 40 and summary.updated > 25
    after = _stored(session)
    assert after == _rebuilt(session)

    # The same file again: every row matches a lead it no longer changes.
    rollup_rows = "SELECT r::text FROM analytics_rollup r ORDER BY r::text"
    rollup_before = session.execute(text(rollup_rows)).scalars().all()
    again = import_file(session, path, MAPPING, now=NOW + timedelta(hours=2))
    assert (again.created, again.updated, again.skipped) == (0, 0, 90)
    assert session.execute(text(rollup_rows)).scalars().all() == rollup_before
    assert _stored(session) == after


def test_an_import_writes_each_stage_change_once_with_its_stay(session, team, tmp_path):  # noqa: F811
    """The usual import (moves at the import moment, new leads created before they closed): each stage
    change is inserted with the stay it ends, so the history trigger rewrites none of them (it rewrote
    every move once: a second write of ~54,000 rows at 100,000 rows into 1M), and the stays are a
    rebuild's. Leads with a recorded history and leads with none (their stay runs from creation)."""
    rng = random.Random(7)
    lead_ids = _random_leads(session, rng, team, 40)
    session.execute(text("UPDATE leads SET email = 'stored.' || id || '@file.example', stage = 'contacted', "
                         "closed_at = NULL, stage_entered_at = created_at + interval '1 day' WHERE id = ANY(:ids)"),
                    {"ids": lead_ids})
    session.execute(text(  # half arrive at creation and move to "contacted" a day later; half have no history
        "INSERT INTO stage_changes (lead_id, from_stage, to_stage, changed_at) "
        "SELECT id, NULL, 'new', created_at FROM leads WHERE id = ANY(:ids) "
        "UNION ALL SELECT id, 'new', 'contacted', created_at + interval '1 day' FROM leads WHERE id = ANY(:ids)"),
        {"ids": lead_ids[:20]})
    session.execute(text(
        "CREATE TABLE test_stay_rewrites (id int); "
        "CREATE FUNCTION test_count_stay_rewrites() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN INSERT INTO test_stay_rewrites VALUES (NEW.id); RETURN NULL; END $$; "
        "CREATE TRIGGER test_count_stay_rewrites AFTER UPDATE ON stage_changes FOR EACH ROW "
        "EXECUTE FUNCTION test_count_stay_rewrites()"))
    session.commit()
    try:
        rows = [["", f"stored.{i}@file.example", "", "qualified", "", "", ""] for i in lead_ids]
        rows += [[f"New {i}", f"new.{i}@file.example", "website", rng.choice(STAGES),
                  (NOW - timedelta(days=30)).isoformat(), (NOW - timedelta(days=3)).isoformat(), "100"]
                 for i in range(15)]
        rows += [[f"Undated {i}", f"undated.{i}@file.example", "website", rng.choice(STAGES), "", "", ""]
                 for i in range(5)]
        path = tmp_path / "moves.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([HEADER] + rows)
        summary = import_file(session, path, MAPPING, now=NOW)
        assert (summary.created, summary.updated) == (20, 40)
        assert session.execute(text("SELECT count(*) FROM test_stay_rewrites")).scalar_one() == 0
        moves = session.execute(text(
            "SELECT count(*) FROM stage_changes WHERE lead_id = ANY(:ids) AND to_stage = 'qualified' "
            "AND previous_stage = 'contacted' AND days_in_previous_stage > 0"), {"ids": lead_ids}).scalar_one()
        assert moves == 40
        assert _stored(session) == _rebuilt(session)
    finally:
        session.rollback()
        session.execute(text("DROP TRIGGER test_count_stay_rewrites ON stage_changes; "
                             "DROP FUNCTION test_count_stay_rewrites(); DROP TABLE test_stay_rewrites"))
        session.commit()
