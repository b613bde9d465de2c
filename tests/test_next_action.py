"""Next best action: mined from a history with a known planted effect, and tier rules when thin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from crm_app.domain import ActivityKind as K
from crm_app.domain import Play, Source, Stage
from crm_app.scoring.intervals import wilson_interval
from crm_app.scoring.next_action import LeadSituation, PlayStat, confidence, next_best_action, size_band
from crm_app.services.errors import InvalidInput
from crm_app.services.leads import log_activity
from crm_app.services.next_action import next_action_for, next_actions, refresh_play_stats
from crm_app.services.queue import action_queue
from tests.conftest import NOW
from tests.factories import make_lead, make_past_stay, make_user

HOT = [(K.PRICING_REQUEST, timedelta(minutes=20)), (K.DEMO_REQUEST, timedelta(hours=2)),
       (K.PRICING_PAGE_VISIT, timedelta(hours=3))]


@pytest.fixture
def history(session):
    """LinkedIn leads at 51-200 employees in Contacted: 70% moved on after a case study, 30%
    after a whitepaper and 30% with no play (the planted effect: case studies help)."""
    owner = make_user(session, "Hist Rep")
    n = 0
    for play, moved_count, total in ((Play.CASE_STUDY, 42, 60), (Play.WHITEPAPER, 18, 60), (None, 36, 120)):
        for i in range(total):
            n += 1
            make_past_stay(session, owner, n, now=NOW, moved=i < moved_count, play=play)
    session.commit()
    return owner


def test_the_play_that_truly_helps_is_recommended_with_its_numbers(session, history):
    stored = refresh_play_stats(session, NOW)
    assert stored > 0
    lead = make_lead(session, "Now Open", now=NOW, owner=history, source=Source.LINKEDIN, company_size=120,
                     stage=Stage.CONTACTED, activities=HOT)
    action = next_action_for(session, lead.id, NOW)
    assert (action.play, action.basis) == (Play.CASE_STUDY.value, "history")
    # 42/60 with vs (36 + 18)/(120 + 60) without; the intervals are apart but 60 < 100 stays.
    assert action.confidence == "Medium"
    assert action.why == (
        "70% of 60 similar leads from LinkedIn at companies of 51-200 employees in Contacted moved "
        "forward within 45 days after a case study vs 30% of 180 without"
    )


def test_stats_rows_count_stays_with_and_without_each_play(session, history):
    refresh_play_stats(session, NOW)
    rows = {r.play: r for r in session.execute(text(
        "SELECT * FROM play_stats WHERE stage = 'contacted' AND source = 'linkedin' AND size_band = '51-200'"))}
    assert (rows["case_study"].stays_with, rows["case_study"].moved_with) == (60, 42)
    assert (rows["case_study"].stays_without, rows["case_study"].moved_without) == (180, 54)
    assert (rows["whitepaper"].stays_with, rows["whitepaper"].moved_with) == (60, 18)
    assert (rows["whitepaper"].stays_without, rows["whitepaper"].moved_without) == (180, 78)


def test_a_play_already_used_in_this_stage_is_not_suggested_again(session, history):
    refresh_play_stats(session, NOW)
    lead = make_lead(session, "Already Read", now=NOW, owner=history, source=Source.LINKEDIN, company_size=120,
                     stage=Stage.CONTACTED, activities=HOT, created_ago=timedelta(days=2))
    log_activity(session, lead_id=lead.id, kind=K.EMAIL_SENT, play=Play.CASE_STUDY, now=NOW,
                 user_id=history.id)
    action = next_action_for(session, lead.id, NOW)
    # The whitepaper does not help, so nothing else is learned: the tier rule for a Hot lead.
    assert (action.play, action.basis) == (Play.PRICING_CALL.value, "rule")


def test_thin_history_falls_back_to_tier_rules_labelled_as_such(session, history):
    refresh_play_stats(session, NOW)
    rep = history
    hot = make_lead(session, "Hot Proposal", now=NOW, owner=rep, stage=Stage.PROPOSAL, activities=HOT,
                    created_ago=timedelta(days=2))
    cold = make_lead(session, "Cold New", now=NOW, owner=rep, stage=Stage.NEW, created_ago=timedelta(days=1))
    stalled = make_lead(session, "Stalled Proposal", now=NOW, owner=rep, stage=Stage.PROPOSAL,
                        created_ago=timedelta(days=40))
    won = make_lead(session, "Won Already", now=NOW, owner=rep, stage=Stage.WON)
    actions = next_actions(session, [hot.id, cold.id, stalled.id, won.id], NOW)
    assert actions[hot.id].headline == "Pricing call · Rule of thumb"
    assert "Too little history" in actions[hot.id].why
    assert actions[cold.id].play == Play.NURTURE_SEQUENCE.value
    assert actions[stalled.id].play == Play.BREAKUP_EMAIL.value
    assert "40 days in Proposal" in actions[stalled.id].why
    assert won.id not in actions  # a closed deal has no next step


def test_a_thin_segment_widens_to_the_whole_stage_and_below_support_nothing_is_learned():
    situation = LeadSituation(stage="contacted", source="webinar", size_band="1-50", tier="warm", days_in_stage=2)
    thin = PlayStat("contacted", "webinar", "1-50", "demo", 29, 29, 200, 20)  # below 30 stays: ignored
    wide = PlayStat("contacted", "any", "any", "case_study", 300, 150, 900, 270)
    action = next_best_action(situation, [thin, wide])
    assert (action.play, action.confidence) == ("case_study", "High")
    assert action.why.startswith("50% of 300 leads in Contacted")
    assert next_best_action(situation, [thin]).basis == "rule"


def test_the_queue_shows_the_next_best_action_as_the_suggested_step(session, history):
    refresh_play_stats(session, NOW)
    lead = make_lead(session, "Queue Hot", now=NOW, owner=history, source=Source.LINKEDIN, company_size=120,
                     stage=Stage.CONTACTED, activities=HOT)
    items = action_queue(session, owner_id=history.id, now=NOW).items
    item = next(i for i in items if i.lead_id == lead.id)
    assert item.suggestion == "Case study · Medium confidence"
    assert item.suggestion_basis == "history" and "after a case study" in item.suggestion_why


def test_a_play_must_fit_the_activity_it_tags_and_nothing_is_written_otherwise(session):
    lead = make_lead(session, "Picky", now=NOW)
    with pytest.raises(InvalidInput) as error:
        log_activity(session, lead_id=lead.id, kind=K.EMAIL_SENT, play=Play.PRICING_CALL, now=NOW)
    assert error.value.field == "play"
    assert "logged as a call or meeting" in str(error.value)
    session.rollback()
    count = session.execute(text("SELECT count(*) FROM activities WHERE lead_id = :id"), {"id": lead.id}).scalar()
    assert count == 0
    log_activity(session, lead_id=lead.id, kind=K.PAGE_VISIT, play=Play.CASE_STUDY, now=NOW)  # a read
    assert session.execute(text("SELECT play FROM activities WHERE lead_id = :id"), {"id": lead.id}).scalar() \
        == "case_study"


def test_wilson_interval_matches_the_formula_worked_by_hand():
    low, high = wilson_interval(30, 40)
    assert (round(low, 3), round(high, 3)) == (0.598, 0.858)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert size_band(None) == "unknown" and size_band(50) == "1-50" and size_band(51) == "51-200"
    assert size_band(1000) == "201-1000" and size_band(1001) == "1000+"


def test_confidence_needs_both_separation_and_support():
    assert confidence(PlayStat("new", "any", "any", "demo", 200, 140, 800, 240)) == "High"
    assert confidence(PlayStat("new", "any", "any", "demo", 60, 42, 180, 54)) == "Medium"
    assert confidence(PlayStat("new", "any", "any", "demo", 40, 24, 200, 80)) == "Low"


def test_history_that_shows_no_clear_winner_says_so_and_a_new_lead_is_never_stalled():
    situation = LeadSituation(stage="new", source="website", size_band="1-50", tier="cold", days_in_stage=60,
                              stall_days=7)
    flat = PlayStat("new", "any", "any", "whitepaper", 200, 60, 800, 240)  # 30% with and without
    action = next_best_action(situation, [flat])
    # Never contacted: a break-up email would be the first thing it ever got. The tier rule instead.
    assert action.play == Play.NURTURE_SEQUENCE.value
    assert action.why.endswith("No play has clearly moved leads like this forward in your history yet.")
