"""The pipeline board's read model on real PostgreSQL: headers, stagnation, paging, filters."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sqlalchemy import update

from crm_app.db.models import Lead, StageRule
from crm_app.domain import ActivityKind as K
from crm_app.domain import Source, Stage
from crm_app.services.leads import move_lead_to_stage
from crm_app.services import pipeline
from crm_app.services.pipeline import BoardFilter, board_columns, column_cards
from tests.conftest import NOW
from tests.factories import make_lead, make_user


def _entered(session, lead, ago: timedelta) -> None:
    """Put the lead in its stage `ago` before NOW."""
    session.execute(update(Lead).where(Lead.id == lead.id).values(stage_entered_at=NOW - ago))
    session.commit()


def _by_stage(columns):
    return {c.stage: c for c in columns}


def test_every_stage_has_a_column_in_funnel_order_even_when_empty(session):
    columns = board_columns(session, flt=BoardFilter(), now=NOW)
    assert [c.stage for c in columns] == [s.value for s in Stage]
    assert [c.label for c in columns][:3] == ["New", "Contacted", "Qualified"]
    assert all(c.count == 0 and c.value_label == "$0" and c.cards == [] for c in columns)


def test_headers_count_and_sum_the_whole_filtered_set_not_just_the_loaded_cards(session):
    ria, sam = make_user(session, "Ria Rep"), make_user(session, "Sam Seller")
    for i, value in enumerate([1_000, 2_500, 40_000]):
        make_lead(session, f"Ria New {i}", now=NOW, owner=ria, deal_value=value)
    make_lead(session, "Ria Proposal", now=NOW, owner=ria, stage=Stage.PROPOSAL, deal_value=12_345)
    make_lead(session, "Sam New", now=NOW, owner=sam, deal_value=99_000)
    make_lead(session, "Pool New", now=NOW, owner=None, deal_value=7_000)

    mine = _by_stage(board_columns(session, flt=BoardFilter(owner_id=ria.id), now=NOW, limit=1))
    assert (mine["new"].count, mine["new"].value_label, len(mine["new"].cards)) == (3, "$43,500", 1)
    assert (mine["proposal"].count, mine["proposal"].value_label) == (1, "$12,345")
    assert mine["won"].count == 0

    team = _by_stage(board_columns(session, flt=BoardFilter(), now=NOW))
    assert (team["new"].count, team["new"].value_label) == (5, "$149,500")

    pool = _by_stage(board_columns(session, flt=BoardFilter(owner_id=0), now=NOW))
    assert (pool["new"].count, [c.name for c in pool["new"].cards]) == (1, ["Pool New"])
    assert pool["new"].cards[0].owner == "Unassigned"


def test_tier_source_and_search_narrow_cards_and_headers_alike(session):
    rep = make_user(session, "Ria Rep")
    hot = make_lead(session, "Hot Hannah", now=NOW, owner=rep, company="Zeta Corp", company_size=120,
                    source=Source.REFERRAL, deal_value=5_000,
                    activities=[(K.PRICING_REQUEST, timedelta(minutes=20)), (K.DEMO_REQUEST, timedelta(hours=3))])
    make_lead(session, "Cold Carl", now=NOW, owner=rep, company="Zeta Corp", source=Source.WEBSITE,
              deal_value=1_000)
    make_lead(session, "Cold Cleo", now=NOW, owner=rep, company="100%_Pure", source=Source.WEBSITE,
              deal_value=2_000)
    assert hot.tier == "hot"

    def new_column(**kw):
        return _by_stage(board_columns(session, flt=BoardFilter(**kw), now=NOW))["new"]

    assert [c.name for c in new_column(tier="hot").cards] == ["Hot Hannah"]
    assert new_column(tier="cold").value_label == "$3,000"
    assert new_column(source="website").count == 2
    assert sorted(c.name for c in new_column(search="zeta").cards) == ["Cold Carl", "Hot Hannah"]
    # Wildcards are matched literally: "%_" finds only the company whose name contains them.
    assert [c.name for c in new_column(search="%_").cards] == ["Cold Cleo"]
    assert new_column(search="zeta", tier="cold").count == 1


def test_a_deal_is_stagnating_only_after_more_whole_days_than_its_stage_allows(session):
    # Meeting allows 7 days (seeded default).
    on_limit = make_lead(session, "On The Limit", now=NOW, stage=Stage.MEETING)
    just_over = make_lead(session, "Just Over", now=NOW, stage=Stage.MEETING)
    long_won = make_lead(session, "Long Won", now=NOW, stage=Stage.WON)
    _entered(session, on_limit, timedelta(days=8) - timedelta(seconds=1))
    _entered(session, just_over, timedelta(days=8))
    _entered(session, long_won, timedelta(days=200))

    cols = _by_stage(board_columns(session, flt=BoardFilter(), now=NOW))
    cards = {c.name: c for col in cols.values() for c in col.cards}
    assert (cards["On The Limit"].days_in_stage, cards["On The Limit"].stagnating) == (7, False)
    assert (cards["Just Over"].days_in_stage, cards["Just Over"].stagnating) == (8, True)
    # Closed stages have no limit.
    assert (cards["Long Won"].days_in_stage, cards["Long Won"].stagnating) == (200, False)
    assert cols["meeting"].stagnating == 1


def test_the_limit_is_read_from_the_stage_rules_table(session):
    lead = make_lead(session, "Three Days", now=NOW, stage=Stage.NEGOTIATION)
    _entered(session, lead, timedelta(days=3, hours=1))

    def stuck() -> bool:
        col = _by_stage(board_columns(session, flt=BoardFilter(), now=NOW))["negotiation"]
        return col.cards[0].stagnating

    assert not stuck()  # default limit 14 days
    session.execute(update(StageRule).where(StageRule.stage == "negotiation").values(stagnation_days=2))
    session.commit()
    assert stuck()


def test_only_stagnating_shows_and_counts_only_stuck_deals(session):
    rep = make_user(session, "Ria Rep")
    stuck_new = make_lead(session, "Stuck New", now=NOW, owner=rep, deal_value=3_000)
    fresh_new = make_lead(session, "Fresh New", now=NOW, owner=rep, deal_value=5_000)
    stuck_prop = make_lead(session, "Stuck Proposal", now=NOW, owner=rep, stage=Stage.PROPOSAL, deal_value=8_000)
    make_lead(session, "Old Lost", now=NOW, owner=rep, stage=Stage.LOST)
    _entered(session, stuck_new, timedelta(days=8))  # new allows 7
    _entered(session, fresh_new, timedelta(days=2))
    _entered(session, stuck_prop, timedelta(days=30))  # proposal allows 14

    cols = _by_stage(board_columns(session, flt=BoardFilter(owner_id=rep.id, only_stagnating=True), now=NOW))
    assert [c.name for c in cols["new"].cards] == ["Stuck New"]
    assert (cols["new"].count, cols["new"].value_label) == (1, "$3,000")
    assert [c.name for c in cols["proposal"].cards] == ["Stuck Proposal"]
    assert cols["lost"].count == 0 and cols["lost"].cards == []
    assert sum(c.count for c in cols.values()) == 2


def test_a_column_pages_by_score_without_gaps_or_repeats(session):
    rep = make_user(session, "Ria Rep")
    sizes = [None, 5, 30, 120, 800]  # different company sizes give different scores
    for i in range(31):
        make_lead(session, f"Deal {i:02}", now=NOW, owner=rep, company_size=sizes[i % 5],
                  source=[Source.REFERRAL, Source.WEBSITE, Source.PAID_SEARCH][i % 3])
    everything = session.query(Lead.id, Lead.score).filter(Lead.owner_id == rep.id).all()
    expected = [lead_id for lead_id, score in sorted(everything, key=lambda r: (-r.score, -r.id))]
    assert len({score for _, score in everything}) > 1  # the order really depends on the score

    flt = BoardFilter(owner_id=rep.id)
    first = _by_stage(board_columns(session, flt=flt, now=NOW))["new"]
    assert first.count == 31 and len(first.cards) == 25
    last = first.cards[-1]
    rest = column_cards(session, stage="new", flt=flt, now=NOW, after=(last.score, last.id))
    assert [c.id for c in first.cards + rest] == expected
    assert column_cards(session, stage="new", flt=flt, now=NOW, after=(rest[-1].score, rest[-1].id)) == []


def test_per_column_limits_are_respected_and_capped(session, monkeypatch):
    for i in range(4):
        make_lead(session, f"Q{i}", now=NOW, stage=Stage.QUALIFIED)
        make_lead(session, f"M{i}", now=NOW, stage=Stage.MEETING)
    cols = board_columns(session, flt=BoardFilter(), now=NOW, limits={"qualified": 3, "meeting": 10_000},
                         stages=["meeting", "qualified"])
    # Only the stages asked for, still in funnel order.
    assert [c.stage for c in cols] == ["qualified", "meeting"]
    assert [len(c.cards) for c in cols] == [3, 4]
    assert cols[0].count == 4
    # However much is asked for, a column never holds more than MAX_CARDS.
    monkeypatch.setattr(pipeline, "MAX_CARDS", 2)
    capped = board_columns(session, flt=BoardFilter(), now=NOW, limits={"meeting": 10_000}, stages=["meeting"])
    assert (len(capped[0].cards), capped[0].count) == (2, 4)
    assert len(column_cards(session, stage="meeting", flt=BoardFilter(), now=NOW, limit=10_000)) == 2


def test_a_moved_deal_shows_in_its_new_column_with_zero_days_and_a_new_version(session):
    rep = make_user(session, "Ria Rep")
    lead = make_lead(session, "Mover", now=NOW, owner=rep, deal_value=6_000)
    _entered(session, lead, timedelta(days=10))
    before = _by_stage(board_columns(session, flt=BoardFilter(owner_id=rep.id), now=NOW))
    card = before["new"].cards[0]
    assert (card.days_in_stage, card.stagnating) == (10, True)

    move_lead_to_stage(session, lead_id=lead.id, to_stage="qualified", now=NOW, user_id=rep.id,
                       expected_version=card.version)

    after = _by_stage(board_columns(session, flt=BoardFilter(owner_id=rep.id), now=NOW))
    assert after["new"].count == 0
    moved = after["qualified"].cards[0]
    assert (moved.id, moved.stage, moved.days_in_stage, moved.stagnating) == (lead.id, "qualified", 0, False)
    assert moved.version == card.version + 1
    assert after["qualified"].value_label == "$6,000"


@pytest.mark.parametrize("in_stage", [timedelta(days=7, hours=12), timedelta(days=8), timedelta(days=8, hours=1)])
def test_the_dashboard_and_the_board_agree_on_what_is_stuck(session, in_stage):
    """One rule everywhere: more whole days in the stage than its limit (meeting: 7)."""
    from crm_app.services.pipeline_health import pipeline_health
    from crm_app.services.queue import action_queue

    rep = make_user(session, "Ria Rep")
    lead = make_lead(session, "Edge", now=NOW, owner=rep, stage=Stage.MEETING)
    _entered(session, lead, in_stage)
    board = _by_stage(board_columns(session, flt=BoardFilter(owner_id=rep.id), now=NOW))["meeting"]
    health = pipeline_health(session, owner_id=rep.id, now=NOW)
    queue = action_queue(session, owner_id=rep.id, now=NOW).items
    on_board = board.cards[0].stagnating
    assert on_board == (in_stage >= timedelta(days=8))
    assert health.stuck == board.stagnating == int(on_board)
    # Never contacted, so the deal may also be at risk: "stuck" is then one of its item's reasons.
    stuck_in_queue = any(item.lead_id == lead.id and (item.kind == "stuck" or any(
        reason.startswith("Stuck") for reason in item.secondary)) for item in queue)
    assert stuck_in_queue == on_board
