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
