"""The board's headers, Today's stage figures and the Leads page's count from the totals the database keeps (board_totals,
migration 0029) are exactly what summing the leads gives, for a rep and a manager under row-level
security, whatever writes came before: moves, reassignments, value changes, rescores, several leads
in one statement, deletes, and the sweep's compaction."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from crm_app.db.models import Lead, User
from crm_app.db.queries import LeadFilter, lead_count
from crm_app.domain import Stage
from crm_app.services.leads import move_lead_to_stage
from crm_app.services.pipeline import BoardFilter, board_columns, column_totals, compact_board_totals
from crm_app.services.pipeline_health import pipeline_health
from tests.conftest import NOW
from tests.factories import acting, make_lead, make_user

STAGES = [s.value for s in Stage]

# What the board summed before the kept totals: every lead in view, grouped by stage.
REFERENCE_SQL = """
SELECT l.stage, count(*) AS deals, coalesce(sum(l.deal_value), 0) AS value,
       count(*) FILTER (WHERE r.stagnation_days IS NOT NULL
                        AND l.stage_entered_at <= CAST(:now AS timestamptz) - (r.stagnation_days + 1) * interval '24 hours')
         AS stuck,
       coalesce(sum(l.deal_value * l.score), 0) AS value_score,
       count(*) FILTER (WHERE l.tier = 'hot') AS hot, count(*) FILTER (WHERE l.tier = 'warm') AS warm,
       count(*) FILTER (WHERE l.tier = 'cold') AS cold
  FROM leads l LEFT JOIN stage_rules r ON r.stage = l.stage
 WHERE ({owner}) AND (CAST(:tier AS text) IS NULL OR l.tier = :tier)
 GROUP BY l.stage
"""


def _reference(session, owner_id, tier=None):
    owner = "TRUE" if owner_id is None else ("l.owner_id IS NULL" if owner_id == 0 else "l.owner_id = :owner_id")
    return {r.stage: r for r in session.execute(text(REFERENCE_SQL.format(owner=owner)),
                                                {"now": NOW, "owner_id": owner_id, "tier": tier})}


def _assert_same_as_summing_the_leads(session, owner_id, tier=None):
    reference = _reference(session, owner_id, tier)
    kept = column_totals(session, flt=BoardFilter(owner_id=owner_id, tier=tier), now=NOW)
    assert kept == {stage: (r.deals, r.value, r.stuck, r.value_score) for stage, r in reference.items()}
    # The Leads page's count of the same list, and of one stage of it.
    assert lead_count(session, LeadFilter(owner_id=owner_id, tier=tier)) == sum(r.deals for r in reference.values())
    for stage in ("new", "won"):
        assert lead_count(session, LeadFilter(owner_id=owner_id, tier=tier, stage=stage)) == (
            reference[stage].deals if stage in reference else 0)


def _assert_health_same(session, owner_id):
    reference = _reference(session, owner_id)
    health = pipeline_health(session, owner_id=owner_id, now=NOW)
    for stage in health.stages:
        r = reference.get(stage.stage)
        assert (stage.count, stage.value, stage.stuck) == ((r.deals, float(r.value), r.stuck) if r else (0, 0.0, 0))
    open_rows = [r for stage, r in reference.items() if stage not in ("won", "lost")]
    assert (health.hot, health.warm, health.cold) == tuple(sum(getattr(r, t) for r in open_rows)
                                                           for t in ("hot", "warm", "cold"))


def _tier(score: int) -> str:
    return "hot" if score >= 70 else "warm" if score >= 40 else "cold"


def test_the_headers_follow_a_move_a_reassignment_and_a_new_value(session):
    ria, sam = make_user(session, "Ria Rep"), make_user(session, "Sam Seller")
    manager = make_user(session, "Meg Manager", role="manager")
    deal = make_lead(session, "Moving Mia", now=NOW, owner=ria, deal_value=4_000)
    make_lead(session, "Staying Sid", now=NOW, owner=ria, deal_value=1_000)
    make_lead(session, "Pool Pat", now=NOW, owner=None, deal_value=500)

    with acting(session, ria) as db:
        move_lead_to_stage(db, lead_id=deal.id, to_stage=Stage.PROPOSAL, now=NOW)
        mine = {c.stage: c for c in board_columns(db, flt=BoardFilter(owner_id=ria.id), now=NOW)}
        assert (mine["new"].count, mine["new"].value_label) == (1, "$1,000")
        assert (mine["proposal"].count, mine["proposal"].value_label) == (1, "$4,000")
    session.execute(text("UPDATE leads SET owner_id = :sam, deal_value = 9000 WHERE id = :id"),
                    {"sam": sam.id, "id": deal.id})
    with acting(session, ria) as db:
        assert "proposal" not in column_totals(db, flt=BoardFilter(owner_id=ria.id), now=NOW)
        # A rep reads no other rep's totals, even asking for the whole team.
        assert column_totals(db, flt=BoardFilter(), now=NOW)["new"][0] == 2  # hers and the pool's
        _assert_same_as_summing_the_leads(db, None)
    with acting(session, manager) as db:
        assert column_totals(db, flt=BoardFilter(owner_id=sam.id), now=NOW)["proposal"][:2] == (1, Decimal("9000.00"))
        for owner_id in (None, 0, ria.id, sam.id):
            _assert_same_as_summing_the_leads(db, owner_id)


def test_compaction_folds_the_deltas_and_keeps_the_sums(session):
    ria = make_user(session, "Ria Rep")
    leads = [make_lead(session, f"Lead {i}", now=NOW, owner=ria, deal_value=100 * i) for i in range(1, 6)]
    for lead in leads[:3]:
        move_lead_to_stage(session, lead_id=lead.id, to_stage=Stage.CONTACTED, now=NOW)
    move_lead_to_stage(session, lead_id=leads[0].id, to_stage=Stage.NEW, now=NOW)
    before = column_totals(session, flt=BoardFilter(owner_id=ria.id), now=NOW)
    rows = session.execute(text("SELECT count(*) FROM board_totals WHERE owner_id = :o"), {"o": ria.id}).scalar()
    assert compact_board_totals(session) > 0
    keys = session.execute(text("SELECT count(*), count(DISTINCT (stage, tier)) FROM board_totals "
                                "WHERE owner_id = :o"), {"o": ria.id}).one()
    assert keys[0] == keys[1] < rows  # one row per stage x tier, fewer than the deltas were
    assert column_totals(session, flt=BoardFilter(owner_id=ria.id), now=NOW) == before
    _assert_same_as_summing_the_leads(session, ria.id)


# --- Any sequence of writes ---------------------------------------------------------------------

a_write = st.one_of(
    st.tuples(st.just("move"), st.integers(0, 7), st.sampled_from(STAGES)),
    st.tuples(st.just("owner"), st.integers(0, 7), st.sampled_from(["ria", "sam", None])),
    st.tuples(st.just("value"), st.integers(0, 7), st.integers(0, 50_000)),
    st.tuples(st.just("score"), st.lists(st.integers(0, 7), min_size=1, max_size=4), st.integers(0, 100)),
    st.tuples(st.just("entered"), st.integers(0, 7), st.integers(0, 60)),
    st.tuples(st.just("insert"), st.integers(1, 3), st.sampled_from(["ria", "sam", None])),
    st.tuples(st.just("delete"), st.integers(0, 7)),
    st.tuples(st.just("compact")),
)


_runs = itertools.count()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(a_write, max_size=12))
def test_kept_totals_equal_summing_the_leads_after_any_writes(session, writes):
    team = {}
    for name, role in (("Ria Rep", "rep"), ("Sam Seller", "rep"), ("Meg Manager", "manager")):
        email = f"{name.split()[0].lower()}@test.crm"
        found = session.execute(text("SELECT id FROM users WHERE email = :e"), {"e": email}).scalar()
        team[name.split()[0].lower()] = found or make_user(session, name, role).id
    owners = {"ria": team["ria"], "sam": team["sam"], None: None}
    # The services commit (into the test's savepoint), so examples pile up in the one database: the
    # comparison covers them all.
    run = next(_runs)
    ids = [make_lead(session, f"Deal {run} {i}", now=NOW, owner=None, deal_value=1_000 * i,
                     stage=Stage(STAGES[i % len(STAGES)])).id for i in range(8)]
    session.execute(text("UPDATE leads SET owner_id = CASE WHEN id % 2 = 0 THEN :ria ELSE :sam END "
                         "WHERE id = ANY(:ids)"), {"ria": team["ria"], "sam": team["sam"], "ids": ids})
    for write in writes:
        kind, args = write[0], write[1:]
        if kind == "move":
            session.expire_all()  # the other writes went around the session
            if session.get(Lead, ids[args[0]]) is not None:
                move_lead_to_stage(session, lead_id=ids[args[0]], to_stage=args[1], now=NOW)
        elif kind == "owner":
            session.execute(text("UPDATE leads SET owner_id = :o WHERE id = :id"),
                            {"o": owners[args[1]], "id": ids[args[0]]})
        elif kind == "value":
            session.execute(text("UPDATE leads SET deal_value = :v WHERE id = :id"),
                            {"v": args[1], "id": ids[args[0]]})
        elif kind == "score":  # a rescore batch: one statement over several leads
            session.execute(text("UPDATE leads SET score = :s, tier = :t WHERE id = ANY(:ids)"),
                            {"s": args[1], "t": _tier(args[1]), "ids": [ids[i] for i in args[0]]})
        elif kind == "entered":
            session.execute(text("UPDATE leads SET stage_entered_at = :at WHERE id = :id"),
                            {"at": NOW - timedelta(days=args[1]), "id": ids[args[0]]})
        elif kind == "insert":  # an import: several leads in one statement
            session.execute(text(
                "INSERT INTO leads (name, source, stage, owner_id, deal_value, score, tier, created_at, "
                "updated_at, stage_entered_at, version) "
                "SELECT 'Imported ' || n, 'website', 'qualified', :o, 250 * n, 10 * n, 'cold', :now, :now, "
                ":now - interval '30 days', 1 FROM generate_series(1, :n) n"),
                {"o": owners[args[1]], "n": args[0], "now": NOW})
        elif kind == "delete":
            session.execute(text("DELETE FROM leads WHERE id = :id"), {"id": ids[args[0]]})
        else:
            session.execute(text("SELECT crm_compact_board_totals()"))
    session.flush()
    with acting(session, session.get(User, team["ria"])) as db:
        for owner_id in (team["ria"], 0, None):
            _assert_same_as_summing_the_leads(db, owner_id)
        _assert_health_same(db, team["ria"])
    with acting(session, session.get(User, team["meg"])) as db:
        for owner_id in (None, 0, team["ria"], team["sam"]):
            _assert_same_as_summing_the_leads(db, owner_id)
        for tier in ("hot", "warm", "cold"):
            _assert_same_as_summing_the_leads(db, None, tier)
        _assert_health_same(db, None)
        _assert_health_same(db, team["sam"])


def test_an_import_that_creates_updates_and_moves_leads_keeps_the_totals(session, tmp_path):
    """An import writes leads in bulk (one INSERT, one UPDATE of the matched leads, their stage
    changes): the kept totals still equal summing the leads, for the team and for the pool."""
    from tests.test_importing import mapping, people, write_csv
    from crm_app.services.importing import import_file

    make_user(session, "Meg Manager", role="manager")
    import_file(session, write_csv(tmp_path / "first.csv", people(12)), mapping(), now=NOW)
    rows = people(20)
    for i, row in enumerate(rows[:12]):  # the stored twelve: new values, some move on
        row[6] = str(5000 + i * 250)
        row[5] = "Qualified" if i % 3 == 0 else "New"
    import_file(session, write_csv(tmp_path / "second.csv", rows), mapping(), now=NOW + timedelta(hours=1))
    stages = dict(session.execute(text("SELECT stage, count(*) FROM leads GROUP BY stage")).all())
    assert stages.get("qualified") == 4 and sum(stages.values()) == 20  # the file did what it says
    for owner_id in (None, 0):
        _assert_same_as_summing_the_leads(session, owner_id)
        _assert_health_same(session, owner_id)
