"""The forecast service on real PostgreSQL: the backtest sees only what was known at each cut-off,
a rep's forecast holds their own deals only (row-level security), managers set targets."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlmodel import Session

from crm_app.db.models import Lead, StageChange
from crm_app.domain import Role, Stage
from crm_app.services.errors import Forbidden, InvalidInput
from crm_app.db.queries import UserOption
from crm_app.services.forecast import (
    backtest_at,
    build_forecast,
    month_start,
    forget_stage_win_rates,
    sales_targets,
    set_sales_target,
    target_for,
    timing_at,
)
from crm_app.forecasting.timing import CREATED
from crm_app.services.leads import move_lead_to_stage
from crm_app.services.permissions import CurrentUser
from crm_app.services.pipeline import BoardFilter, board_columns
from crm_app.services.pipeline_health import pipeline_health
from tests.factories import acting, make_user

CUTOFF = datetime(2026, 9, 1, tzinfo=timezone.utc)
NOW = datetime(2026, 11, 12, 15, 0, tzinfo=timezone.utc)
PATH = ["new", "contacted", "qualified", "proposal", "negotiation"]


def deal(session: Session, name: str, owner, *, created: datetime, value: int = 1000, step_days: int = 5,
         outcome: str | None = None, reached: int = len(PATH)) -> Lead:
    """A lead that walked the first `reached` stages of PATH, `step_days` apart, then closed as `outcome`
    (won or lost) `step_days` later, or is still open."""
    moments = [created + timedelta(days=step_days * i) for i in range(reached)]
    closed = created + timedelta(days=step_days * reached) if outcome else None
    stage = outcome or PATH[reached - 1]
    lead = Lead(name=name, email=f"{name.lower().replace(' ', '.')}@fc.test", source="website", stage=stage,
                owner_id=owner.id, deal_value=Decimal(value), created_at=created,
                stage_entered_at=closed or moments[-1], closed_at=closed, tier="cold", score=0)
    session.add(lead)
    session.flush()
    previous = None
    for stage_name, at in zip(PATH[:reached], moments):
        session.add(StageChange(lead_id=lead.id, from_stage=previous, to_stage=stage_name, changed_at=at))
        previous = stage_name
    if outcome:
        session.add(StageChange(lead_id=lead.id, from_stage=previous, to_stage=outcome, changed_at=closed))
    session.commit()
    return lead


def history(session: Session, owner, *, before: datetime, n: int = 30) -> None:
    """n closed deals (half won) that started and closed in the months before `before`."""
    for i in range(n):
        created = before - timedelta(days=120 - 3 * i)
        deal(session, f"Past {owner.name} {i}", owner, created=created, value=1000 + 10 * i,
             outcome="won" if i % 2 == 0 else "lost", reached=len(PATH) if i % 2 == 0 else 2 + i % 3)


@pytest.fixture(autouse=True)
def fresh_caches():
    """Each test builds its own history on the same database: no fit or forecast of another test's."""
    forget_stage_win_rates()
    yield
    forget_stage_win_rates()


def predictions(month) -> dict[str, tuple[float, float, float]]:
    return {k: (round(p.expected, 6), round(p.low, 6), round(p.high, 6)) for k, p in month.predictions.items()}


def test_the_backtest_sees_only_what_was_known_at_the_cut_off(session):
    ria = make_user(session, "Ria Rep")
    history(session, ria, before=CUTOFF)
    # Open at the cut-off: one in proposal since 6 days, one in qualified.
    open_one = deal(session, "Open One", ria, created=CUTOFF - timedelta(days=21), value=5000, reached=4)
    deal(session, "Open Two", ria, created=CUTOFF - timedelta(days=12), value=3000, reached=3)
    before = backtest_at(session, owner_id=None, cutoff=CUTOFF)
    assert before.predictions["forecast"].expected > 0
    assert before.predictions["stage_weighted"].expected > 0

    # A deal created after the cut-off and won within the month: the month's actual grows, no prediction moves.
    deal(session, "Later Win", ria, created=CUTOFF + timedelta(days=1), value=7000, step_days=2, outcome="won")
    # An outcome recorded after the cut-off: Open One is won on 10 September (with its stage change).
    open_one.stage, open_one.closed_at = "won", CUTOFF + timedelta(days=9)
    session.add(open_one)
    session.add(StageChange(lead_id=open_one.id, from_stage="proposal", to_stage="won",
                            changed_at=CUTOFF + timedelta(days=9)))
    session.commit()
    forget_stage_win_rates()  # a fresh fit of the history at the cut-off, not the cached one
    after = backtest_at(session, owner_id=None, cutoff=CUTOFF)
    assert predictions(after) == predictions(before)
    assert after.actual == before.actual + 7000 + 5000


def test_the_forecast_counts_won_so_far_apart_and_a_rep_sees_only_their_own(session, engine):
    ria = make_user(session, "Ria Rep")
    sam = make_user(session, "Sam Seller")
    maya = make_user(session, "Maya Manager", role="manager")
    history(session, ria, before=month_start(NOW) - timedelta(days=30), n=40)
    # Two days in Proposal: like the history's deals there (a deal in a stage longer than any deal of
    # the history ever stayed would be given no chance).
    deal(session, "Ria Deal", ria, created=NOW - timedelta(days=17), value=8000, reached=4)
    deal(session, "Sam Deal", sam, created=NOW - timedelta(days=17), value=90000, reached=4)
    won = deal(session, "Ria Won", ria, created=NOW - timedelta(days=30), value=2500, outcome="won")
    won.closed_at = month_start(NOW) + timedelta(days=2)
    session.add(won)
    session.commit()

    with acting(session, maya) as db:
        team = build_forecast(db, owner_id=None, now=NOW)
    with acting(session, ria) as db:
        mine = build_forecast(db, owner_id=ria.id, now=NOW)
        # Even asking for the team, a rep's session reads only their own deals (and the pool).
        seen = build_forecast(db, owner_id=None, now=NOW)
    assert team.won_so_far == mine.won_so_far == 2500.0
    assert {d.name for d in team.deals} == {"Ria Deal", "Sam Deal"}
    assert {d.name for d in mine.deals} == {"Ria Deal"}
    assert {d.name for d in seen.deals} == {"Ria Deal"}
    assert team.this_month_total > mine.this_month_total > 2500.0
    assert mine.this_month_low <= mine.this_month_total <= mine.this_month_high


def test_managers_set_targets_reps_read_their_own_and_the_gap_is_said(session):
    ria = make_user(session, "Ria Rep")
    sam = make_user(session, "Sam Seller")
    maya = make_user(session, "Maya Manager", role="manager")
    manager = CurrentUser(maya.id, maya.email, maya.name, Role.MANAGER)
    rep = CurrentUser(ria.id, ria.email, ria.name, Role.REP)
    history(session, ria, before=month_start(NOW) - timedelta(days=30), n=40)
    with acting(session, maya) as db:
        assert set_sales_target(db, user_id=ria.id, typed="$50,000", now=NOW, actor=manager) == 50000.0
        set_sales_target(db, user_id=sam.id, typed="20000", now=NOW, actor=manager)
        set_sales_target(db, user_id=None, typed="200000", now=NOW, actor=manager)
        with pytest.raises(InvalidInput, match="negative"):
            set_sales_target(db, user_id=ria.id, typed="-5", now=NOW, actor=manager)
        assert target_for(db, ria.id) == 50000.0
        team = [UserOption(u.id, u.name, u.role) for u in (ria, sam, maya)]
        editor = {row.name: (row.target, row.target_label) for row in sales_targets(db, team)}
    assert editor == {"Whole team": ("200000", "$200,000"), "Ria Rep": ("50000", "$50,000"),
                      "Sam Seller": ("20000", "$20,000")}
    with acting(session, ria) as db:
        with pytest.raises(Forbidden):
            set_sales_target(db, user_id=ria.id, typed="1", now=NOW, actor=rep)
        assert target_for(db, ria.id) == 50000.0
        assert target_for(db, sam.id) is None  # not hers to see
        assert target_for(db, None) is None
        forecast = build_forecast(db, owner_id=ria.id, now=NOW)
    assert forecast.target == 50000.0
    assert forecast.gap == pytest.approx(50000.0 - forecast.this_month_total)
    assert forecast.gap_message.startswith("$")
    assert "short of the target" in forecast.gap_message




def test_weighted_pipeline_uses_each_stage_win_rate_from_the_team_history(session):
    ria = make_user(session, "Ria Rep")
    history(session, ria, before=month_start(NOW) - timedelta(days=30), n=40)
    deal(session, "Ria Deal", ria, created=NOW - timedelta(days=17), value=8000, reached=4)
    forget_stage_win_rates()
    # Proposal: the 20 won deals went through it, and 6 of the 20 lost ones (those that reached 4 stages).
    health = pipeline_health(session, owner_id=ria.id, now=NOW)
    proposal = next(s for s in health.stages if s.stage == "proposal")
    assert (proposal.value_label, proposal.weighted_label) == ("$8,000", "$6,154")  # 8,000 x 20 / 26
    assert health.weighted_value_label == "$6,154"
    columns = {c.stage: c for c in board_columns(session, flt=BoardFilter(owner_id=ria.id), now=NOW)}
    assert columns["proposal"].weighted_label == "$6,154"
    assert columns["won"].weighted_label == ""
    forget_stage_win_rates()


def test_a_cached_forecast_follows_a_close_and_a_new_target(session):
    ria = make_user(session, "Ria Rep")
    maya = make_user(session, "Maya Manager", role="manager")
    manager = CurrentUser(maya.id, maya.email, maya.name, Role.MANAGER)
    history(session, ria, before=month_start(NOW) - timedelta(days=30), n=40)
    open_deal = deal(session, "Ria Deal", ria, created=NOW - timedelta(days=17), value=8000, reached=4)
    with acting(session, maya) as db:
        first = build_forecast(db, owner_id=ria.id, now=NOW)
        assert build_forecast(db, owner_id=ria.id, now=NOW) == first  # the cache, same figures
    assert (first.won_so_far, first.open_deals, first.target) == (0.0, 1, None)
    # The deal is won today: the next load shows it won, not the cached forecast.
    move_lead_to_stage(session, lead_id=open_deal.id, to_stage=Stage.WON, now=NOW - timedelta(hours=1))
    with acting(session, maya) as db:
        after = build_forecast(db, owner_id=ria.id, now=NOW)
        set_sales_target(db, user_id=ria.id, typed="20000", now=NOW, actor=manager)
        targeted = build_forecast(db, owner_id=ria.id, now=NOW)
    assert (after.won_so_far, after.open_deals, after.deals) == (8000.0, 0, [])
    assert (targeted.target, targeted.gap) == (20000.0, pytest.approx(20000.0 - targeted.this_month_total))


def test_a_web_worker_that_heard_no_change_reuses_the_forecast_and_one_change_in_scope_renews_it(
        session, monkeypatch):
    # In a web worker the LISTEN of crm_app/live.py says which owners' leads changed: while it heard of
    # nothing in scope the cached forecast is served without a query; a change it hears renews it.
    from crm_app import live
    from crm_app.services import forecast as forecast_service

    ria = make_user(session, "Ria Rep")
    maya = make_user(session, "Maya Manager", role="manager")
    history(session, ria, before=month_start(NOW) - timedelta(days=30), n=40)
    open_deal = deal(session, "Ria Deal", ria, created=NOW - timedelta(days=17), value=8000, reached=4)
    monkeypatch.setattr(forecast_service, "get_engine", lambda: session.get_bind().engine)
    monkeypatch.setattr(live, "_listening_since", 1.0)
    monkeypatch.setattr(live, "_changed_at", {})
    with acting(session, maya) as db:
        first = build_forecast(db, owner_id=ria.id, now=NOW)
    # A change the listener did not hear (written straight to the table, no notice drained here).
    session.execute(text("UPDATE leads SET deal_value = 16000 WHERE id = :id"), {"id": open_deal.id})
    session.commit()
    with acting(session, maya) as db:
        assert build_forecast(db, owner_id=ria.id, now=NOW) == first
    live.note_change(str(ria.id))
    with acting(session, maya) as db:
        renewed = build_forecast(db, owner_id=ria.id, now=NOW)
    assert renewed.deals[0].value_label == "$16,000" and first.deals[0].value_label == "$8,000"


def test_the_forecast_comes_at_once_and_its_interval_is_calibrated_once_the_past_months_are_known(session):
    # The page asks without waiting: the first answer carries the simulation's interval and says it is
    # not calibrated yet (the past months' forecasts cost minutes at scale); the background event's
    # answer widens it by the past errors, and from then on the quick answer is the calibrated one.
    from crm_app.services.forecast import calibrated_with, past_errors

    ria = make_user(session, "Ria Rep")
    maya = make_user(session, "Maya Manager", role="manager")
    history(session, ria, before=month_start(NOW) - timedelta(days=30), n=40)
    deal(session, "Ria Deal", ria, created=NOW - timedelta(days=17), value=8000, reached=4)
    forget_stage_win_rates()
    with acting(session, maya) as db:
        quick = build_forecast(db, owner_id=ria.id, now=NOW, wait_for_calibration=False)
        assert not quick.calibrated
        assert (quick.this_month_low, quick.this_month_high) == (quick.simulated.low, quick.simulated.high)
        full = build_forecast(db, owner_id=ria.id, now=NOW)
        errors = past_errors(db, owner_id=ria.id, cutoff=NOW)
        again = build_forecast(db, owner_id=ria.id, now=NOW, wait_for_calibration=False)
    assert errors  # months with a forecast and an outcome before this one
    assert full.calibrated and again == full == calibrated_with(quick, errors)
    assert full.this_month_total == quick.this_month_total
    assert full.this_month_low <= quick.this_month_low and full.this_month_high >= quick.this_month_high
    assert quick.windows[0].interval_label == f"${quick.this_month_low:,.0f} – ${quick.this_month_high:,.0f}"
    assert full.windows[0].interval_label == f"${full.this_month_low:,.0f} – ${full.this_month_high:,.0f}"
    forget_stage_win_rates()


def test_the_past_months_errors_are_kept_for_other_processes_until_a_close_changes_a_past_month(session):
    # A new web worker (no cache in memory) reads the past errors the first one stored; a close today
    # cannot change a month that is over and keeps them, a close dated last month computes them again.
    from crm_app.services.forecast import past_errors

    ria = make_user(session, "Ria Rep")
    maya = make_user(session, "Maya Manager", role="manager")
    history(session, ria, before=month_start(NOW) - timedelta(days=30), n=40)
    today = deal(session, "Ria Today", ria, created=NOW - timedelta(days=17), value=8000, reached=4)
    backdated = deal(session, "Ria Backdated", ria, created=NOW - timedelta(days=20), value=5000, reached=2)
    with acting(session, maya) as db:
        computed = past_errors(db, owner_id=ria.id, cutoff=NOW)
    assert computed
    stored = session.execute(text("SELECT errors FROM forecast_calibrations WHERE owner_id = :id"),
                             {"id": ria.id}).scalar_one()
    assert [tuple(e) for e in stored] == computed
    # Marked, to tell a stored answer from a recomputed one.
    session.execute(text("UPDATE forecast_calibrations SET errors = '[[1, 2]]' WHERE owner_id = :id"),
                    {"id": ria.id})
    session.commit()
    forget_stage_win_rates()  # another process: nothing in memory
    with acting(session, ria) as db:  # the rep reads what the manager's view stored
        assert past_errors(db, owner_id=ria.id, cutoff=NOW) == [(1.0, 2.0)]
    move_lead_to_stage(session, lead_id=today.id, to_stage=Stage.WON, now=NOW - timedelta(hours=1))
    forget_stage_win_rates()
    with acting(session, maya) as db:
        assert past_errors(db, owner_id=ria.id, cutoff=NOW) == [(1.0, 2.0)]
    move_lead_to_stage(session, lead_id=backdated.id, to_stage=Stage.WON,
                       now=month_start(NOW) - timedelta(days=2))
    forget_stage_win_rates()
    with acting(session, maya) as db:
        again = past_errors(db, owner_id=ria.id, cutoff=NOW)
    assert again != [(1.0, 2.0)] and len(again) == len(computed)
    assert again[-1][1] == computed[-1][1] + 5000  # last month won the backdated deal too


def test_a_small_teams_new_closed_deals_count_at_once_not_after_the_cache(session):
    """A team with a short history: the forecast read before its first closed deals existed must not
    keep saying "no history" for the cache's ten minutes. Ria's open deal has no chance until the
    team has closed deals; once they are stored, the very next forecast gives it one."""
    ria = make_user(session, "Ria Rep")
    maya = make_user(session, "Maya Manager", role="manager")
    deal(session, "Ria Deal", ria, created=NOW - timedelta(days=17), value=8000, reached=4)
    with acting(session, maya) as db:
        before = build_forecast(db, owner_id=ria.id, now=NOW)  # what a page read first (and cached)
        assert timing_at(db, NOW, current=True).estimates[CREATED].closed == 0
    history(session, ria, before=month_start(NOW) - timedelta(days=30), n=40)
    with acting(session, maya) as db:
        after = build_forecast(db, owner_id=ria.id, now=NOW)
        assert timing_at(db, NOW, current=True).estimates[CREATED].closed == 40
    assert after.expected_rest > before.expected_rest == 0  # her deal has a chance now


def test_pages_read_what_the_job_precomputed_and_say_when_it_is_stale_or_missing(session, monkeypatch):
    # The job worker's round (crm.forecast_refresh) stores the stage win rates and each scope's forecast
    # and backtest; pages read them. Before any round, a large history is not fitted by a page: the
    # weighted value says it waits for the job, and the forecast page says it computes the forecast
    # itself. Afterwards a rep reads her own stored forecast (not the team's), a move in her scope is
    # said to be newer than the stored forecast, and the next round rebuilds only what changed.
    from crm_app.services import forecast as forecast_service
    from crm_app.services.forecast_snapshots import (
        MISSING_NOTE,
        Precomputed,
        precomputed_backtest,
        precomputed_forecast,
        refresh_forecasts,
        target_warning,
    )

    ria = make_user(session, "Ria Rep")
    sam = make_user(session, "Sam Seller")
    maya = make_user(session, "Maya Manager", role="manager")
    manager = CurrentUser(maya.id, maya.email, maya.name, Role.MANAGER)
    history(session, ria, before=month_start(NOW) - timedelta(days=30), n=40)
    deal(session, "Ria Deal", ria, created=NOW - timedelta(days=17), value=8000, reached=4)
    deal(session, "Sam Deal", sam, created=NOW - timedelta(days=17), value=9000, reached=4)
    monkeypatch.setattr(forecast_service, "CACHE_FROM_CLOSED", 10)  # 40 closed deals: "large" here
    with acting(session, ria) as db:
        health = pipeline_health(db, owner_id=ria.id, now=NOW)
        assert precomputed_forecast(db, owner_id=ria.id, now=NOW).value is None
        assert precomputed_forecast(db, owner_id=ria.id, now=NOW).note == MISSING_NOTE
    assert (health.weighted_value_label, health.weighting_label) == (
        "—", "weighted value not computed yet (the job worker computes the stage win rates)")

    first = refresh_forecasts(session, now=NOW)
    assert first.rates and first.forecasts == ["team", f"rep {ria.id}", f"rep {sam.id}"]
    assert first.backtests == first.forecasts
    with acting(session, maya) as db:
        direct = build_forecast(db, owner_id=ria.id, now=NOW)
    with acting(session, ria) as db:
        stored = precomputed_forecast(db, owner_id=ria.id, now=NOW)
        assert precomputed_forecast(db, owner_id=None, now=NOW).value is None  # the team's is not hers
        assert precomputed_backtest(db, owner_id=None, now=NOW).value is None
        health = pipeline_health(db, owner_id=ria.id, now=NOW)
    assert stored.note == "" and stored.value == direct and stored.value.calibrated
    assert health.weighted_value_label == "$6,154"  # 8,000 x 20 / 26, from the stored rates
    with acting(session, maya) as db:
        backtest = precomputed_backtest(db, owner_id=None, now=NOW)
    assert backtest.value is not None and [s.method for s in backtest.value.scores] == [
        "forecast", "stage_weighted", "run_rate"]

    # A new target shows at once, with its gap, on the forecast page and on Today.
    with acting(session, maya) as db:
        set_sales_target(db, user_id=ria.id, typed="500000", now=NOW, actor=manager)
    with acting(session, ria) as db:
        targeted = precomputed_forecast(db, owner_id=ria.id, now=NOW).value
        warning = target_warning(db, owner_id=ria.id, now=NOW)
    assert (targeted.target, targeted.gap) == (500000.0, pytest.approx(500000.0 - direct.this_month_total))
    assert "against your target of $500,000" in warning

    # A new deal of Ria's: her stored forecast is older than her pipeline, and says so.
    deal(session, "Ria Second", ria, created=NOW - timedelta(days=3), value=4000, reached=2)
    with acting(session, ria) as db:
        changed = precomputed_forecast(db, owner_id=ria.id, now=NOW)
        late = precomputed_forecast(db, owner_id=ria.id, now=NOW + timedelta(minutes=20))
    assert changed.value.open_deals == 1 and "deals in this view changed since" in changed.note
    assert "20 minutes ago: the job worker has not refreshed it" in late.note
    # The next round rebuilds her scope and the team's; Sam's and every backtest are unchanged.
    again = refresh_forecasts(session, now=NOW + timedelta(minutes=5))
    assert (again.rates, again.forecasts, again.backtests) == (False, ["team", f"rep {ria.id}"], [])
    with acting(session, ria) as db:
        assert precomputed_forecast(db, owner_id=ria.id, now=NOW + timedelta(minutes=5)).value.open_deals == 2
    # A small history (fewer than CACHE_FROM_CLOSED closed deals: milliseconds to fit) is built by the
    # page whenever the stored one is older than its deals: a move shows at once, with no note.
    monkeypatch.setattr(forecast_service, "CACHE_FROM_CLOSED", 2000)
    deal(session, "Ria Third", ria, created=NOW - timedelta(days=2), value=3000, reached=2)
    with acting(session, ria) as db:
        assert precomputed_forecast(db, owner_id=ria.id, now=NOW + timedelta(minutes=5)) == Precomputed(None, "")


def test_a_web_worker_that_heard_no_change_trusts_the_stored_forecast_without_reading_the_scope(
        session, monkeypatch):
    # The stored forecast's freshness needs the scope's version (a scan of its open deals at scale),
    # unless this web worker's listener (crm_app/live.py) heard of no change in scope since the round.
    from crm_app import live
    from crm_app.services import forecast as forecast_service
    from crm_app.services.forecast_snapshots import precomputed_forecast, refresh_forecasts

    ria = make_user(session, "Ria Rep")
    history(session, ria, before=month_start(NOW) - timedelta(days=30), n=40)
    deal(session, "Ria Deal", ria, created=NOW - timedelta(days=17), value=8000, reached=4)
    monkeypatch.setattr(forecast_service, "CACHE_FROM_CLOSED", 10)  # a "large" history: stored is read
    refresh_forecasts(session, now=NOW, backtests=False)
    monkeypatch.setattr(forecast_service, "get_engine", lambda: session.get_bind().engine)
    monkeypatch.setattr(live, "_listening_since", 1.0)
    monkeypatch.setattr(live, "_changed_at", {})
    deal(session, "Ria Unheard", ria, created=NOW - timedelta(days=3), value=4000, reached=2)
    with acting(session, ria) as db:
        assert precomputed_forecast(db, owner_id=ria.id, now=NOW).note == ""  # nothing heard: trusted
    live.note_change(str(ria.id))
    with acting(session, ria) as db:
        assert "deals in this view changed since" in precomputed_forecast(db, owner_id=ria.id, now=NOW).note
