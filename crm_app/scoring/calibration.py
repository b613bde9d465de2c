"""Turning a model's raw margin (log-odds) into a probability that means what it says.

A boosted model ranks leads well but its raw probabilities are not to be trusted as "70 of 100 such
leads are won". A calibrator is fitted on leads the model was not trained on, mapping the margin to
the observed win rate. Both kinds are monotone (a higher margin never gets a lower probability), which
keeps the reasons' signs honest, and both store as plain JSON.

- Isotonic (pool adjacent violators): no shape assumed; needs a thousand or so leads.
- Platt: a logistic curve with two numbers; steady on a few hundred leads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

ISOTONIC_MIN_ROWS = 1000


class Calibrator(Protocol):
    method: str

    def __call__(self, margin: np.ndarray) -> np.ndarray: ...

    def as_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class IsotonicCalibrator:
    """A non-decreasing step curve through the observed win rates, linear between the steps."""

    margins: tuple[float, ...]
    probabilities: tuple[float, ...]
    method = "isotonic"

    @classmethod
    def fit(cls, margin: np.ndarray, won: np.ndarray) -> IsotonicCalibrator:
        margin = np.asarray(margin, dtype=float)
        won = np.asarray(won, dtype=float)
        if margin.size == 0:
            raise ValueError("cannot calibrate on no leads")
        values, inverse = np.unique(margin, return_inverse=True)
        sums = np.bincount(inverse, weights=won)
        weights = np.bincount(inverse).astype(float)
        # Pool adjacent violators: each block is [sum of outcomes, count, lowest margin, highest margin].
        blocks: list[list[float]] = []
        for total, weight, value in zip(sums, weights, values):
            blocks.append([total, weight, value, value])
            while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
                last = blocks.pop()
                blocks[-1][0] += last[0]
                blocks[-1][1] += last[1]
                blocks[-1][3] = last[3]
        xs: list[float] = []
        ys: list[float] = []
        for total, weight, low, high in blocks:
            rate = total / weight
            xs.append(low)
            ys.append(rate)
            if high > low:
                xs.append(high)
                ys.append(rate)
        return cls(tuple(xs), tuple(ys))

    def __call__(self, margin: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(margin, dtype=float), self.margins, self.probabilities)

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "margins": list(self.margins), "probabilities": list(self.probabilities)}


@dataclass(frozen=True)
class PlattCalibrator:
    """P(won) = 1 / (1 + exp(-(slope * margin + intercept))), slope kept positive."""

    slope: float
    intercept: float
    method = "platt"

    @classmethod
    def fit(cls, margin: np.ndarray, won: np.ndarray, iterations: int = 100) -> PlattCalibrator:
        x = np.asarray(margin, dtype=float)
        y = np.asarray(won, dtype=float)
        if x.size == 0:
            raise ValueError("cannot calibrate on no leads")
        positives = y.sum()
        negatives = y.size - positives
        # Platt's smoothed targets: never exactly 0 or 1, so a small sample cannot push to extremes.
        target = np.where(y > 0, (positives + 1) / (positives + 2), 1 / (negatives + 2))
        a, b = 1.0, 0.0
        ridge = 1e-6
        for _ in range(iterations):
            p = 1 / (1 + np.exp(-(a * x + b)))
            w = p * (1 - p)
            gradient = np.array([((p - target) * x).sum() + ridge * a, (p - target).sum()])
            hessian = np.array(
                [[(w * x * x).sum() + ridge, (w * x).sum()], [(w * x).sum(), w.sum() + ridge]]
            )
            try:
                step = np.linalg.solve(hessian, gradient)
            except np.linalg.LinAlgError:
                break
            a, b = a - step[0], b - step[1]
            if np.abs(step).max() < 1e-9:
                break
        # A model that ranks backwards on fresh leads is not trusted with a backwards curve: flat.
        return cls(max(float(a), 1e-3), float(b))

    def __call__(self, margin: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(self.slope * np.asarray(margin, dtype=float) + self.intercept)))

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "slope": self.slope, "intercept": self.intercept}


def fit_calibrator(margin: np.ndarray, won: np.ndarray) -> Calibrator:
    """Isotonic when there are enough leads to trust its steps, Platt otherwise."""
    if len(margin) >= ISOTONIC_MIN_ROWS:
        return IsotonicCalibrator.fit(margin, won)
    return PlattCalibrator.fit(margin, won)


def calibrator_from_dict(data: dict[str, Any]) -> Calibrator:
    if data["method"] == "isotonic":
        return IsotonicCalibrator(tuple(data["margins"]), tuple(data["probabilities"]))
    if data["method"] == "platt":
        return PlattCalibrator(float(data["slope"]), float(data["intercept"]))
    raise ValueError(f"unknown calibration method {data['method']!r}")
