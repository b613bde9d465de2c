"""Bulk UPDATEs of `leads`, of any columns the analytics rollup reads, alone and together, leave the rollup
exactly as a rebuild from the leads and their stage changes has it (the update trigger of migration
0043 works from the changed pairs: a score alone is one fact, the other kinds only where their inputs
moved).

A property test: random teams and histories (tests/test_analytics_rollup.py), then random statements
that each change a random subset of leads (a few, many, all; across owners and days) in a random set
of columns: score and tier as a rescore writes them (two UPDATEs in one statement, as
services/rules_sql.py does), score alone, owner, stage, creation, dates known, source and its detail,
value, close, score at close, lost reason, columns the rollup does not read, and ids (a row whose id
changed has no partner on the other side). After each, the rollup rows equal the rebuilt ones."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import text
from sqlmodel import Session

from tests.test_analytics_rollup import DETAILS, REASONS, STAGES, _random_history, _random_leads, team  # noqa: F401
from tests.test_import_rollup import _rebuilt, _stored

SOURCES = ["linkedin", "website", "referral", "webinar", "paid_search", "cold_outreach", "events"]
TIER_OF = "CASE WHEN {s} >= 70 THEN 'hot' WHEN {s} >= 40 THEN 'warm' ELSE 'cold' END"

# Each: a SET clause over the chosen leads, with its parameters drawn from rng.
CHANGES = {
    # The tier follows the score (ck_leads_tier_matches_score): a score alone moves within its tier.
    "score": lambda rng: ("score = CASE WHEN score >= 70 THEN 70 + (score - 70 + :sa) % 31 "
                          "WHEN score >= 40 THEN 40 + (score - 40 + :sa) % 30 ELSE (score + :sa) % 40 END",
                          {"sa": rng.randint(1, 29)}),
    "tier": lambda rng: (f"score = (score * :ta + :tb) % 101, tier = {TIER_OF.format(s='(score * :ta + :tb) % 101')}",
                         {"ta": rng.randint(2, 9), "tb": rng.randint(0, 100)}),
    "owner": lambda rng: ("owner_id = (CAST(:owners AS integer[]))[1 + (id + :oa) % cardinality(CAST(:owners AS integer[]))]",
                          {"oa": rng.randint(0, 5)}),
    "stage": lambda rng: ("stage = (CAST(:stages AS text[]))[1 + (id * :sta) % 8]", {"sta": rng.randint(1, 7)}),
    "created": lambda rng: ("created_at = created_at - make_interval(hours => :h)", {"h": rng.choice([1, 5, 30, 24 * 40])}),
    "dated": lambda rng: ("dates_known = NOT dates_known", {}),
    "source": lambda rng: ("source = :s", {"s": rng.choice(SOURCES)}),
    "detail": lambda rng: ("custom_fields = CASE WHEN :d IS NULL THEN custom_fields - 'source_detail' "
                           "ELSE custom_fields || jsonb_build_object('source_detail', CAST(:d AS text)) END",
                           {"d": rng.choice(DETAILS)}),
    "value": lambda rng: ("deal_value = deal_value + :v", {"v": rng.choice([1, 250.5, 10_000])}),
    "closed": lambda rng: ("closed_at = CASE WHEN closed_at IS NULL THEN created_at + interval '9 days' "
                           "WHEN id % 2 = 0 THEN NULL ELSE closed_at + interval '2 days' END", {}),
    "at_close": lambda rng: ("score_at_close = CASE WHEN id % 3 = 0 THEN NULL ELSE (id * :aa) % 101 END",
                             {"aa": rng.randint(1, 50)}),
    "reason": lambda rng: ("lost_reason = CAST(:r AS text)", {"r": rng.choice(REASONS)}),
    "unread": lambda rng: ("score_reasons = jsonb_build_array(:w), title = :w", {"w": f"w{rng.randint(0, 9)}"}),
}


def _rescore_like(session: Session, rng: random.Random, ids: list[int]) -> None:
    """As rules_sql.rescore_rules_where writes a range: the leads whose tier changes and the others in
    two UPDATEs of one statement (their rows meet in one pair of transition tables)."""
    session.execute(text(
        """
        WITH v AS MATERIALIZED (
            SELECT id, (score * :a + :b) % 101 AS score FROM leads WHERE id = ANY(:ids)
        ), w AS MATERIALIZED (
            SELECT v.id, v.score, CASE WHEN v.score >= 70 THEN 'hot' WHEN v.score >= 40 THEN 'warm' ELSE 'cold' END AS tier
              FROM v
        ), tiered AS (
            UPDATE leads l SET score = w.score, tier = w.tier, score_reasons = '[]'
              FROM w WHERE l.id = w.id AND l.tier <> w.tier RETURNING 1
        ), same_tier AS (
            UPDATE leads l SET score = w.score, score_reasons = '[]'
              FROM w WHERE l.id = w.id AND l.tier = w.tier RETURNING 1
        )
        SELECT (SELECT count(*) FROM tiered) + (SELECT count(*) FROM same_tier)
        """), {"ids": ids, "a": rng.randint(2, 9), "b": rng.randint(0, 100)}).scalar_one()


@pytest.mark.parametrize("seed", range(4))
def test_bulk_updates_of_any_columns_keep_the_rollup_as_a_rebuild_has_it(session: Session, team: dict, seed: int) -> None:  # noqa: F811
    rng = random.Random(seed)
    lead_ids = _random_leads(session, rng, team, 60)
    _random_history(session, rng, lead_ids)
    assert _stored(session)["rollup"] == _rebuilt(session)["rollup"]

    owners = team["reps"]
    for step in range(14):
        ids = session.execute(text("SELECT id FROM leads ORDER BY id")).scalars().all()
        chosen = rng.choice([rng.sample(ids, rng.randint(1, 5)), rng.sample(ids, len(ids) // 2), ids])
        what = rng.choice(["rescore", "ids", "one", "several", "several", "many"])
        if what == "rescore":
            _rescore_like(session, rng, chosen)
        elif what == "ids":
            # A new id: the old row and the new one have no partner (only leads nothing refers to: the
            # foreign keys to leads do not follow an id).
            referred = " ".join(f"AND NOT EXISTS (SELECT 1 FROM {t} x WHERE x.lead_id = leads.id)" for t in
                                ("stage_changes", "notifications", "audit_log", "activities", "follow_ups", "model_scores"))
            session.execute(text(
                "UPDATE leads SET id = id + 100000, owner_id = (CAST(:owners AS integer[]))[1 + id % 3] "
                f"WHERE id = ANY(:ids) {referred}"), {"ids": chosen, "owners": team["reps"] + [None]})
        else:
            count = {"one": 1, "several": rng.randint(2, 4), "many": rng.randint(5, len(CHANGES))}[what]
            names = rng.sample(sorted(CHANGES), count)
            if "tier" in names and "score" in names:  # both write the score
                names.remove("score")
            sets, params = [], {"ids": chosen, "owners": owners + [None], "stages": STAGES}
            for name in names:
                clause, values = CHANGES[name](rng)
                sets.append(clause)
                params.update(values)
            used = {k: v for k, v in params.items() if f":{k}" in " ".join(sets) or k == "ids"}
            session.execute(text(f"UPDATE leads SET {', '.join(sets)} WHERE id = ANY(:ids)"), used)
            what = "+".join(names)
        session.flush()
        assert _stored(session)["rollup"] == _rebuilt(session)["rollup"], f"step {step}: {what} of {len(chosen)} leads"
