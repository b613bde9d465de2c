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


LOW_SHARE, HIGH_SHARE = 0.10, 0.90  # the 80% interval's tails


def calibrate(prediction: Prediction, past: Sequence[tuple[float, float]], *,
              already: float = 0.0) -> Prediction:
    """Widen a forecast's simulated interval by the forecast's own past errors (conformal-style).

    `past`: (predicted, actual) of months *before* the forecast's cut-off, each complete by then (never
    a later month: that would leak the answer). The simulation covers which deals win and when, and
    the bootstrap the estimates' noise, but not drift between months (a quarter that wins less than
    its pipeline promised), so the interval is also stretched to expected x the ratios actual/predicted
    seen before: split conformal's rank ceil((n + 1) x 0.9) of n for the top (floor((n + 1) x 0.1) for
    the bottom), clipped to the largest (smallest) ratio while n is too small for that rank. The
    interval is only ever widened; with no past month it is the simulation's. `already` (revenue won
    before the cut-off, in the interval's bounds) is not scaled. Written by hand: a few lines of
    numpy (MAPIE's conformal regressors need a scikit-learn model to refit, which this is not)."""
    ratios = np.sort([actual / predicted for predicted, actual in past if predicted > 0 and actual > 0])
    if ratios.size == 0:
        return prediction
    n = ratios.size
    low_rank = max(int(np.floor((n + 1) * LOW_SHARE)), 1)
    high_rank = min(int(np.ceil((n + 1) * HIGH_SHARE)), n)
    expected = prediction.expected
    return Prediction(expected, min(prediction.low, already + expected * ratios[low_rank - 1]),
                      max(prediction.high, already + expected * ratios[high_rank - 1]))


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
