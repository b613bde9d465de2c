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

and for an open deal a days in its stage, P(won between days s and e from now) = (F_won(a+e) -
F_won(a+s)) / S(a), P(won at all) = (F_won(end) - F_won(a)) / S(a), with S and F_won estimated on the
deals that *stayed in the stage* at least a days (a deal still in New after 40 days is compared with
the deals that sat in New that long, not with every deal created 40 days ago, most of which moved on).
A deal that has sat in its stage far longer than the team's wins from it ever did is rightly unlikely
to be won.

The same holds for a deal's age since creation. A deal that took four months to reach Negotiation is
not a deal moving through the funnel at the usual pace, whatever its days in the stage. So the deals it
is compared with are those that, in the same stage, were open at least as long in the stage *and* at
least as old: each history deal is taken from its *landmark*, the first moment both held (t = max(days
in stage, the deal's age - the history deal's age when it entered the stage)), and the curves are
estimated on the time left from there (a landmark analysis). With no ages known (rows without
`entered`, e.g. imports with only created and closed dates) only the days in the stage condition, as
before. Ages are taken in whole weeks (AGE_STEP), past AGE_FINE_DAYS in steps of AGE_COARSE_STEP
(rounded down: "at least that old"), to keep the number of distinct curves small.

When the scoring model gives a deal's P(win), that replaces the estimate's and only the *timing* of a
win is taken from the history (the shape of F_won after age a). Past the longest time a win took,
a constant hazard of 1 / (mean days to a win) stands in.

`win_rate` (won / closed among the basis's closed deals) is the plain stage win rate that the weighted
pipeline (kanban, Today, Leads) shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

CREATED = "created"  # the basis timed from a deal's creation
MIN_CLOSED = 20  # closed deals a stage needs for its own estimates; fewer: the CREATED basis
AGE_STEP = 7  # a deal's age since creation is compared in whole weeks ...
AGE_FINE_DAYS, AGE_COARSE_STEP = 56, 28  # ... and past 8 weeks in steps of 4 weeks
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
    # Of those days, how many the deal stayed in the stage (it moved on, closed, or is still there at
    # the cut-off); None: all of them (the CREATED basis, or a deal that closed from the stage).
    stay: int | None = None
    # How old (whole days since creation) the deal was when it entered the stage; None: not known
    # (then its age does not condition).
    entered: int | None = None


def _at(curve: np.ndarray, days) -> np.ndarray:
    index = np.floor(np.maximum(np.asarray(days, dtype=float), 0.0)).astype(int)
    return curve[np.minimum(index, len(curve) - 1)]


@dataclass
class BasisEstimate:
    """One basis's history as per-day counts, and its curves conditioned on how long a deal has been
    in the stage: a deal still in Proposal after 20 days is compared with the deals that stayed in
    Proposal at least 20 days (not with every deal that entered Proposal 20 days ago, most of which
    have moved on), computed once per whole day and cached."""

    basis: str
    won: int
    closed: int
    stay: np.ndarray  # per row: whole days in the stage
    days: np.ndarray  # per row: whole days from entering the stage to the close (or the cut-off)
    outcome: np.ndarray  # per row: won | lost | open
    counts: np.ndarray  # per row: deals
    tail_hazard: float  # per day, for a win's timing past the end of the data
    entered: np.ndarray | None = None  # per row: age in whole days when it entered the stage (-1: unknown)
    _curves: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def win_rate(self) -> float:
        """Won / closed among the deals of this basis that have closed."""
        return self.won / self.closed if self.closed else 0.0

    def curves(self, stayed: int, aged: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(S, F_won) over the time left from each history deal's landmark, on the deals that were in the
        stage at least `stayed` whole days and, where their age at entry is known, at least `aged` days
        old (see the module's docstring). Day 0 is the landmark; with `aged` 0 the landmark is `stayed`
        for every deal."""
        self._fill([(stayed, aged)])
        return self._curves[(stayed, aged)]

    def _fill(self, keys) -> None:
        """Compute the curves of many (stayed, aged) keys at once: aalen_johansen's sums for a block of
        keys as one 2-D histogram, instead of one call per key (thousands per forecast)."""
        todo = list(dict.fromkeys(k for k in map(tuple, keys) if k not in self._curves))
        if not todo:
            return
        rows = len(self.days)
        if rows == 0:
            for key in todo:
                self._curves[key] = (np.ones(1), np.zeros(1))
            return
        horizon = int(self.days.max()) + 1
        weights = (self.counts * (self.outcome == "won"), self.counts * (self.outcome != "open"), self.counts)
        known = self.entered >= 0 if self.entered is not None else None
        block = max(1, 2_000_000 // rows)  # keys per block: bounds memory at ~2M cells
        for first in range(0, len(todo), block):
            chunk = np.array(todo[first:first + block], dtype=int)
            stayed, aged = chunk[:, :1], chunk[:, 1:]
            landmark = np.repeat(stayed, rows, axis=1)
            if known is not None:
                by_age = np.where(known[None, :] & (aged > 0), aged - self.entered[None, :], 0)
                landmark = np.maximum(landmark, by_age)
            keep = self.stay[None, :] >= landmark
            cell = (np.arange(len(chunk))[:, None] * horizon + (self.days[None, :] - landmark))[keep]
            won, closed, seen = (
                np.bincount(cell, weights=np.broadcast_to(w, keep.shape)[keep],
                            minlength=len(chunk) * horizon).reshape(len(chunk), horizon)
                for w in weights)
            at_risk = seen[:, ::-1].cumsum(axis=1)[:, ::-1]  # still open at the start of day t
            with np.errstate(divide="ignore", invalid="ignore"):
                close_hazard = np.where(at_risk > 0, closed / at_risk, 0.0)
                win_hazard = np.where(at_risk > 0, won / at_risk, 0.0)
            survival = np.cumprod(1.0 - close_hazard, axis=1)
            before = np.concatenate((np.ones((len(chunk), 1)), survival[:, :-1]), axis=1)
            won_by = np.cumsum(before * win_hazard, axis=1)
            for j, key in enumerate(todo[first:first + block]):
                self._curves[key] = (survival[j], won_by[j])

    def _aged_key(self, stayed: np.ndarray, aged: np.ndarray | None) -> np.ndarray:
        """The age (whole weeks, in days) each deal is conditioned on; 0 where it changes no landmark."""
        if aged is None or self.entered is None or not (self.entered >= 0).any():
            return np.zeros(stayed.shape, dtype=int)
        days = np.floor(np.maximum(np.asarray(aged, dtype=float), 0.0)).astype(int)
        weeks = np.where(days < AGE_FINE_DAYS, days // AGE_STEP * AGE_STEP,
                         AGE_FINE_DAYS + (days - AGE_FINE_DAYS) // AGE_COARSE_STEP * AGE_COARSE_STEP)
        youngest = int(self.entered[self.entered >= 0].min())
        return np.where(weeks - youngest > stayed, weeks, 0)

    def _grouped_curves(self, age, aged):
        """(offsets past each deal's whole day, S and F_won of each deal's group as rows of two
        matrices, each deal's row): deals that share a (days in stage, age) key share curves, computed
        together (_fill). Every curve of a basis has the same length (its longest time to close), so
        the deals' values are read with one fancy index, not one loop per group."""
        age = np.maximum(np.asarray(age, dtype=float), 0.0)
        whole = np.floor(age).astype(int)
        pairs = np.stack([whole, self._aged_key(whole, aged)], axis=1)
        groups, inverse = np.unique(pairs, axis=0, return_inverse=True)
        keys = [tuple(g) for g in groups.tolist()]
        self._fill(keys)
        survival = np.stack([self._curves[k][0] for k in keys])
        won_by = np.stack([self._curves[k][1] for k in keys])
        return age - whole, survival, won_by, inverse.reshape(-1)

    def windows(self, age, spans: Sequence[tuple[float, float]], aged=None, *,
                timing: bool = False) -> np.ndarray:
        """Per deal (rows) and span (columns, (start, end) in days from now): P(won in the span | still in
        the stage after `age` days, and `aged` days old if given); with `timing`, P(a win lands in the
        span | the deal is won) instead: the shape of F_won from the deal's day on, the constant tail
        hazard where the history has no win left."""
        if len(np.atleast_1d(age)) == 0:
            return np.zeros((0, len(spans)))
        offset, survival, won_by, row = self._grouped_curves(age, aged)
        starts = np.array([s for s, _ in spans], dtype=float)
        ends = np.array([e for _, e in spans], dtype=float)
        last = won_by.shape[1] - 1

        def at(curves, days):
            return curves[row[:, None], np.minimum(np.floor(np.maximum(days, 0.0)).astype(int), last)]

        a = offset[:, None]
        gained = at(won_by, a + ends) - at(won_by, a + starts)
        with np.errstate(divide="ignore", invalid="ignore"):
            if timing:
                left = won_by[row, -1][:, None] - at(won_by, a)
                h = self.tail_hazard
                memoryless = np.exp(-h * starts) - np.exp(-h * ends)
                out = np.where(left > 1e-9, gained / left, memoryless[None, :])
            else:
                s_age = at(survival, a)
                out = np.where(s_age > 1e-9, gained / s_age, 0.0)
        return np.clip(out, 0.0, 1.0)

    def win_probability(self, age, aged=None) -> np.ndarray:
        """P(won at all | still in the stage after `age` days, and `aged` days old if given)."""
        if len(np.atleast_1d(age)) == 0:
            return np.zeros(0)
        offset, survival, won_by, row = self._grouped_curves(age, aged)
        day = np.minimum(np.floor(offset).astype(int), won_by.shape[1] - 1)
        s_age = survival[row, day]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(s_age > 1e-9, (won_by[row, -1] - won_by[row, day]) / s_age, 0.0)
        return np.clip(out, 0.0, 1.0)

    def won_between(self, age, start: float, end: float, aged=None) -> np.ndarray:
        """P(won between `start` and `end` days from now | still in the stage after `age` days, and
        `aged` days old if given)."""
        return self.windows(age, [(start, end)], aged)[:, 0]

    def win_timing(self, age, start: float, end: float, aged=None) -> np.ndarray:
        """P(a win lands between `start` and `end` days from now | the deal, `age` days in its stage, is
        won): see `windows`."""
        return self.windows(age, [(start, end)], aged, timing=True)[:, 0]

    def resampled(self, rng: np.random.Generator) -> BasisEstimate:
        """One bootstrap draw: the basis's deals resampled with replacement (as many as it has), the
        undated won and lost ones included, so the win rate and the curves carry the error of having
        learned them from this many deals: a few dozen closed deals move a lot between draws, thousands
        hardly. On aggregated rows, resampling deals with replacement is a multinomial over the rows."""
        timed_won = int(round((self.counts * (self.outcome == "won")).sum())) if len(self.counts) else 0
        timed_lost = int(round((self.counts * (self.outcome == "lost")).sum())) if len(self.counts) else 0
        undated = np.array([max(self.won - timed_won, 0), max(self.closed - self.won - timed_lost, 0)],
                           dtype=float)
        weights = np.concatenate((self.counts, undated))
        total = int(round(weights.sum()))
        if total == 0:
            return self
        drawn = rng.multinomial(total, weights / weights.sum()).astype(float)
        counts, (undated_won, undated_lost) = drawn[:len(self.counts)], drawn[len(self.counts):]
        won = int((counts * (self.outcome == "won")).sum() + undated_won)
        closed = int((counts * (self.outcome != "open")).sum() + undated_won + undated_lost)
        keep = counts > 0
        wins = counts * (self.outcome == "won")
        mean_days = float((self.days * wins).sum() / wins.sum()) if wins.sum() else 30.0
        return BasisEstimate(self.basis, won, closed, self.stay[keep], self.days[keep], self.outcome[keep],
                             counts[keep], 1.0 / max(mean_days, 1.0),
                             None if self.entered is None else self.entered[keep])


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


def _estimate(basis: str, days: np.ndarray, stay: np.ndarray, entered: np.ndarray, outcome: np.ndarray,
              counts: np.ndarray) -> BasisEstimate:
    """One basis from its rows as columns (days, stay and entered -1 where not known)."""
    won = int(counts[outcome == "won"].sum())
    closed = int(counts[(outcome == "won") | (outcome == "lost")].sum())
    timed = days >= 0
    days, outcome, counts, entered = days[timed], outcome[timed], counts[timed], entered[timed]
    stay = np.where(stay[timed] < 0, days, np.minimum(stay[timed], days))
    wins = counts * (outcome == "won")
    mean_days = float((days * wins).sum() / wins.sum()) if wins.sum() else 30.0
    return BasisEstimate(basis, won, closed, stay, days, outcome, counts, 1.0 / max(mean_days, 1.0),
                         entered if (entered >= 0).any() else None)


@dataclass(frozen=True)
class TimingModel:
    """Win rates and time-to-close curves per basis; `for_stage` picks the one a deal uses."""

    estimates: Mapping[str, BasisEstimate]
    # Bootstrap draws already made of this fit, with the curves they computed (bootstrap_draws).
    _draws: dict = field(default_factory=dict, compare=False, repr=False)

    def for_stage(self, stage: str) -> BasisEstimate:
        """The stage's own estimate when it has MIN_CLOSED closed deals, else the CREATED one."""
        own = self.estimates.get(stage)
        if own is not None and own.closed >= MIN_CLOSED:
            return own
        return self.estimates[CREATED]

    def win_rate_source(self, stage: str) -> str:
        """How a deal's P(win) is known when no model scores it, in words for the page."""
        return "stage history" if self.for_stage(stage).basis == stage else "team history"

    def resampled(self, rng: np.random.Generator) -> TimingModel:
        """One bootstrap draw of every basis (each resampled on its own: a deal's rows in different
        bases are not tied together, a simplification that keeps the draw a multinomial per basis)."""
        return TimingModel({basis: estimate.resampled(rng) for basis, estimate in self.estimates.items()})

    def bootstrap_draws(self, count: int, seed: int) -> list[TimingModel]:
        """`count` bootstrap draws from a generator seeded with `seed`, made once per fit and kept with
        it: a forecast rebuilt on the same fit (another rep, a moved deal) reuses them and the curves
        they already computed, which are most of a forecast's cost."""
        key = (count, seed)
        if key not in self._draws:
            rng = np.random.default_rng(seed)
            self._draws[key] = [self.resampled(rng) for _ in range(count)]
        return self._draws[key]


def fit_timing(rows: Iterable[HistoryRow]) -> TimingModel:
    """Fit every basis found in `rows` (and CREATED, empty if absent)."""
    rows = list(rows)
    for row in rows:
        if row.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {row.outcome!r}")
    unknown = -1
    return fit_timing_columns(
        basis=np.array([r.basis for r in rows], dtype=object),
        days=np.array([unknown if r.days is None else r.days for r in rows], dtype=int),
        stay=np.array([unknown if r.stay is None else r.stay for r in rows], dtype=int),
        entered=np.array([unknown if r.entered is None else r.entered for r in rows], dtype=int),
        outcome=np.array([r.outcome for r in rows], dtype=object),
        deals=np.array([r.deals for r in rows], dtype=float),
    )


def fit_timing_columns(*, basis: np.ndarray, days: np.ndarray, stay: np.ndarray, entered: np.ndarray,
                       outcome: np.ndarray, deals: np.ndarray) -> TimingModel:
    """`fit_timing` on the history as columns (one entry per HistoryRow; days, stay and entered -1 where
    not known): what the service reads from SQL, without a Python object per row."""
    estimates = {}
    for name in sorted(set(basis.tolist()) | {CREATED}):  # sorted: the bootstrap draws in this order
        mine = basis == name
        estimates[name] = _estimate(name, days[mine], stay[mine], entered[mine], outcome[mine], deals[mine])
    return TimingModel(estimates)
