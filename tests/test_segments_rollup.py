"""Segment insights from their rollup (migration 0039) count what the scan of closed leads and their
activities counted (tests/analytics_reference.segment_counts), on generated teams and histories:
several owners and the unassigned pool, company sizes, custom fields, activities of every kind with
and without plays; then the writes that must keep the per-lead counts and the rollup right in their
own transaction: activities added one and many at a time, moved to another lead, changed in kind or
play, deleted; leads closed, reopened, reassigned, re-dated, given other fields or sources, deleted
with their activities; a user's deletion; a TRUNCATE of activities.

Compared for the whole team and each rep, for every period the page offers at a "now" that is not
midnight, as the tables' owner and under row-level security (a rep and a manager acting)."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlmodel import Session

from crm_app.domain import CONTENT_READ_KINDS, ActivityKind, Play
from crm_app.services.analytics import AnalyticsFilter
from crm_app.services.leads import move_lead_to_stage
from crm_app.services.segments import segment_counts, segment_insights
from tests import analytics_reference as reference
from tests.factories import acting
from tests.test_analytics_rollup import NOW, STAGES, _filters, _random_leads, team  # noqa: F401 (fixture)

KINDS = [k.value for k in ActivityKind]
FIELDS = [{}, {"industry": "Retail"}, {"industry": "Software", "country": "Germany"}, {"industry": ""},
          {"notes": "x" * 61, "region": "EMEA"}, {"source_detail": "Google", "industry": "Software"}]


def _same_counts(session: Session, flt: AnalyticsFilter, label: str, min_support: int) -> None:
    got = sorted(map(tuple, segment_counts(session, flt=flt, min_support=min_support)), key=repr)
    want = sorted(reference.segment_counts(session, flt=flt, min_support=min_support), key=repr)
    assert got == want, label
    insights = segment_insights(session, flt=flt, min_support=min_support)
    assert (insights.closed, insights.won) == next((c, w) for s, t, c, w in want if s is None and t is None), label


def _compare_everything(session: Session, team: dict, rng: random.Random) -> None:
    now = NOW + timedelta(minutes=rng.randint(0, 600))
    support = rng.choice([1, 2, 3])
    # Every kind of trait is there to compare.
    traits = {t.partition(":")[0] for _, t, _, _ in reference.segment_counts(session, flt=AnalyticsFilter(), min_support=1) if t}
    with_activity = session.execute(text("SELECT EXISTS (SELECT 1 FROM activities)")).scalar()
    assert traits == ({"size", "field", "play", "read", "engaged"} if with_activity else {"size", "field"})
    for label, flt in _filters([None, *team["reps"]], now):
        _same_counts(session, flt, label, support)
    rep = rng.choice(team["rep_users"])
    for user, who in ((rep, "rep"), (team["manager_user"], "manager")):
        with acting(session, user) as db:
            for label, flt in _filters([None, user.id], now)[:: 3 if who == "manager" else 1]:
                _same_counts(db, flt, f"as {who}: {label}", support)


def _random_activity(rng: random.Random, lead_id: int) -> dict:
    play = rng.choice([None, None, *Play])
    if play is None:
        kind = rng.choice(KINDS)
    else:
        kind = rng.choice([*play.kinds, *(CONTENT_READ_KINDS if play.is_content else ())]).value
    return {"lead": lead_id, "kind": kind, "play": play and play.value,
            "at": NOW - timedelta(days=rng.uniform(0, 400))}


def _add_activities(session: Session, rng: random.Random, lead_ids: list[int], count: int) -> None:
    rows = [_random_activity(rng, rng.choice(lead_ids)) for _ in range(count)]
    while rows:
        size = rng.choice([1, 5, 60])
        batch, rows = rows[:size], rows[size:]
        session.execute(text(
            "INSERT INTO activities (lead_id, kind, play, occurred_at) "
            "SELECT (r->>'lead')::int, r->>'kind', r->>'play', (r->>'at')::timestamptz "
            "FROM jsonb_array_elements(CAST(:rows AS jsonb)) r"), {"rows": json.dumps(batch, default=str)})


def _shape_leads(session: Session, rng: random.Random, lead_ids: list[int]) -> None:
    for lead_id in lead_ids:
        session.execute(text("UPDATE leads SET company_size = :size, custom_fields = CAST(:fields AS jsonb) WHERE id = :id"),
                        {"id": lead_id, "size": rng.choice([None, 5, 50, 51, 200, 999, 5000]),
                         "fields": json.dumps(rng.choice(FIELDS))})


@pytest.mark.parametrize("seed", range(3))
def test_segment_rollup_counts_equal_the_scan_through_every_kind_of_write(session: Session, team: dict, seed: int) -> None:
    rng = random.Random(seed)
    lead_ids = _random_leads(session, rng, team, 70)
    _shape_leads(session, rng, lead_ids)
    _add_activities(session, rng, lead_ids, 500)
    _compare_everything(session, team, rng)

    # Moves (closing and reopening), reassignment, sizes and fields, sources, creation times.
    for lead_id in rng.sample(lead_ids, 15):
        move_lead_to_stage(session, lead_id=lead_id, to_stage=rng.choice(STAGES),
                           now=NOW + timedelta(minutes=rng.randint(1, 300)))
    session.execute(text("UPDATE leads SET owner_id = :o WHERE id = ANY(:ids)"),
                    {"o": rng.choice(team["reps"]), "ids": rng.sample(lead_ids, 15)})
    _shape_leads(session, rng, rng.sample(lead_ids, 10))
    session.execute(text("UPDATE leads SET source = 'referral' WHERE id = ANY(:ids)"), {"ids": rng.sample(lead_ids, 5)})
    session.execute(text("UPDATE leads SET created_at = created_at - interval '3 days 5 hours', dates_known = NOT dates_known "
                         "WHERE id = ANY(:ids)"), {"ids": rng.sample(lead_ids, 6)})
    session.execute(text("UPDATE leads SET last_activity_at = :t"), {"t": NOW})  # nothing the facts read
    # Activities moved to another lead, changed in kind and play, deleted, added.
    ids = session.execute(text("SELECT id FROM activities WHERE lead_id = ANY(:l) ORDER BY id"), {"l": lead_ids}).scalars().all()
    session.execute(text("UPDATE activities SET lead_id = :to WHERE id = ANY(:ids)"),
                    {"to": rng.choice(lead_ids), "ids": rng.sample(ids, 30)})
    session.execute(text("UPDATE activities SET kind = 'note', play = NULL WHERE id = ANY(:ids)"), {"ids": rng.sample(ids, 30)})
    session.execute(text("UPDATE activities SET kind = 'email_sent', play = 'nurture_sequence' WHERE id = ANY(:ids)"),
                    {"ids": rng.sample(ids, 30)})
    session.execute(text("DELETE FROM activities WHERE id = ANY(:ids)"), {"ids": rng.sample(ids, 40)})
    _add_activities(session, rng, lead_ids, 80)
    session.flush()
    _compare_everything(session, team, rng)

    # Leads deleted with their activities (a purge), a user deleted (owners to NULL).
    session.execute(text("DELETE FROM leads WHERE id = ANY(:ids)"), {"ids": rng.sample(lead_ids, 8)})
    session.execute(text("DELETE FROM users WHERE id = :id"), {"id": team["reps"][2]})
    team = {**team, "reps": team["reps"][:2], "rep_users": team["rep_users"][:2]}
    _compare_everything(session, team, rng)
    # Nothing left over of a deleted lead.
    assert session.execute(text("SELECT count(*) FROM lead_activity_counts c WHERE NOT EXISTS "
                                "(SELECT 1 FROM leads l WHERE l.id = c.lead_id)")).scalar_one() == 0


def test_a_truncate_of_activities_leaves_the_counts_of_leads_without_activity(session: Session, team: dict) -> None:
    rng = random.Random(5)
    lead_ids = _random_leads(session, rng, team, 40)
    _shape_leads(session, rng, lead_ids)
    _add_activities(session, rng, lead_ids, 200)
    session.execute(text("TRUNCATE activities"))
    assert session.execute(text("SELECT count(*) FROM lead_activity_counts")).scalar_one() == 0
    _compare_everything(session, team, rng)
    session.execute(text("TRUNCATE leads CASCADE"))
    assert session.execute(text("SELECT count(*) FROM segment_rollup")).scalar_one() == 0


def test_a_rep_reads_only_the_segment_rows_of_their_own_and_unowned_leads(session: Session, team: dict) -> None:
    rng = random.Random(7)
    lead_ids = _random_leads(session, rng, team, 40)
    _add_activities(session, rng, lead_ids, 200)
    everyone = set(session.execute(text("SELECT DISTINCT owner_id FROM segment_rollup")).scalars())
    assert len(everyone - {None}) >= 2
    rep = team["rep_users"][0]
    with acting(session, rep) as db:
        assert set(db.execute(text("SELECT DISTINCT owner_id FROM segment_rollup")).scalars()) <= {rep.id, None}
        mine = set(db.execute(text("SELECT id FROM leads")).scalars())
        assert set(db.execute(text("SELECT lead_id FROM lead_activity_counts")).scalars()) <= mine
        for table in ("segment_rollup", "lead_activity_counts"):
            assert db.execute(text(f"SELECT has_table_privilege('{table}', 'INSERT, UPDATE, DELETE')")).scalar() is False


@pytest.mark.parametrize("day", [1, 2, 15, 16, 27, 30])
def test_periods_ending_on_any_day_of_the_month_read_the_figures_of_the_scans(session: Session, team: dict,
                                                                               day: int) -> None:
    """A period's part months are read from their day rows or as their month row less the days outside
    them, whichever reads fewer days (services/analytics_rollup.py): a period ending early, mid or late
    in a month, starting on either side of its month's middle, gives every figure the scans give."""
    from tests.test_analytics_rollup import _same_figures

    rng = random.Random(day)
    lead_ids = _random_leads(session, rng, team, 70)
    _shape_leads(session, rng, lead_ids)
    _add_activities(session, rng, lead_ids, 300)
    session.flush()
    now = NOW.replace(day=day)
    for label, flt in _filters([None, team["reps"][0]], now):
        _same_figures(session, flt, f"day {day} {label}")
        _same_counts(session, flt, f"day {day} {label}", 1)
    with acting(session, team["rep_users"][1]) as db:
        for label, flt in _filters([team["reps"][1]], now):
            _same_figures(db, flt, f"as rep, day {day} {label}")
            _same_counts(db, flt, f"as rep, day {day} {label}", 2)
