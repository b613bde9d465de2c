"""When will an open deal be won, if at all? Learned from the team's own closed deals.

Estimates per *basis*: each open stage ("deals that entered Proposal"), and CREATED (every deal,
timed from its creation), the fallback for a stage with too little closed history, e.g. an imported
pipeline whose history has only created and closed dates and no stage changes.

Time runs in whole days from entering the stage (or from creation) to the close. Deals still open at
the cut-off are *censored* at their age then ("took at least this long"), so slow deals are not
forgotten because they have not closed yet. Won and lost are *competing* outcomes: losses come early
(a lead drops out after a call), wins late (a deal walks the whole funnel), so timing and outcome are
not independent, and a product of "stage win rate x P(closes this month)" would credit a brand-new
lead with a share of this month's wins that new leads never bring. Hence the Aalen-Johansen
estimator (Kaplan-Meier extended to competing outcomes):

    S(t)     = P(still open after day t)            = prod over u <= t of (1 - closed on u / at risk on u)
    F_won(t) = P(won by day t)                      = sum over u <= t of S(u - 1) x won on u / at risk on u

and for an open deal of age a, P(won between days s and e from now) = (F_won(a+e) - F_won(a+s)) / S(a),
P(won at all) = (F_won(end) - F_won(a)) / S(a): a deal that has sat in its stage far longer than the
team's wins from it usually take is rightly less likely to be won.

When the scoring model gives a deal's P(win), that replaces the estimate's and only the *timing* of a
win is taken from the history (the shape of F_won after age a). Past the longest time a win took,
a constant hazard of 1 / (mean days to a win) stands in.

`win_rate` (won / closed among the basis's closed deals) is the plain stage win rate that the weighted
pipeline (kanban, Today, Leads) shows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

CREATED = "created"  # the basis timed from a deal's creation
MIN_CLOSED = 20  # closed deals a stage needs for its own estimates; fewer: the CREATED basis
OUTCOMES = ("won", "lost", "open")


@dataclass(frozen=True)
class HistoryRow:
    """How many deals of one basis closed (won or lost) or were still open `days` after entering it.

    `days` is None for a deal whose dates are not known (imported without dates): it counts for the
    win rate but not for timing."""

    basis: str
    days: int | None
    outcome: str  # won | lost | open (censored)
    deals: int


@dataclass(frozen=True)
class BasisEstimate:
    basis: str
    won: int
    closed: int
    survival: np.ndarray  # S(t) = P(still open after t whole days), t = 0..len-1
    won_by: np.ndarray  # F_won(t) = P(won by the end of day t)
    tail_hazard: float  # per day, for a win's timing past the end of the data

    @property
    def win_rate(self) -> float:
        """Won / closed among the deals of this basis that have closed."""
        return self.won / self.closed if self.closed else 0.0

    def _at(self, curve: np.ndarray, days: np.ndarray) -> np.ndarray:
        index = np.floor(np.maximum(np.asarray(days, dtype=float), 0.0)).astype(int)
        return curve[np.minimum(index, len(curve) - 1)]

    def win_probability(self, age: np.ndarray) -> np.ndarray:
        """P(won at all | still open at `age` days)."""
        s_age = self._at(self.survival, age)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = (self.won_by[-1] - self._at(self.won_by, age)) / s_age
        return np.clip(np.where(s_age > 1e-9, p, 0.0), 0.0, 1.0)

    def won_between(self, age: np.ndarray, start: float, end: float) -> np.ndarray:
        """P(won between `start` and `end` days from now | still open at `age` days), per deal."""
        age = np.asarray(age, dtype=float)
        s_age = self._at(self.survival, age)
        gained = self._at(self.won_by, age + end) - self._at(self.won_by, age + start)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = gained / s_age
        return np.clip(np.where(s_age > 1e-9, p, 0.0), 0.0, 1.0)

    def win_timing(self, age: np.ndarray, start: float, end: float) -> np.ndarray:
        """P(a win lands between `start` and `end` days from now | the deal, open at `age`, is won):
        the shape of F_won after `age`; the constant tail hazard where the history has no win left."""
        age = np.asarray(age, dtype=float)
        left = self.won_by[-1] - self._at(self.won_by, age)
        gained = self._at(self.won_by, age + end) - self._at(self.won_by, age + start)
        with np.errstate(divide="ignore", invalid="ignore"):
            shaped = gained / left
        h = self.tail_hazard
        memoryless = np.exp(-h * start) - np.exp(-h * end) + np.zeros_like(age)
        return np.clip(np.where(left > 1e-9, shaped, memoryless), 0.0, 1.0)


def aalen_johansen(days: np.ndarray, outcome: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S, F_won) on whole days 0..max(days) from aggregated rows (one per day and outcome).

    Written out rather than taken from a library: lifelines and scikit-survival are not installed, and
    these lines on per-day counts need nothing more than numpy."""
    if len(days) == 0:
        return np.ones(1), np.zeros(1)
    horizon = int(days.max()) + 1
    won = np.bincount(days, weights=counts * (outcome == "won"), minlength=horizon)
    closed = np.bincount(days, weights=counts * (outcome != "open"), minlength=horizon)
    seen = np.bincount(days, weights=counts, minlength=horizon)
    at_risk = seen[::-1].cumsum()[::-1]  # still open at the start of day t
    with np.errstate(divide="ignore", invalid="ignore"):
        close_hazard = np.where(at_risk > 0, closed / at_risk, 0.0)
        win_hazard = np.where(at_risk > 0, won / at_risk, 0.0)
    survival = np.cumprod(1.0 - close_hazard)
    before = np.concatenate(([1.0], survival[:-1]))  # S(t - 1)
    return survival, np.cumsum(before * win_hazard)


def _estimate(basis: str, rows: list[HistoryRow]) -> BasisEstimate:
    won = sum(r.deals for r in rows if r.outcome == "won")
    closed = sum(r.deals for r in rows if r.outcome in ("won", "lost"))
    timed = [r for r in rows if r.days is not None and r.days >= 0]
    days = np.array([r.days for r in timed], dtype=int)
    outcome = np.array([r.outcome for r in timed], dtype=object)
    counts = np.array([r.deals for r in timed], dtype=float)
    survival, won_by = aalen_johansen(days, outcome, counts)
    wins = counts * (outcome == "won") if len(timed) else np.zeros(0)
    mean_days = float((days * wins).sum() / wins.sum()) if wins.sum() else 30.0
    return BasisEstimate(basis, won, closed, survival, won_by, 1.0 / max(mean_days, 1.0))


@dataclass(frozen=True)
class TimingModel:
    """Win rates and time-to-close curves per basis; `for_stage` picks the one a deal uses."""

    estimates: Mapping[str, BasisEstimate]

    def for_stage(self, stage: str) -> BasisEstimate:
        """The stage's own estimate when it has MIN_CLOSED closed deals, else the CREATED one."""
        own = self.estimates.get(stage)
        if own is not None and own.closed >= MIN_CLOSED:
            return own
        return self.estimates[CREATED]

    def win_rate_source(self, stage: str) -> str:
        """How a deal's P(win) is known when no model scores it, in words for the page."""
        return "stage history" if self.for_stage(stage).basis == stage else "team history"


def fit_timing(rows: Iterable[HistoryRow]) -> TimingModel:
    """Fit every basis found in `rows` (and CREATED, empty if absent)."""
    by_basis: dict[str, list[HistoryRow]] = defaultdict(list)
    for row in rows:
        if row.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {row.outcome!r}")
        by_basis[row.basis].append(row)
    by_basis.setdefault(CREATED, [])
    return TimingModel({basis: _estimate(basis, found) for basis, found in by_basis.items()})
