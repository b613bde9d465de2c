"""The forecast's math on small hand-made pipelines: expected values and intervals worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_app.forecasting import CREATED, FreshHistory, HistoryRow, MonthWindow, OpenDeal, fit_timing, forecast_windows
from crm_app.forecasting.backtest import BacktestMonth, Prediction, calibrate, score_methods
from crm_app.forecasting.forecast import run_rate, stage_weighted
from crm_app.forecasting.timing import MIN_CLOSED, aalen_johansen

MONTH = MonthWindow("This month", 0.0, 30.0)
NEXT = MonthWindow("Next month", 30.0, 60.0)
NO_FRESH = FreshHistory(months=3, values=[[], [], []])


def history(stage: str, rows: list[tuple[int | None, str, int]]) -> list[HistoryRow]:
    """The same rows for `stage` and for CREATED."""
    return [HistoryRow(b, d, o, n) for b in (stage, CREATED) for d, o, n in rows]


def test_one_deal_with_a_model_probability_closing_surely_this_month():
    # Every deal of the history closed after 10 days: a deal 2 days in its stage closes this month.
    timing = fit_timing(history("proposal", [(10, "won", 15), (10, "lost", 15)]))
    deal = OpenDeal(1, 1000.0, "proposal", days_in_stage=2, age_days=2, model_probability=0.5)
    result = forecast_windows([deal], timing, [MONTH, NEXT], NO_FRESH)
    this, nxt = result.windows
    assert this.expected == pytest.approx(500.0)  # 1000 x 0.5 x 1
    assert nxt.expected == pytest.approx(0.0)
    # It is won (1000) or not (0), about half the time each: the 80% interval spans both.
    assert (this.low, this.high) == (0.0, 1000.0)
    assert (nxt.low, nxt.high) == (0.0, 0.0)


def test_stage_history_gives_win_probability_and_timing():
    # 30 deals entered the stage: 10 won on day 5, 10 won on day 40, 10 lost on day 5.
    timing = fit_timing(history("negotiation", [(5, "won", 10), (40, "won", 10), (5, "lost", 10)]))
    estimate = timing.for_stage("negotiation")
    assert estimate.win_rate == pytest.approx(20 / 30)
    # A fresh deal: 1/3 won by day 5 (this month), 1/3 on day 40 (next month).
    fresh = OpenDeal(1, 900.0, "negotiation", days_in_stage=0, age_days=0)
    this, nxt = forecast_windows([fresh], timing, [MONTH, NEXT], NO_FRESH).windows
    assert this.expected == pytest.approx(300.0)
    assert nxt.expected == pytest.approx(300.0)
    # Ten days in: past the day-5 closes, 10 of the 10 left win on day 40 (next month, days 30..60).
    older = OpenDeal(2, 900.0, "negotiation", days_in_stage=10, age_days=10)
    this, nxt = forecast_windows([older], timing, [MONTH, NEXT], NO_FRESH).windows
    assert this.expected == pytest.approx(900.0)  # day 40 is 30 days from day 10: still this window's end
    assert estimate.win_probability(np.array([10.0]))[0] == pytest.approx(1.0)


def test_censored_deals_lower_the_chance_of_a_win_in_time():
    # 10 won on day 5, and 10 still open after 20 days: of a new deal, half win by day 5 (Kaplan-Meier
    # keeps the open ones at risk), the other half's fate is unknown (no win seen after day 5).
    timing = fit_timing(history("meeting", [(5, "won", 10), (20, "open", 10), (3, "lost", MIN_CLOSED)]))
    estimate = timing.for_stage("meeting")
    p = estimate.won_between(np.array([0.0]), 0.0, 30.0)[0]
    # At risk on day 3: 40, 20 lost -> S(3) = 0.5; day 5: 20 at risk, 10 won -> F_won = 0.5 x 10 / 20.
    assert p == pytest.approx(0.25)


def test_a_stage_with_too_little_history_uses_the_team_wide_estimate():
    rows = [HistoryRow("proposal", 4, "won", 3)] + [HistoryRow(CREATED, 30, "won", 10),
                                                   HistoryRow(CREATED, 30, "lost", 30)]
    timing = fit_timing(rows)
    assert timing.for_stage("proposal").basis == CREATED
    assert timing.for_stage("proposal").win_rate == pytest.approx(0.25)
    assert timing.win_rate_source("proposal") == "team history"


def test_two_independent_deals_interval_by_hand():
    # Two deals of 1000 and 3000, each surely closing this month, won with 0.5: totals 0, 1000, 3000,
    # 4000 a quarter of the time each: the 10th percentile is 0, the 90th is 4000.
    timing = fit_timing(history("proposal", [(1, "won", 20), (1, "lost", 20)]))
    deals = [OpenDeal(1, 1000.0, "proposal", 0, 0, 0.5), OpenDeal(2, 3000.0, "proposal", 0, 0, 0.5)]
    this = forecast_windows(deals, timing, [MONTH], NO_FRESH).windows[0]
    assert this.expected == pytest.approx(2000.0)
    assert (this.low, this.high) == (0.0, 4000.0)


def test_won_so_far_is_added_apart_and_fresh_deals_count():
    timing = fit_timing(history("proposal", [(1, "won", 20), (1, "lost", 20)]))
    # Over 3 months, 6 deals of 500 were won without having been in the pipeline: 2 a month.
    fresh = FreshHistory(months=3, values=[[500.0] * 6])
    this = forecast_windows([], timing, [MONTH], fresh, won_so_far=7000.0).windows[0]
    assert this.won_so_far == 7000.0
    assert this.fresh_expected == pytest.approx(1000.0)
    assert this.total == pytest.approx(8000.0)
    assert this.low >= 7000.0


def test_top_deals_carry_the_forecast_in_order():
    timing = fit_timing(history("proposal", [(1, "won", 20), (1, "lost", 20)]))
    deals = [OpenDeal(i, float(v), "proposal", 0, 0, 0.5, name=f"D{i}") for i, v in enumerate([100, 900, 400])]
    result = forecast_windows(deals, timing, [MONTH], NO_FRESH, top=2)
    assert [d.name for d in result.deals] == ["D1", "D2"]
    assert [d.expected for d in result.deals] == pytest.approx([450.0, 200.0])


def test_stage_weighted_and_run_rate():
    timing = fit_timing(history("proposal", [(1, "won", 10), (1, "lost", 30)]))
    deals = [OpenDeal(1, 1000.0, "proposal", 50, 50), OpenDeal(2, 2000.0, "proposal", 0, 0)]
    expected, low, high = stage_weighted(deals, timing)
    assert expected == pytest.approx(750.0)  # (1000 + 2000) x 10 / 40, whatever the deals' ages
    assert low == 0.0 and high in (2000.0, 3000.0)
    mean, low, high = run_rate([999.0, 100.0, 200.0, 300.0])  # only the last three count
    assert mean == pytest.approx(200.0)
    assert (low, high) == pytest.approx((200 - 1.2815515655 * 100, 200 + 1.2815515655 * 100))


def test_backtest_scores_by_hand():
    months = [
        BacktestMonth("A", 100.0, {"forecast": Prediction(110, 90, 120), "stage_weighted": Prediction(200, 150, 250),
                                   "run_rate": Prediction(50, 40, 60)}),
        BacktestMonth("B", 200.0, {"forecast": Prediction(150, 160, 240), "stage_weighted": Prediction(400, 300, 500),
                                   "run_rate": Prediction(200, 150, 250)}),
    ]
    scores = {s.method: s for s in score_methods(months)}
    assert scores["forecast"].mape == pytest.approx((0.1 + 0.25) / 2)
    assert scores["forecast"].coverage == 1.0
    assert scores["stage_weighted"].mape == pytest.approx(1.0)
    assert scores["stage_weighted"].coverage == 0.0
    assert scores["run_rate"].coverage == 0.5


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(1, 1e5), st.floats(0, 1), st.floats(0, 200)), min_size=1, max_size=12))
def test_interval_holds_the_expected_value_and_windows_never_exceed_the_deal(deals):
    timing = fit_timing(history("qualified", [(3, "won", 12), (25, "won", 8), (9, "lost", 20), (60, "open", 5)]))
    pipeline = [OpenDeal(i, v, "qualified", age, age, p) for i, (v, p, age) in enumerate(deals)]
    result = forecast_windows(pipeline, timing, [MONTH, NEXT], NO_FRESH, simulations=500)
    total_value = sum(v for v, _, _ in deals)
    assert 0 <= result.combined.expected <= total_value + 1e-6
    for w in result.windows:
        assert 0 <= w.low <= w.high <= total_value + 1e-6


def test_a_deal_longer_in_its_stage_than_any_deal_before_it_is_given_little_chance():
    # Deals that entered Proposal: 20 stayed 3 days then moved on and were won on day 20; 20 lost on day 3.
    rows = [HistoryRow("proposal", 20, "won", 20, stay=3), HistoryRow("proposal", 3, "lost", 20, stay=3),
            HistoryRow(CREATED, 30, "won", 20), HistoryRow(CREATED, 10, "lost", 20)]
    estimate = fit_timing(rows).for_stage("proposal")
    # Two days in: like all 40 of them (half won).
    assert estimate.win_probability(np.array([2.0]))[0] == pytest.approx(0.5)
    # Ten days in and still in Proposal: no deal of the history stayed that long; nothing to go on.
    assert estimate.win_probability(np.array([10.0]))[0] == 0.0


def test_a_smaller_history_gives_a_wider_interval():
    # The same win rate (one half) and pace (every close on day 5), learned from 20 closed deals or from
    # 2,000: the bootstrap over the history makes the first interval wider; without it both are alike.
    deals = [OpenDeal(i, 1000.0, "proposal", 0, 0) for i in range(20)]
    widths = {}
    for n in (10, 1000):
        timing = fit_timing(history("proposal", [(5, "won", n), (5, "lost", n)]))
        # 40 draws, not the page's 10: the widths are estimated from the draws, and ten leave them at
        # the mercy of the seed (the expected ratio is about 1.4: parameter and outcome noise alike).
        this = forecast_windows(deals, timing, [MONTH], NO_FRESH, bootstraps=40).windows[0]
        plain = forecast_windows(deals, timing, [MONTH], NO_FRESH, bootstraps=0).windows[0]
        assert this.expected == pytest.approx(10_000.0) and plain.expected == pytest.approx(10_000.0)
        widths[n] = (this.high - this.low, plain.high - plain.low)
    assert widths[10][0] > widths[1000][0] * 1.2
    assert widths[1000][0] == pytest.approx(widths[1000][1], rel=0.15)  # 2,000 deals: little to add


def test_calibration_widens_by_past_errors_and_never_narrows():
    simulated = Prediction(1000.0, 900.0, 1100.0)
    assert calibrate(simulated, []) == simulated  # no past month: the simulation's interval
    # One past month that won e^0.1 of its forecast: n = 1, s = 0.1, Student's t with 1 degree of
    # freedom at 0.90 is tan(0.4 pi) = 3.0777, times sqrt(1 + 1/1): half-width 0.43525 in log terms.
    one = calibrate(simulated, [(100.0, 100.0 * math.exp(0.1))])
    assert (one.low, one.high) == pytest.approx((1000.0 * math.exp(-0.43525), 1000.0 * math.exp(0.43525)),
                                                rel=1e-4)
    # Two past months, e^0.1 and e^-0.1 of their forecasts: s = 0.1; t with 2 degrees of freedom at
    # 0.90 is 0.8 / sqrt(2 x 0.9 x 0.1) = 1.8856, times sqrt(1 + 1/2): 0.08 x sqrt(1.5 / 0.18) = 0.23094.
    two = [(100.0, 100.0 * math.exp(0.1)), (200.0, 200.0 * math.exp(-0.1))]
    assert (calibrate(simulated, two).low, calibrate(simulated, two).high) == pytest.approx(
        (1000.0 * math.exp(-0.23094), 1000.0 * math.exp(0.23094)), rel=1e-4)
    # More months with the same spread give a narrower interval (t shrinks toward the normal's 1.28).
    many = two * 10
    assert calibrate(simulated, many).high < calibrate(simulated, two).high
    # Never narrower than the simulation: past months that hit their forecast leave it as it was.
    assert calibrate(simulated, [(100.0, 100.0)] * 5) == simulated
    # Revenue already won is not scaled; a past month without a forecast or a win tells nothing.
    ignored = [(0.0, 50.0), (80.0, 0.0)]
    widened = calibrate(simulated, two + ignored, already=500.0)
    assert (widened.low, widened.high) == pytest.approx(
        (900.0, 500.0 + 1000.0 * math.exp(0.23094)), rel=1e-4)


def test_a_deal_far_older_than_the_history_at_its_stage_is_compared_with_the_slow_deals_only():
    # Negotiation's history: 20 deals entered it 10 days after creation and were won 5 days later; 10
    # entered it 90 days after creation and 20 days later 5 were won and 5 lost.
    rows = [HistoryRow("negotiation", 5, "won", 20, stay=5, entered=10),
            HistoryRow("negotiation", 20, "won", 5, stay=20, entered=90),
            HistoryRow("negotiation", 20, "lost", 5, stay=20, entered=90),
            HistoryRow(CREATED, 30, "won", 25, entered=0), HistoryRow(CREATED, 30, "lost", 5, entered=0)]
    timing = fit_timing(rows)
    # Three days in Negotiation, 13 days old: compared with all 30 (25 won), won within the month.
    young = OpenDeal(1, 1000.0, "negotiation", days_in_stage=3, age_days=13)
    # Three days in Negotiation too, but 100 days old: the fast deals were never that old there (they had
    # closed by age 15); of the slow ones, seen from the landmark max(3, 98 - 90) = day 8, half won.
    old = OpenDeal(2, 1000.0, "negotiation", days_in_stage=3, age_days=100)
    this = forecast_windows([young], timing, [MONTH], NO_FRESH).windows[0]
    assert this.expected == pytest.approx(1000.0 * 25 / 30)
    this = forecast_windows([old], timing, [MONTH], NO_FRESH).windows[0]
    assert this.expected == pytest.approx(500.0)
    # Older than any deal the history ever had in Negotiation: nothing to go on, no chance given.
    ancient = OpenDeal(3, 1000.0, "negotiation", days_in_stage=3, age_days=200)
    assert forecast_windows([ancient], timing, [MONTH], NO_FRESH).windows[0].expected == 0.0
    # Without ages in the history (an import with only created and closed dates), only the days count.
    plain = fit_timing([HistoryRow(r.basis, r.days, r.outcome, r.deals, r.stay) for r in rows])
    expected = forecast_windows([old], plain, [MONTH], NO_FRESH).windows[0].expected
    assert expected == pytest.approx(1000.0 * 25 / 30)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(-1, 120),
                          st.sampled_from(["won", "lost", "open"]), st.integers(1, 5)),
                min_size=1, max_size=40),
       st.lists(st.tuples(st.integers(0, 30), st.integers(0, 150)), min_size=1, max_size=8))
def test_curves_computed_together_equal_the_estimator_run_on_each_landmark(rows, keys):
    """The batched curves (one 2-D histogram for many keys) against aalen_johansen on the deals kept at
    each (days in stage, age) key, their days counted from their landmark."""
    history_rows = [HistoryRow("proposal", days + extra, outcome, n, stay=days, entered=None if e < 0 else e)
                    for days, extra, e, outcome, n in rows]
    estimate = fit_timing(history_rows).estimates["proposal"]
    for stayed, aged in keys:
        survival, won_by = estimate.curves(stayed, aged)
        landmark = np.array([stayed if e < 0 or not aged else max(stayed, aged - e)
                             for _, _, e, _, _ in rows])
        keep = estimate.stay >= landmark
        expected_s, expected_f = aalen_johansen(estimate.days[keep] - landmark[keep], estimate.outcome[keep],
                                                estimate.counts[keep])
        def at(curve, day):
            return curve[min(day, len(curve) - 1)]

        for day in range(len(survival) + 5):
            assert at(survival, day) == pytest.approx(at(expected_s, day))
            assert at(won_by, day) == pytest.approx(at(expected_f, day))
