"""A tier filter is read as the tier's range of scores (queries.tier_condition, migration 0042 dropped
ix_leads_tier_score): the Leads page, the board and the REST list show exactly the leads whose tier
it is, in the same order, for any scores, the tiers' edges included, as a rep under row-level
security and as a manager."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from crm_app.db.queries import LeadFilter, ranked_leads
from crm_app.services.lead_records import LeadQuery, list_leads
from crm_app.services.pipeline import BoardFilter, board_columns
from tests.conftest import NOW
from tests.factories import acting, make_lead, make_user

TIERS = ("hot", "warm", "cold")
_runs = itertools.count()


def _tier(score: int) -> str:
    return "hot" if score >= 70 else "warm" if score >= 40 else "cold"


# The tiers' edges, and any score.
a_score = st.one_of(st.sampled_from([0, 39, 40, 69, 70, 100]), st.integers(0, 100))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(a_score, st.booleans()), min_size=1, max_size=12))
def test_a_tier_filter_shows_the_leads_of_that_tier(session, leads):
    team = {}
    for name, role in (("Ria Rep", "rep"), ("Meg Manager", "manager")):
        email = f"{name.split()[0].lower()}@test.crm"
        found = session.execute(text("SELECT id FROM users WHERE email = :e"), {"e": email}).scalar()
        team[name.split()[0].lower()] = found or make_user(session, name, role).id
    run = next(_runs)
    for i, (score, hers) in enumerate(leads):
        lead = make_lead(session, f"Lead {run} {i}", now=NOW, owner=None)
        session.execute(text("UPDATE leads SET score = :s, tier = :t, owner_id = :o WHERE id = :id"),
                        {"s": score, "t": _tier(score), "o": team["ria"] if hers else None, "id": lead.id})
    session.flush()
    for user, owner_id in ((team["ria"], team["ria"]), (team["meg"], None)):
        with acting(session, user) as db:
            for tier in TIERS:
                # Every lead of the tier the user sees (examples pile up in the one database), in the
                # list's order.
                expected = db.execute(text(
                    "SELECT id, stage FROM leads WHERE tier = :t AND (CAST(:o AS integer) IS NULL OR owner_id = :o) "
                    "ORDER BY score DESC, id DESC"), {"t": tier, "o": owner_id}).all()
                rows, total = ranked_leads(db, LeadFilter(owner_id=owner_id, tier=tier), limit=10_000)
                assert [r.id for r in rows] == [r.id for r in expected]
                assert total == len(expected)
                cards = {c.stage: [card.id for card in c.cards] for c in board_columns(
                    db, flt=BoardFilter(owner_id=owner_id, tier=tier), now=NOW, limit=200)}
                for stage in {r.stage for r in expected}:
                    assert cards[stage] == [r.id for r in expected if r.stage == stage][:200]
                listed, _ = list_leads(db, LeadQuery(tier=tier, limit=100, owner="me" if owner_id else None),
                                       viewer_id=user)
                assert [r["id"] for r in listed] == [r.id for r in expected][:100]
