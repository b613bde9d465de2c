"""The analytics rollup (migration 0031) gives the numbers the scans gave (tests/analytics_reference.py),
on randomly generated teams and histories: several owners and the unassigned pool, sources with the
file's own words in mixed case, leads imported without dates, moves in and out of every stage (some
dated before the lead's creation, some with no recorded arrival), then the writes that must keep the
rollup right in their own transaction: moves through the service, bulk reassignment, a user's deletion,
rescoring, a changed creation time, deleted stage changes, deleted leads, and a TRUNCATE.

Compared for the whole team and each rep, for every period the page offers at a "now" that is not
midnight, both as the tables' owner and under row-level security (a rep and a manager acting)."""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlmodel import Session

from crm_app.domain import Source, Stage
from crm_app.services import analytics
from crm_app.services.analytics import PERIODS, AnalyticsFilter, period_filter
from crm_app.services.leads import move_lead_to_stage
from crm_app.services import lost_reasons
from crm_app.services.lost_reasons import NO_REASON
from tests import analytics_reference as reference
from tests.factories import acting, make_user

NOW = datetime(2026, 11, 12, 15, 37, 12, 345678, tzinfo=timezone.utc)
DAY = timedelta(days=1)
STAGES = [s.value for s in Stage]
DETAILS = [None, "", "Google", "google", "GOOGLE ads", "Olark Chat", "olark chat"]
REASONS = [None, "Price", "Timing", "Went with a competitor"]


def _close(a, b, path="") -> None:
    """Equal, floats to 12 significant digits (an average of numeric sums taken in another order may
    differ in its last binary digit; every label is compared exactly)."""
    if isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12), f"{path}: {a} != {b}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{path}: {a.keys()} != {b.keys()}"
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path}: {len(a)} rows != {len(b)} rows\n{a}\n{b}"
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def _same_figures(session: Session, flt: AnalyticsFilter, label: str) -> None:
    for name in ("source_roi", "tier_counts", "weekly_tiers", "tier_conversion", "funnel", "undated_leads"):
        got = getattr(analytics, name)(session, flt=flt)
        want = getattr(reference, name)(session, flt=flt)
        as_data = (lambda rows: [asdict(r) for r in rows]) if isinstance(got, list) else (lambda v: v)
        _close(as_data(got), as_data(want), f"{label} {name}")
    _close(sorted(map(tuple, lost_reasons.breakdown_rows(session, flt=flt))),
           sorted(reference.lost_breakdown(session, flt=flt, none=NO_REASON)), f"{label} lost reasons")


def _filters(owners: list[int | None], now: datetime) -> list[tuple[str, AnalyticsFilter]]:
    out = []
    for owner in owners:
        for period in PERIODS:
            out.append((f"owner={owner} period={period}", period_filter(period, now=now, owner_id=owner)))
    # A period of less than a day, one ending at midnight and one with only an end.
    out.append(("hours", AnalyticsFilter(created_from=now - timedelta(hours=5), created_to=now)))
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    out.append(("to midnight", AnalyticsFilter(created_from=midnight - 40 * DAY, created_to=midnight)))
    out.append(("only an end", AnalyticsFilter(created_to=now - 20 * DAY)))
    return out


def _compare_everything(session: Session, team: dict, rng: random.Random) -> None:
    owners = [None, *team["reps"]]
    now = NOW + timedelta(minutes=rng.randint(0, 600))
    for label, flt in _filters(owners, now):
        _same_figures(session, flt, label)
    # Under row-level security: a rep sees their own and unowned leads, a manager everything.
    rep = rng.choice(team["rep_users"])
    for user, who in ((rep, "rep"), (team["manager_user"], "manager")):
        with acting(session, user) as db:
            for label, flt in _filters([None, user.id], now)[:: 3 if who == "manager" else 1]:
                _same_figures(db, flt, f"as {who}: {label}")


def _random_leads(session: Session, rng: random.Random, team: dict, count: int) -> list[int]:
    """Leads written as an import or the REST API would: one INSERT of many rows."""
    rows = []
    for _ in range(count):
        stage = rng.choice(STAGES)
        created = NOW - timedelta(days=rng.uniform(0, 420))
        if rng.random() < 0.15:  # right at a period's edge, or at midnight
            created = rng.choice([NOW - 30 * DAY, NOW - 90 * DAY + timedelta(seconds=1),
                                  (NOW - 30 * DAY).replace(hour=0, minute=0, second=0, microsecond=0)])
        closed = created + timedelta(days=rng.uniform(0, 60)) if stage in ("won", "lost") else None
        if closed is not None and rng.random() < 0.1:
            closed = None
        score = rng.randint(0, 100)
        detail = rng.choice(DETAILS)
        rows.append({
            "name": f"Lead {rng.random():.8f}", "source": rng.choice(list(Source)).value, "stage": stage,
            "owner": rng.choice(team["reps"] + [None]), "value": round(rng.uniform(0, 90_000), 2),
            "created": created, "closed": closed, "score": score,
            "tier": "hot" if score >= 70 else "warm" if score >= 40 else "cold",
            "at_close": rng.choice([None, rng.randint(0, 100)]) if stage in ("won", "lost") else None,
            "fields": json.dumps({} if detail is None else {"source_detail": detail, "industry": "Retail"}),
            "dated": rng.random() > 0.12, "reason": rng.choice(REASONS) if stage == "lost" else None,
        })
    ids = session.execute(text(
        """
        INSERT INTO leads (name, source, stage, owner_id, deal_value, created_at, updated_at, stage_entered_at,
                           closed_at, score, tier, score_at_close, custom_fields, dates_known, lost_reason)
        SELECT r->>'name', r->>'source', r->>'stage', (r->>'owner')::int, (r->>'value')::numeric,
               (r->>'created')::timestamptz, (r->>'created')::timestamptz, (r->>'created')::timestamptz,
               (r->>'closed')::timestamptz, (r->>'score')::int, r->>'tier', (r->>'at_close')::int,
               (r->>'fields')::jsonb, (r->>'dated')::boolean, r->>'reason'
          FROM jsonb_array_elements(CAST(:rows AS jsonb)) r
        RETURNING id
        """), {"rows": json.dumps(rows, default=str)}).scalars().all()
    return list(ids)


def _random_history(session: Session, rng: random.Random, lead_ids: list[int]) -> None:
    """Stage changes in a few multi-row statements and some single ones: most leads arrive (from_stage
    NULL) at creation and walk on; some have no recorded arrival; a few are dated before creation."""
    changes = []
    for lead_id in lead_ids:
        created = session.execute(text("SELECT created_at FROM leads WHERE id = :id"), {"id": lead_id}).scalar_one()
        at, stage = created, None
        if rng.random() < 0.75:
            changes.append((lead_id, None, "new", at))
            stage = "new"
        elif rng.random() < 0.3:
            at = created - timedelta(days=rng.uniform(0, 5))
        for _ in range(rng.randint(0, 5)):
            to = rng.choice(STAGES)
            at = at + timedelta(days=rng.choice([0, rng.uniform(0, 40)]))
            changes.append((lead_id, stage if stage is not None else rng.choice(STAGES[:3] + [None]), to, at))
            stage = to
    rng.shuffle(changes)
    while changes:
        size = rng.choice([1, 1, 7, 40])
        batch, changes = changes[:size], changes[size:]
        session.execute(text(
            "INSERT INTO stage_changes (lead_id, from_stage, to_stage, changed_at) "
            "SELECT (c->>0)::int, c->>1, c->>2, (c->>3)::timestamptz FROM jsonb_array_elements(CAST(:c AS jsonb)) c"),
            {"c": json.dumps(batch, default=str)})


@pytest.fixture
def team(session: Session) -> dict:
    reps = [make_user(session, f"{name} Rollup") for name in ("Ada", "Bo", "Cy")]
    manager = make_user(session, "Mia Rollup", role="manager")
    return {"reps": [r.id for r in reps], "rep_users": reps, "manager_user": manager}


@pytest.mark.parametrize("seed", range(3))
def test_rollup_figures_equal_the_scans_through_every_kind_of_write(session: Session, team: dict, seed: int) -> None:
    rng = random.Random(seed)
    lead_ids = _random_leads(session, rng, team, 70)
    _random_history(session, rng, lead_ids)
    _compare_everything(session, team, rng)

    # Moves through the service, as the board makes them (stage, closing, the stage change).
    for lead_id in rng.sample(lead_ids, 12):
        move_lead_to_stage(session, lead_id=lead_id, to_stage=rng.choice(STAGES),
                           now=NOW + timedelta(minutes=rng.randint(1, 300)))
    # A bulk reassignment, rescoring in one statement, a few creation times and source words changed.
    session.execute(text("UPDATE leads SET owner_id = :o WHERE id = ANY(:ids)"),
                    {"o": rng.choice(team["reps"]), "ids": rng.sample(lead_ids, 15)})
    session.execute(text("UPDATE leads SET score = (score * 7 + 13) % 101, "
                         "tier = CASE WHEN (score * 7 + 13) % 101 >= 70 THEN 'hot' "
                         "WHEN (score * 7 + 13) % 101 >= 40 THEN 'warm' ELSE 'cold' END, "
                         "score_at_close = CASE WHEN stage IN ('won', 'lost') THEN score END"))
    session.execute(text("UPDATE leads SET created_at = created_at - interval '3 days 5 hours', dates_known = NOT dates_known, "
                         "custom_fields = jsonb_build_object('source_detail', 'Google') WHERE id = ANY(:ids)"),
                    {"ids": rng.sample(lead_ids, 6)})
    session.flush()
    _compare_everything(session, team, rng)

    # Deleted stage changes (a correction), deleted leads (a purge), a user deleted (owners to NULL).
    session.execute(text("DELETE FROM stage_changes WHERE id IN (SELECT id FROM stage_changes WHERE lead_id = ANY(:ids) "
                         "ORDER BY id LIMIT 9)"), {"ids": lead_ids})
    session.execute(text("DELETE FROM leads WHERE id = ANY(:ids)"), {"ids": rng.sample(lead_ids, 8)})
    session.execute(text("DELETE FROM users WHERE id = :id"), {"id": team["reps"][2]})
    team = {**team, "reps": team["reps"][:2], "rep_users": team["rep_users"][:2]}
    _compare_everything(session, team, rng)


def test_the_stay_a_move_ended_is_stored_on_the_move(session: Session, team: dict) -> None:
    rep = team["reps"][0]
    lead_id = session.execute(text(
        "INSERT INTO leads (name, source, stage, owner_id, created_at, updated_at, stage_entered_at) "
        "VALUES ('Stay', 'referral', 'new', :o, :t, :t, :t) RETURNING id"), {"o": rep, "t": NOW - 10 * DAY}).scalar_one()
    move_lead_to_stage(session, lead_id=lead_id, to_stage=Stage.CONTACTED, now=NOW - 7 * DAY)
    move_lead_to_stage(session, lead_id=lead_id, to_stage=Stage.QUALIFIED, now=NOW - 4 * DAY - 12 * timedelta(hours=1))
    stays = session.execute(text("SELECT to_stage, previous_stage, days_in_previous_stage FROM stage_changes "
                                 "WHERE lead_id = :id ORDER BY changed_at"), {"id": lead_id}).all()
    # Created in New 10 days ago (no arrival recorded), 3 days there, then 2.5 days in Contacted.
    assert [(s.to_stage, s.previous_stage, float(s.days_in_previous_stage)) for s in stays] == [
        ("contacted", "new", 3.0), ("qualified", "contacted", 2.5)]


def test_a_rep_reads_only_the_rollup_rows_of_their_own_and_unowned_leads(session: Session, team: dict) -> None:
    rng = random.Random(7)
    _random_history(session, rng, _random_leads(session, rng, team, 30))
    everyone = set(session.execute(text("SELECT DISTINCT owner_id FROM analytics_rollup")).scalars())
    assert len(everyone - {None}) >= 2
    rep = team["rep_users"][0]
    with acting(session, rep) as db:
        assert set(db.execute(text("SELECT DISTINCT owner_id FROM analytics_rollup")).scalars()) <= {rep.id, None}
        refused = db.execute(text("SELECT has_table_privilege('analytics_rollup', 'INSERT, UPDATE, DELETE')")).scalar()
        assert refused is False
    with acting(session, team["manager_user"]) as db:
        assert set(db.execute(text("SELECT DISTINCT owner_id FROM analytics_rollup")).scalars()) == everyone


def test_a_truncate_empties_the_rollup(session: Session, team: dict) -> None:
    rng = random.Random(3)
    _random_history(session, rng, _random_leads(session, rng, team, 10))
    session.execute(text("TRUNCATE leads CASCADE"))
    assert session.execute(text("SELECT count(*) FROM analytics_rollup")).scalar_one() == 0
    assert session.execute(text("SELECT count(*) FROM lead_stage_summaries")).scalar_one() == 0
