"""Backtest: each past month forecast from what was known on its first day, against what was won.

The caller rebuilds, for each cut-off (the first day of a month), the open deals as they stood then
(stage and days in it from the stage history before the cut-off; a deal that closed later counts as
open), the history as it was known then (outcomes after the cut-off are unknown: those deals are
censored), and the months' won revenue before it. This module only compares the three methods:

- forecast: this product's forecast (forecast.forecast_windows) for the month;
- stage_weighted: value x P(win) over the open pipeline (Pipedrive's weighted pipeline);
- run_rate: the average of the last three months.

Error: mean absolute percentage error over the months that won something (a month with nothing won
has no percentage error), from scikit-learn. Coverage: the share of months whose actual revenue
fell inside the method's 80% interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t
from sklearn.metrics import mean_absolute_percentage_error

from crm_app.forecasting.forecast import (
    BOOTSTRAPS,
    FreshHistory,
    MonthWindow,
    OpenDeal,
    forecast_windows,
    run_rate,
    stage_weighted,
)
from crm_app.forecasting.timing import TimingModel

METHODS = ("forecast", "stage_weighted", "run_rate")
METHOD_LABELS = {
    "forecast": "This forecast",
    "stage_weighted": "Stage-weighted pipeline",
    "run_rate": "Run-rate (last 3 months)",
}


@dataclass(frozen=True)
class Prediction:
    expected: float
    low: float
    high: float

    def covers(self, actual: float) -> bool:
        return self.low <= actual <= self.high


@dataclass(frozen=True)
class BacktestMonth:
    label: str  # "Mar 2026"
    actual: float
    predictions: dict[str, Prediction]


@dataclass(frozen=True)
class MethodScore:
    method: str
    mape: float | None  # a fraction (0.25 = 25%); None when no month won anything
    coverage: float | None  # share of months inside the 80% interval
    months: int


def backtest_month(
    label: str,
    *,
    deals: Sequence[OpenDeal],
    timing: TimingModel,
    fresh: FreshHistory,
    window: MonthWindow,
    past_months_won: Sequence[float],
    actual: float,
    bootstraps: int = BOOTSTRAPS,
) -> BacktestMonth:
    """The three methods' predictions for one month, from what was known at its first day."""
    ours = forecast_windows(deals, timing, [window], fresh, bootstraps=bootstraps).windows[0]
    weighted = stage_weighted(deals, timing)
    rate = run_rate(past_months_won)
    return BacktestMonth(label, actual, {
        "forecast": Prediction(ours.expected, ours.low, ours.high),
        "stage_weighted": Prediction(*weighted),
        "run_rate": Prediction(*rate),
    })


INTERVAL_SHARE = 0.90  # the 80% interval's upper tail: the 90th percentile


def calibrate(prediction: Prediction, past: Sequence[tuple[float, float]], *,
              already: float = 0.0) -> Prediction:
    """Widen a forecast's simulated interval by the forecast's own past errors (a month-level term).

    `past`: (predicted, actual) of months *before* the forecast's cut-off, each complete by then (never
    a later month: that would leak the answer). The simulation covers which deals win and when, and
    the bootstrap the estimates' noise, but it draws every deal on its own: what moves all of a month's
    deals together (a month that converts less than its pipeline promised, drift between months) is
    not in it. With tens of thousands of open deals the independent draws cancel out (the simulated
    interval is about +-3% at 100,000 leads) while whole months missed by 4-12%. So the month's error
    is taken as a shared factor whose spread is learned from the past months: with e_i = log(actual /
    predicted) of the n past months and s = sqrt(mean(e_i^2)) (their spread about the forecast, any bias
    included), the factor's 80% interval is

        expected x exp(+- t(0.90; n) x s x sqrt(1 + 1/n))

    Student's t with n degrees of freedom because s is learned from n months (3 months: t = 1.64 where
    the normal's is 1.28), and sqrt(1 + 1/n) as in the textbook prediction interval for a new
    observation, for the bias each past month may share that n months pin down only to s / sqrt(n).
    (Before, the ratios' conformal ranks were used; with fewer than 9 past months the 90th percentile's
    rank does not exist, and clipping it to the largest ratio covered a new month only (n - 1) / (n + 1)
    of the time: 50% with 3 months.) The interval is only ever widened (the hull with the simulated
    one); with no past month it is the simulation's. `already` (revenue won before the cut-off, in the
    interval's bounds) is not scaled."""
    errors = np.array([np.log(actual / predicted) for predicted, actual in past
                       if predicted > 0 and actual > 0])
    if errors.size == 0:
        return prediction
    n = errors.size
    spread = float(np.sqrt(np.mean(errors ** 2)))
    half = float(student_t.ppf(INTERVAL_SHARE, n)) * spread * float(np.sqrt(1.0 + 1.0 / n))
    expected = prediction.expected
    return Prediction(expected, min(prediction.low, already + expected * float(np.exp(-half))),
                      max(prediction.high, already + expected * float(np.exp(half))))


def score_methods(months: Sequence[BacktestMonth]) -> list[MethodScore]:
    """MAPE and interval coverage per method over the backtest's months."""
    scores = []
    for method in METHODS:
        actual = np.array([m.actual for m in months], dtype=float)
        predicted = np.array([m.predictions[method].expected for m in months], dtype=float)
        won = actual > 0
        mape = float(mean_absolute_percentage_error(actual[won], predicted[won])) if won.any() else None
        covered = [m.predictions[method].covers(m.actual) for m in months]
        coverage = float(np.mean(covered)) if covered else None
        scores.append(MethodScore(method, mape, coverage, len(months)))
    return scores
