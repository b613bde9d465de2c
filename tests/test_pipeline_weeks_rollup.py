"""Today's new leads per week (pipeline health) read from the analytics rollup equal the count over the
leads: weeks starting at UTC midnight, leads created at midnight, just before and after now, imported
without dates, owned and in the pool; for the team, each rep, and under row-level security."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import text
from sqlmodel import Session

from crm_app.services import pipeline_health
from crm_app.services.pipeline_health import WEEKS_SHOWN, _WEEKS_SQL, _week_counts, week_start
from tests.factories import acting
from tests.test_analytics_rollup import NOW, team  # noqa: F401 (fixture)


def _leads(session: Session, rng: random.Random, owners: list, now) -> None:
    origin = week_start(now)
    moments = [now, now - timedelta(microseconds=1), now + timedelta(microseconds=1), now + timedelta(hours=3),
               origin, origin - timedelta(microseconds=1), origin - timedelta(weeks=WEEKS_SHOWN - 1),
               origin - timedelta(weeks=WEEKS_SHOWN - 1, microseconds=1), now.replace(hour=0, minute=0)]
    for i in range(150):
        created = rng.choice(moments) if i < 30 else now - timedelta(days=rng.uniform(0, 60))
        session.execute(text(
            "INSERT INTO leads (name, source, stage, owner_id, created_at, updated_at, stage_entered_at, dates_known) "
            "VALUES (:n, 'website', 'new', :o, :t, :t, :t, :d)"),
            {"n": f"Week {i}", "o": rng.choice(owners), "t": created, "d": rng.random() > 0.1})


def _same(session: Session, owner, now, label: str) -> None:
    origin = week_start(now)
    since = origin - timedelta(weeks=WEEKS_SHOWN - 1)
    want = {r.week: r.count for r in session.execute(
        text(_WEEKS_SQL), {"owner_id": owner, "now": now, "origin": origin, "since": since})}
    got = _week_counts(session, owner_id=owner, now=now, origin=origin, since=since)
    assert got == want, label
    assert sum(want.values()) > 0, label


def test_weeks_from_the_rollup_equal_the_count_over_the_leads(session: Session, team: dict) -> None:
    rng = random.Random(4)
    now = NOW + timedelta(minutes=rng.randint(0, 600))
    _leads(session, rng, [None, *team["reps"]], now)
    for owner in (None, *team["reps"]):
        _same(session, owner, now, f"owner={owner}")
    with acting(session, team["rep_users"][0]) as db:
        _same(db, None, now, "rep, everyone visible")
        _same(db, team["reps"][0], now, "rep, own")
    with acting(session, team["manager_user"]) as db:
        _same(db, None, now, "manager")
    # The page's own figures come through it.
    health = pipeline_health.pipeline_health(session, owner_id=None, now=now)
    assert len(health.weeks) == WEEKS_SHOWN and sum(w.count for w in health.weeks) > 0
