"""How well a score predicts wins, in the numbers a sales manager and a data scientist both check, and
how sure each number is.

Every function takes the predicted probabilities of winning (a rule score / 100 counts as one) and the
outcomes (1 won, 0 lost). ROC-AUC, PR-AUC and the Brier score are scikit-learn's; ties are treated
fairly everywhere: a score that gives many leads the same number gets no credit for the order in which
they happen to be listed.

A figure on a few hundred deals wobbles, so each one comes with an interval: a 95% bootstrap interval
over the deals it was measured on (`bootstrap_intervals`), or the spread over the folds of a
cross-validation (`fold_spread`). `figure_text` prints a figure with no more decimals than its interval
supports.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.utils import resample

TOP_SHARE = 0.2
CALIBRATION_BINS = 10
# The measures every report shows, in this order, with how many decimals they get when precise.
MEASURES = ("roc_auc", "pr_auc", "brier", "top_20_win_rate", "top_20_lift")
BOOTSTRAP_ROUNDS = 200
CONFIDENCE = 0.95


def roc_auc(probability: np.ndarray, won: np.ndarray) -> float | None:
    """The chance that a random won lead is scored above a random lost one (ties count half).
    None when the leads are all won or all lost."""
    won = np.asarray(won, dtype=bool)
    if won.all() or not won.any():
        return None
    return float(roc_auc_score(won, np.asarray(probability, dtype=float)))


def pr_auc(probability: np.ndarray, won: np.ndarray) -> float | None:
    """Average precision: the precision at each recall step, each distinct score a single step.
    None when no lead was won."""
    won = np.asarray(won, dtype=bool)
    if not won.any():
        return None
    return float(average_precision_score(won, np.asarray(probability, dtype=float)))


def brier(probability: np.ndarray, won: np.ndarray) -> float:
    """Mean squared distance between the probability and what happened (lower is better)."""
    return float(brier_score_loss(np.asarray(won, dtype=float), np.asarray(probability, dtype=float),
                                  labels=[0.0, 1.0]))


def top_share_win_rate(probability: np.ndarray, won: np.ndarray, share: float = TOP_SHARE) -> float:
    """The win rate among the top `share` of leads by score. Leads tied at the cut are taken in
    proportion, as if the tie were broken at random.

    Written here because scikit-learn has no precision-at-a-share that splits a tie at the cut: the
    rules give whole groups of leads the same score, and cutting such a group in list order would
    credit (or blame) them for an order that means nothing."""
    probability = np.asarray(probability, dtype=float)
    won = np.asarray(won, dtype=float)
    wanted = max(1, math.ceil(share * probability.size))
    order = np.argsort(-probability, kind="stable")
    cut = probability[order[wanted - 1]]  # the score at the cut
    above = probability > cut
    tied = probability == cut
    take = wanted - int(above.sum())
    wins = won[above].sum() + won[tied].sum() * take / int(tied.sum())
    return float(wins / wanted)


@dataclass(frozen=True)
class CalibrationBin:
    predicted: float  # mean predicted probability in the bin
    observed: float  # share of the bin's leads that were won
    count: int


def calibration_table(probability: np.ndarray, won: np.ndarray, bins: int = CALIBRATION_BINS) -> list[CalibrationBin]:
    """Leads in `bins` equal-sized groups from lowest to highest score (deciles by default):
    the mean predicted probability next to the observed win rate in each."""
    probability = np.asarray(probability, dtype=float)
    won = np.asarray(won, dtype=float)
    order = np.argsort(probability, kind="stable")
    return [
        CalibrationBin(float(probability[part].mean()), float(won[part].mean()), int(part.size))
        for part in np.array_split(order, min(bins, probability.size))
        if part.size
    ]


@dataclass(frozen=True)
class Evaluation:
    """One scorer's results on one set of leads."""

    leads: int
    won: int
    base_rate: float
    roc_auc: float | None
    pr_auc: float | None
    brier: float
    top_20_win_rate: float
    top_20_lift: float | None
    calibration: list[CalibrationBin] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        return cls(**{**data, "calibration": [CalibrationBin(**b) for b in data["calibration"]]})


def measures(probability: np.ndarray, won: np.ndarray) -> dict[str, float | None]:
    """The five headline measures (no calibration table): what intervals are computed over."""
    probability = np.asarray(probability, dtype=float)
    won = np.asarray(won, dtype=float)
    base_rate = float(won.mean())
    top = top_share_win_rate(probability, won)
    return {
        "roc_auc": roc_auc(probability, won),
        "pr_auc": pr_auc(probability, won),
        "brier": brier(probability, won),
        "top_20_win_rate": top,
        "top_20_lift": top / base_rate if base_rate else None,
    }


def evaluate(probability: np.ndarray, won: np.ndarray) -> Evaluation:
    """All the measures for one scorer on one set of leads."""
    probability = np.asarray(probability, dtype=float)
    won = np.asarray(won, dtype=float)
    if probability.shape != won.shape or probability.size == 0:
        raise ValueError("need one probability per lead, and at least one lead")
    return Evaluation(
        leads=int(won.size),
        won=int(won.sum()),
        base_rate=float(won.mean()),
        **measures(probability, won),
        calibration=calibration_table(probability, won),
    )


# --- How sure a figure is --------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """Where a measure would likely land on other deals like these: low and high ends, and how that
    was found ("bootstrap": 95% over resampled deals; "folds": mean +- one standard deviation over
    the folds of a cross-validation)."""

    low: float
    high: float
    kind: str

    def as_list(self) -> list[float]:
        return [self.low, self.high]


def bootstrap_intervals(
    probabilities: Mapping[str, np.ndarray],
    won: np.ndarray,
    *,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
) -> dict[str, dict[str, Interval | None]]:
    """95% percentile intervals of every measure, per scorer, over `rounds` resamples of the deals
    (stratified: each resample keeps the share of wins). Scorers are resampled together, so their
    intervals describe the same draws. None for a measure that is undefined on these deals.

    A resample is scikit-learn's `resample` as before; what it draws is kept as how many times each
    deal was drawn, and every measure of every resample is computed from those counts at once
    (`resampled_measures`): the same figures as `measures` on each resample, without a round of
    scikit-learn calls per resample and measure (400 resamples took a minute at 10,000 deals)."""
    won = np.asarray(won, dtype=float)
    rows = np.arange(won.size)
    random_state = np.random.RandomState(seed)
    counts = np.zeros((rounds, won.size))
    for r in range(rounds):
        sample = resample(rows, replace=True, n_samples=won.size, stratify=won, random_state=random_state)
        counts[r] = np.bincount(sample, minlength=won.size)
    tail = 100 * (1 - CONFIDENCE) / 2
    result: dict[str, dict[str, Interval | None]] = {}
    for name, probability in probabilities.items():
        result[name] = {}
        for measure, values in resampled_measures(np.asarray(probability, dtype=float), won, counts).items():
            values = values[~np.isnan(values)]
            if len(values) < rounds / 2:
                result[name][measure] = None
                continue
            low, high = np.percentile(values, [tail, 100 - tail])
            result[name][measure] = Interval(float(low), float(high), "bootstrap")
    return result


def resampled_measures(probability: np.ndarray, won: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    """`measures` of many resamples at once, each resample given as how many times it drew each deal
    (a row of `counts`); NaN where a measure is undefined. Ties are groups of equal scores, as in
    `measures`: a resample holds a deal's copies at its score, so each distinct score is one step."""
    rounds = counts.shape[0]
    order = np.argsort(-probability, kind="stable")
    score = probability[order]
    starts = np.flatnonzero(np.r_[True, score[1:] != score[:-1]])  # distinct scores, highest first
    drawn = counts[:, order]
    wins = np.add.reduceat(drawn * won[order], starts, axis=1)  # per resample and distinct score
    losses = np.add.reduceat(drawn * (1 - won[order]), starts, axis=1)
    size = drawn.sum(axis=1)
    positives, negatives = wins.sum(axis=1), losses.sum(axis=1)
    cum_wins, cum_losses = np.cumsum(wins, axis=1), np.cumsum(losses, axis=1)
    nan = np.full(rounds, np.nan)
    both = (positives > 0) & (negatives > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        # ROC-AUC: each win against the losses scored below it, ties counting half.
        beaten = (wins * (negatives[:, None] - cum_losses + 0.5 * losses)).sum(axis=1)
        roc = np.where(both, beaten / (positives * negatives), nan)
        # Average precision: each step's share of the wins times the precision at that step.
        taken = cum_wins + cum_losses
        precision = np.divide(cum_wins, taken, out=np.zeros_like(cum_wins), where=taken > 0)
        pr = np.where(positives > 0, (wins * precision).sum(axis=1) / positives, nan)
        brier_values = (drawn * (score - won[order]) ** 2).sum(axis=1) / size
        # Win rate in the top share: ties at the cut taken in proportion (top_share_win_rate).
        wanted = np.maximum(1, np.ceil(TOP_SHARE * size))
        taken_all = np.cumsum(wins + losses, axis=1)
        cut = (taken_all < wanted[:, None]).sum(axis=1)  # the distinct score the cut falls in
        at = np.arange(rounds)
        above = np.where(cut > 0, taken_all[at, cut - 1], 0.0)
        wins_above = np.where(cut > 0, cum_wins[at, cut - 1], 0.0)
        tied = wins[at, cut] + losses[at, cut]
        top = (wins_above + wins[at, cut] * (wanted - above) / tied) / wanted
        base_rate = positives / size
        lift = np.where(base_rate > 0, top / base_rate, nan)
    return {"roc_auc": roc, "pr_auc": pr, "brier": brier_values, "top_20_win_rate": top, "top_20_lift": lift}


def fold_spread(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and standard deviation (ddof=1) of one measure over the folds of a cross-validation."""
    known = [v for v in values if v is not None]
    if not known:
        return None, None
    return float(np.mean(known)), (float(np.std(known, ddof=1)) if len(known) > 1 else None)


# --- Printing a figure no more precisely than it is known ---------------------------------------------

# Decimals for a precise figure, and the interval width beyond which one decimal fewer is printed
# (a win rate's decimals are those of its percentage).
_DIGITS = {"roc_auc": (3, 0.04), "pr_auc": (3, 0.04), "brier": (4, 0.004), "top_20_lift": (2, 0.4),
           "top_20_win_rate": (1, 0.05)}


def digits_for(measure: str, *intervals: Interval | None) -> int:
    """Decimals to print a measure with: one fewer when an interval is wide (a small holdout). Given
    several (model and rules on one row), the fewest, so a row's figures line up."""
    digits, wide = _DIGITS.get(measure, (3, 0.04))
    if any(i is not None and i.high - i.low > wide for i in intervals):
        return digits - 1
    return digits


def figure_text(measure: str, value: float | None, interval: Interval | None = None,
                *, with_interval: bool = True, digits: int | None = None) -> str:
    """A measure for a person: "0.861 (0.842-0.879)" (bootstrap), "0.907 +- 0.010" (folds), "n/a".
    Win rates print as percentages, lifts with an x. `digits` overrides digits_for."""
    if value is None:
        return "n/a"
    places = digits_for(measure, interval) if digits is None else digits
    if measure == "top_20_win_rate":
        number = lambda v: f"{v:.{places}%}"  # noqa: E731
    else:
        suffix = "x" if measure == "top_20_lift" else ""
        number = lambda v: f"{v:.{places}f}{suffix}"  # noqa: E731
    text = number(value)
    if not with_interval or interval is None:
        return text
    if interval.kind == "folds":
        half = (interval.high - interval.low) / 2
        return f"{text} +- {number(half)}"
    return f"{text} ({number(interval.low)}-{number(interval.high)})"


GAINS_SHARES = tuple(i / 10 for i in range(1, 11))


def gains_curve(probability: np.ndarray, won: np.ndarray, shares: tuple[float, ...] = GAINS_SHARES) -> list[float]:
    """For each share of leads taken best score first (10%, 20%, ...), the share of all wins among
    them: the cumulative gains chart. A score that knows nothing follows the diagonal."""
    probability = np.asarray(probability, dtype=float)
    won = np.asarray(won, dtype=float)
    total = won.sum()
    if not total or not probability.size:
        return [0.0 for _ in shares]
    return [
        float(top_share_win_rate(probability, won, share) * max(1, math.ceil(share * probability.size)) / total)
        for share in shares
    ]
