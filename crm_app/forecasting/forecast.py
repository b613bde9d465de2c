"""Won revenue per month: expected value and an 80% interval, by simulation over the deals.

For each open deal and each window (the rest of this month, next month, ...):

    P(won in window) = P(win) x P(closes in window | stage, days in stage)

P(win and closes in the window) comes from the team's closed deals by stage, days in it and the deal's
age (Aalen-Johansen with landmarks, timing.py); a deal given a model probability takes that as P(win)
and the history gives only the timing (the app's page does not: a path it cannot backtest, see
services/forecast.build_forecast). Expected revenue in a window is the sum of
value x P(won in window), plus the revenue of deals *not in the pipeline yet* (created after now and
won within the window), estimated from the last FRESH_MONTHS complete months: how many such deals
there were per month and what they were worth.

The interval comes from simulating SIMULATIONS futures with a fixed seed: in each, every deal is won
in one window or in none (one draw against its window probabilities), and a Poisson number of fresh
deals, their values drawn from the history, is added. The 10th and 90th percentiles of the totals
are the 80% interval. No normal approximation: one big deal makes the distribution lumpy, and the
interval should show it.

Two simple methods are kept for comparison (backtest.py):
- `stage_weighted`: value x P(win) summed over the open pipeline, as Pipedrive and Odoo show it,
  taken as the month's forecast, with its interval simulated the same way (every deal closes in the
  month);
- `run_rate`: the average won revenue of the last 3 months, interval mean +- 1.2816 standard
  deviations of those months.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from crm_app.forecasting.timing import CREATED, TimingModel

SIMULATIONS = 2000
BOOTSTRAPS = 10  # draws of the history the simulations are split over (parameter uncertainty)
SEED = 20261203
LOW_Q, HIGH_Q = 10.0, 90.0  # the 80% interval
CHUNK = 2000  # deals simulated at once (bounds memory: SIMULATIONS x CHUNK draws)
RUN_RATE_MONTHS = 3
Z80 = 1.2815515655446004  # standard normal 90th percentile


@dataclass(frozen=True)
class OpenDeal:
    lead_id: int
    value: float
    stage: str
    days_in_stage: float  # since it entered its stage
    age_days: float  # since it was created
    model_probability: float | None = None  # calibrated P(win) when a model scores the team
    name: str = ""
    owner_id: int | None = None


@dataclass(frozen=True)
class MonthWindow:
    """A window of time, in days from now (the forecast's moment)."""

    label: str
    start_days: float
    end_days: float
    fraction_of_month: float = 1.0  # the share of its month still ahead (the current month: < 1)


@dataclass(frozen=True)
class FreshHistory:
    """Won deals that were not in the pipeline at their window's start, per window offset.

    `values[k]`: the values of such deals over the last `months` months for windows k months ahead
    (k = 0: created and won in the same month; k = 1: created in the month before, ...)."""

    months: int
    values: Sequence[Sequence[float]] = ()

    def for_offset(self, k: int) -> np.ndarray:
        return np.asarray(self.values[k] if k < len(self.values) else (), dtype=float)


@dataclass
class DealShare:
    lead_id: int
    name: str
    stage: str
    value: float
    probability: float  # P(win)
    probability_source: str  # model | stage win rate | team win rate
    expected: float  # in the first window


@dataclass
class WindowForecast:
    label: str
    expected: float  # from open deals and fresh deals, not counting what is already won
    low: float  # 80% interval of the total (won so far included)
    high: float
    pipeline_expected: float
    fresh_expected: float
    won_so_far: float = 0.0

    @property
    def total(self) -> float:
        return self.won_so_far + self.expected


@dataclass
class ForecastResult:
    windows: list[WindowForecast]
    combined: WindowForecast  # all windows together
    deals: list[DealShare] = field(default_factory=list)  # by expected share in the first window


def _age(deal: OpenDeal, basis: str) -> float:
    return deal.age_days if basis == CREATED else deal.days_in_stage


def _aged(deals: Sequence[OpenDeal], rows: Sequence[int], basis: str) -> np.ndarray | None:
    """The deals' ages since creation, which condition a stage's estimate too (timing.py); None for the
    CREATED basis, whose clock already is the age."""
    return None if basis == CREATED else np.array([deals[i].age_days for i in rows])


def win_probabilities(deals: Sequence[OpenDeal], timing: TimingModel) -> tuple[np.ndarray, list[str]]:
    """P(win) per open deal and where it comes from: the model's calibrated probability, else the
    history's P(won at all | open this long in its stage) (timing.py)."""
    probs = np.zeros(len(deals))
    sources = [""] * len(deals)
    groups: dict[str, list[int]] = {}
    for i, deal in enumerate(deals):
        if deal.model_probability is not None:
            probs[i], sources[i] = float(deal.model_probability), "model"
        else:
            groups.setdefault(timing.for_stage(deal.stage).basis, []).append(i)
    for basis, rows in groups.items():
        age = np.array([_age(deals[i], basis) for i in rows])
        probs[rows] = timing.estimates[basis].win_probability(age, _aged(deals, rows, basis))
        for i in rows:
            sources[i] = timing.win_rate_source(deals[i].stage)
    return np.clip(probs, 0.0, 1.0), sources


def stage_rates(deals: Sequence[OpenDeal], timing: TimingModel) -> np.ndarray:
    """The weighted pipeline's P(win): the model's probability, else the plain stage win rate
    (won / closed), whatever the deal's age."""
    return np.array([d.model_probability if d.model_probability is not None
                     else timing.for_stage(d.stage).win_rate for d in deals], dtype=float)


@dataclass(frozen=True)
class DealColumns:
    """The open deals as columns, built once per forecast (window_probabilities runs once per
    bootstrap draw)."""

    stage: np.ndarray
    days_in_stage: np.ndarray
    age_days: np.ndarray
    model: np.ndarray  # NaN where no model scores the deal

    @classmethod
    def of(cls, deals: Sequence[OpenDeal]) -> DealColumns:
        return cls(np.array([d.stage for d in deals], dtype=object),
                   np.array([d.days_in_stage for d in deals], dtype=float),
                   np.array([d.age_days for d in deals], dtype=float),
                   np.array([np.nan if d.model_probability is None else d.model_probability for d in deals],
                            dtype=float))


def window_probabilities(
    deals: Sequence[OpenDeal], timing: TimingModel, windows: Sequence[MonthWindow],
    columns: DealColumns | None = None,
) -> np.ndarray:
    """P(won in window k) per deal: an array (deals, windows). Vectorised per basis."""
    columns = columns or DealColumns.of(deals)
    out = np.zeros((len(deals), len(windows)))
    spans = [(w.start_days, w.end_days) for w in windows]
    groups: dict[str, list[str]] = {}
    for stage in set(columns.stage.tolist()):
        groups.setdefault(timing.for_stage(stage).basis, []).append(stage)
    for basis, stages in groups.items():
        estimate = timing.estimates[basis]
        idx = np.flatnonzero(np.isin(columns.stage, stages))
        if basis == CREATED:  # timed from creation: the age is the clock, nothing else conditions
            age, aged = columns.age_days[idx], None
        else:
            age, aged = columns.days_in_stage[idx], columns.age_days[idx]
        model = columns.model[idx]
        scored = ~np.isnan(model)
        block = estimate.windows(age, spans, aged)
        if scored.any():  # the model's P(win), the history's timing of a win
            timed = estimate.windows(age, spans, aged, timing=True)
            block = np.where(scored[:, None], np.nan_to_num(model)[:, None] * timed, block)
        out[idx] = block
    return out


def simulate_pipeline(values: np.ndarray, probs: np.ndarray, *, seed: int = SEED,
                      simulations: int = SIMULATIONS) -> np.ndarray:
    """Totals per simulation and window, (simulations, windows): each deal is won in at most one
    window, drawn from its row of `probs` (which sums to at most 1)."""
    rng = np.random.default_rng(seed)
    chance = probs.sum(axis=1) > 0  # a deal with no chance in any window is never won: no draws for it
    probs, values = probs[chance], values[chance]
    n, k = probs.shape
    totals = np.zeros((simulations, k))
    for start in range(0, n, CHUNK):
        cumulative = np.cumsum(probs[start:start + CHUNK], axis=1).astype(np.float32)  # (chunk, k)
        v = values[start:start + CHUNK]
        draws = rng.random((simulations, len(v)), dtype=np.float32)
        # A deal is won in window w when its draw falls in [cumulative[w - 1], cumulative[w]).
        previous = np.zeros(len(v), dtype=np.float32)
        for window in range(k):
            won = (draws >= previous) & (draws < cumulative[:, window])
            totals[:, window] += won.astype(np.float64) @ v
            previous = cumulative[:, window]
    return totals


def simulate_fresh(values: np.ndarray, rate: float, *, rng: np.random.Generator, simulations: int) -> np.ndarray:
    """Revenue from a Poisson(rate) number of new deals, values drawn from `values`, per simulation."""
    if rate <= 0 or len(values) == 0:
        return np.zeros(simulations)
    counts = rng.poisson(rate, simulations)
    most = int(counts.max()) if counts.size else 0
    if most == 0:
        return np.zeros(simulations)
    drawn = rng.choice(values, size=(simulations, most))
    keep = np.arange(most)[None, :] < counts[:, None]
    return (drawn * keep).sum(axis=1)


def simulate_totals(deals: Sequence[OpenDeal], values: np.ndarray, timing: TimingModel,
                    windows: Sequence[MonthWindow], fresh: FreshHistory, *, seed: int, simulations: int,
                    bootstraps: int) -> np.ndarray:
    """Simulated won revenue per (simulation, window), pipeline and fresh deals, won so far not added.

    With `bootstraps` > 0 the simulations are split over that many bootstrap draws of what was learned
    (the parameter uncertainty): in each, the closed-deal history is resampled with replacement and the
    curves refitted (TimingModel.resampled), and the fresh deals of the last months are resampled too
    (their count a Poisson draw around the one seen, their values drawn with replacement); the deals'
    outcomes are then simulated within that draw. Without it (0), one fit, as if the history were
    exact. The point forecast is not bootstrapped: it stays the plain fit's expected value."""
    draws = max(1, min(bootstraps, simulations)) if bootstraps else 1
    sizes = np.full(draws, simulations // draws)
    sizes[: simulations % draws] += 1
    rng = np.random.default_rng(seed + 1)
    fits = timing.bootstrap_draws(draws, seed + 2) if bootstraps else []
    columns = DealColumns.of(deals)
    totals = np.zeros((simulations, len(windows)))
    row = 0
    for b, size in enumerate(sizes):
        size = int(size)
        fit = fits[b] if bootstraps else timing
        probs = window_probabilities(deals, fit, windows, columns) if deals else np.zeros((0, len(windows)))
        part = simulate_pipeline(values, probs, seed=seed + 7919 * b, simulations=size)
        for k, window in enumerate(windows):
            seen = fresh.for_offset(k)
            if bootstraps and len(seen):
                seen = rng.choice(seen, size=rng.poisson(len(seen)))
            rate = len(seen) / fresh.months * window.fraction_of_month if fresh.months else 0.0
            part[:, k] += simulate_fresh(seen, rate, rng=rng, simulations=size)
        totals[row:row + size] = part
        row += size
    return totals


def forecast_windows(
    deals: Sequence[OpenDeal],
    timing: TimingModel,
    windows: Sequence[MonthWindow],
    fresh: FreshHistory,
    *,
    won_so_far: float = 0.0,
    seed: int = SEED,
    simulations: int = SIMULATIONS,
    bootstraps: int = BOOTSTRAPS,
    top: int = 10,
) -> ForecastResult:
    """Expected won revenue and its 80% interval per window and for all windows together.

    `won_so_far` (revenue already won in the first window's month) is added to the first window's
    interval and shown apart from the expected rest."""
    values = np.array([d.value for d in deals], dtype=float)
    probs = window_probabilities(deals, timing, windows) if deals else np.zeros((0, len(windows)))
    totals = simulate_totals(deals, values, timing, windows, fresh, seed=seed, simulations=simulations,
                             bootstraps=bootstraps)
    results: list[WindowForecast] = []
    for k, window in enumerate(windows):
        fresh_values = fresh.for_offset(k)
        rate = len(fresh_values) / fresh.months * window.fraction_of_month if fresh.months else 0.0
        fresh_expected = rate * float(fresh_values.mean()) if len(fresh_values) else 0.0
        pipeline_expected = float(values @ probs[:, k]) if len(values) else 0.0
        already = won_so_far if k == 0 else 0.0
        totals[:, k] += already
        results.append(WindowForecast(
            label=window.label,
            expected=pipeline_expected + fresh_expected,
            low=float(np.percentile(totals[:, k], LOW_Q)),
            high=float(np.percentile(totals[:, k], HIGH_Q)),
            pipeline_expected=pipeline_expected,
            fresh_expected=fresh_expected,
            won_so_far=already,
        ))
    overall = totals.sum(axis=1)
    combined = WindowForecast(
        label="All",
        expected=sum(w.expected for w in results),
        low=float(np.percentile(overall, LOW_Q)),
        high=float(np.percentile(overall, HIGH_Q)),
        pipeline_expected=sum(w.pipeline_expected for w in results),
        fresh_expected=sum(w.fresh_expected for w in results),
        won_so_far=won_so_far,
    )
    p_win, sources = win_probabilities(deals, timing) if deals else (np.zeros(0), [])
    first = values * probs[:, 0] if len(values) else np.zeros(0)
    order = np.argsort(-first, kind="stable")[:top]
    shares = [
        DealShare(lead_id=deals[i].lead_id, name=deals[i].name, stage=deals[i].stage, value=float(values[i]),
                  probability=float(p_win[i]), probability_source=sources[i], expected=float(first[i]))
        for i in order if first[i] > 0
    ]
    return ForecastResult(results, combined, shares)


def stage_weighted(deals: Sequence[OpenDeal], timing: TimingModel, *, seed: int = SEED,
                   simulations: int = SIMULATIONS) -> tuple[float, float, float]:
    """The weighted pipeline as a month's forecast: (expected, low, high). Every deal is taken to
    close within the month, won with its P(win)."""
    if not deals:
        return 0.0, 0.0, 0.0
    values = np.array([d.value for d in deals], dtype=float)
    p_win = np.clip(stage_rates(deals, timing), 0.0, 1.0)
    sims = simulate_pipeline(values, p_win[:, None], seed=seed, simulations=simulations)[:, 0]
    return float(values @ p_win), float(np.percentile(sims, LOW_Q)), float(np.percentile(sims, HIGH_Q))


def run_rate(last_months: Sequence[float]) -> tuple[float, float, float]:
    """Average of the last RUN_RATE_MONTHS months' won revenue: (expected, low, high)."""
    recent = np.asarray(list(last_months)[-RUN_RATE_MONTHS:], dtype=float)
    if recent.size == 0:
        return 0.0, 0.0, 0.0
    mean = float(recent.mean())
    spread = float(recent.std(ddof=1)) if recent.size > 1 else 0.0
    return mean, max(0.0, mean - Z80 * spread), mean + Z80 * spread
