"""A move shown on the board before it is saved (services/pipeline.board_with_move) is the board the
database shows once it is saved: the same columns, counts, values, weighted values, stuck counts and
card order. Moving the card back gives the board it started from (a refused move)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from crm_app.db.models import Lead
from crm_app.domain import Stage
from crm_app.scoring.engine import tier_for
from crm_app.services.leads import move_lead_to_stage
from crm_app.services.pipeline import (
    BoardColumn, BoardFilter, DealCard, board_columns, board_with_card, board_with_move, deal_card, placed)
from tests.conftest import NOW
from tests.factories import make_lead, make_user


def _headers(columns: list[BoardColumn]) -> list[tuple]:
    return [(c.stage, c.count, c.value_label, c.weighted_label, c.stagnating, [card.id for card in c.cards])
            for c in columns]


def _team_with_a_stuck_deal(session):
    rep = make_user(session, "Ria Rep")
    leads = {f"new {i}": make_lead(session, f"Ria New {i}", now=NOW, owner=rep, deal_value=1_000 * (i + 1))
             for i in range(4)}
    for i in range(3):
        leads[f"contacted {i}"] = make_lead(session, f"Ria Contacted {i}", now=NOW, owner=rep,
                                            stage=Stage.CONTACTED, deal_value=2_500 + i)
    for i, lead in enumerate(leads.values()):  # fresh in their stages, each with its own score
        session.execute(update(Lead).where(Lead.id == lead.id).values(
            stage_entered_at=NOW - timedelta(hours=1), score=(37 * i) % 100, tier=tier_for((37 * i) % 100).value))
    stuck = leads["new 2"]  # long past the New stage's limit
    session.execute(update(Lead).where(Lead.id == stuck.id).values(stage_entered_at=NOW - timedelta(days=60)))
    session.commit()
    return rep, leads, stuck


def test_a_move_shown_before_saving_is_what_the_database_shows_after_it(session):
    rep, _, stuck = _team_with_a_stuck_deal(session)
    flt = BoardFilter(owner_id=rep.id)
    before = board_columns(session, flt=flt, now=NOW)
    by_stage = {c.stage: c for c in before}
    assert by_stage["new"].stagnating == 1 and by_stage["contacted"].count == 3

    shown = board_with_move(before, stuck.id, "contacted", saving=True)
    moved = next(card for c in shown for card in c.cards if card.id == stuck.id)
    assert (moved.stage, moved.days_in_stage, moved.stagnating, moved.saving) == ("contacted", 0, False, True)

    move_lead_to_stage(session, lead_id=stuck.id, to_stage="contacted", now=NOW, user_id=rep.id,
                       expected_version=moved.version)
    saved = board_with_card(shown, deal_card(session, lead_id=stuck.id, now=NOW))
    after = board_columns(session, flt=flt, now=NOW)
    assert _headers(saved) == _headers(after)
    assert not any(card.saving for c in saved for card in c.cards)
    assert {c.stage: c.count for c in after}["contacted"] == 4


def test_moving_the_card_back_gives_the_board_it_started_from(session):
    rep, _, stuck = _team_with_a_stuck_deal(session)
    before = board_columns(session, flt=BoardFilter(owner_id=rep.id), now=NOW)
    there = board_with_move(before, stuck.id, "qualified", saving=True)
    back = board_with_move(there, stuck.id, "new", saving=False)
    # The card has spent no day in New after coming back, so only its stuck mark differs.
    assert [h[:4] + h[5:] for h in _headers(back)] == [h[:4] + h[5:] for h in _headers(before)]


def test_a_card_not_on_the_board_or_already_in_the_stage_changes_nothing(session):
    rep, leads, _ = _team_with_a_stuck_deal(session)
    before = board_columns(session, flt=BoardFilter(owner_id=rep.id), now=NOW)
    assert _headers(board_with_move(before, 10**9, "qualified", saving=True)) == _headers(before)
    assert _headers(board_with_move(before, leads["new 0"].id, "new", saving=True)) == _headers(before)


def _card(card_id: int, score: int) -> DealCard:
    return DealCard(id=card_id, name=f"Deal {card_id}", company="", stage="new", value_label="$0", score=score,
                    tier="warm", owner="", owner_initials="", days_in_stage=0, stagnating=False, version=1)


def test_a_card_takes_its_place_by_score_or_goes_last_to_stay_in_view():
    cards = [_card(9, 90), _card(7, 70), _card(5, 70), _card(3, 40)]
    assert [c.id for c in placed(cards, _card(6, 70))] == [9, 7, 6, 5, 3]
    assert [c.id for c in placed(cards, _card(1, 95))] == [1, 9, 7, 5, 3]
    assert [c.id for c in placed(cards, _card(2, 10))] == [9, 7, 5, 3, 2]


def test_a_model_weighted_column_follows_value_times_score():
    column = BoardColumn(stage="new", label="New", cards=[], win_rate=0.2, by_model=True)
    card = DealCard(id=1, name="Deal", company="", stage="qualified", value_label="$10,000", score=40,
                    tier="warm", owner="", owner_initials="", days_in_stage=3, stagnating=False, version=1,
                    deal_value=10_000.0)
    source = BoardColumn(stage="qualified", label="Qualified", count=1, value=10_000.0, value_score=400_000.0,
                         cards=[card], win_rate=0.5, by_model=True)
    new, qualified = board_with_move([column, source], 1, "new", saving=True)
    assert (new.count, new.value_label, new.weighted_label) == (1, "$10,000", "$4,000")
    assert (qualified.count, qualified.value_label, qualified.weighted_label) == (0, "$0", "$0")
