"""How well a score predicts wins, in the numbers a sales manager and a data scientist both check.

Every function takes the predicted probabilities of winning (a rule score / 100 counts as one) and the
outcomes (1 won, 0 lost). Ties are treated fairly everywhere: a score that gives many leads the same
number gets no credit for the order in which they happen to be listed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.stats import rankdata

TOP_SHARE = 0.2
CALIBRATION_BINS = 10


def roc_auc(probability: np.ndarray, won: np.ndarray) -> float | None:
    """The chance that a random won lead is scored above a random lost one (ties count half).
    None when the leads are all won or all lost."""
    won = np.asarray(won, dtype=bool)
    positives, negatives = int(won.sum()), int((~won).sum())
    if not positives or not negatives:
        return None
    ranks = rankdata(probability)  # average ranks for ties
    return float((ranks[won].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def pr_auc(probability: np.ndarray, won: np.ndarray) -> float | None:
    """Average precision: the precision at each recall step, each distinct score a single step."""
    probability = np.asarray(probability, dtype=float)
    won = np.asarray(won, dtype=float)
    positives = won.sum()
    if not positives:
        return None
    order = np.argsort(-probability, kind="stable")
    sorted_p, sorted_won = probability[order], won[order]
    # The last index of each run of equal scores: a threshold can only fall between runs.
    last_of_run = np.r_[np.nonzero(np.diff(sorted_p))[0], sorted_p.size - 1]
    true_positives = np.cumsum(sorted_won)[last_of_run]
    precision = true_positives / (last_of_run + 1)
    recall = true_positives / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def brier(probability: np.ndarray, won: np.ndarray) -> float:
    """Mean squared distance between the probability and what happened (lower is better)."""
    return float(np.mean((np.asarray(probability, dtype=float) - np.asarray(won, dtype=float)) ** 2))


def top_share_win_rate(probability: np.ndarray, won: np.ndarray, share: float = TOP_SHARE) -> float:
    """The win rate among the top `share` of leads by score. Leads tied at the cut are taken in
    proportion, as if the tie were broken at random."""
    probability = np.asarray(probability, dtype=float)
    won = np.asarray(won, dtype=float)
    wanted = max(1, math.ceil(share * probability.size))
    taken = 0.0
    wins = 0.0
    for value in np.unique(probability)[::-1]:
        tied = probability == value
        count = int(tied.sum())
        take = min(count, wanted - taken)
        wins += won[tied].sum() * take / count
        taken += take
        if taken >= wanted:
            break
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


def evaluate(probability: np.ndarray, won: np.ndarray) -> Evaluation:
    """All the measures for one scorer on one set of leads."""
    probability = np.asarray(probability, dtype=float)
    won = np.asarray(won, dtype=float)
    if probability.shape != won.shape or probability.size == 0:
        raise ValueError("need one probability per lead, and at least one lead")
    base_rate = float(won.mean())
    top = top_share_win_rate(probability, won)
    return Evaluation(
        leads=int(won.size),
        won=int(won.sum()),
        base_rate=base_rate,
        roc_auc=roc_auc(probability, won),
        pr_auc=pr_auc(probability, won),
        brier=brier(probability, won),
        top_20_win_rate=top,
        top_20_lift=top / base_rate if base_rate else None,
        calibration=calibration_table(probability, won),
    )


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
