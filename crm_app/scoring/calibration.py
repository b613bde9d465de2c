"""Turning a model's raw margin (log-odds) into a probability that means what it says.

A boosted model ranks leads well but its raw probabilities are not to be trusted as "70 of 100 such
leads are won". A calibrator is fitted on margins the model gave leads it was not trained on (the
out-of-fold margins of training, see training.py), mapping the margin to the observed win rate. Both
kinds are monotone (a higher margin never gets a lower probability), which keeps the reasons' signs
honest, and both store as plain JSON (never pickle), in the same format since the first version.

- Isotonic (scikit-learn's IsotonicRegression, pool adjacent violators): no shape assumed; needs a
  thousand or so leads. Stored as its thresholds, applied by linear interpolation between them,
  which is what IsotonicRegression.predict does.
- Platt (scikit-learn's LogisticRegression on the margin, with Platt's smoothed targets): a logistic
  curve with two numbers; steady on a few hundred leads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

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
        fitted = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        fitted.fit(margin, won)
        return cls(tuple(float(x) for x in fitted.X_thresholds_),
                   tuple(float(y) for y in fitted.y_thresholds_))

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
    def fit(cls, margin: np.ndarray, won: np.ndarray) -> PlattCalibrator:
        x = np.asarray(margin, dtype=float)
        y = np.asarray(won, dtype=float)
        if x.size == 0:
            raise ValueError("cannot calibrate on no leads")
        positives = y.sum()
        negatives = y.size - positives
        # Platt's smoothed targets: never exactly 0 or 1, so a small sample cannot push to extremes.
        # A target t is fitted as the row twice, won with weight t and lost with weight 1 - t.
        target = np.where(y > 0, (positives + 1) / (positives + 2), 1 / (negatives + 2))
        fitted = LogisticRegression(C=np.inf).fit(
            np.r_[x, x][:, None],
            np.r_[np.ones(x.size), np.zeros(x.size)],
            sample_weight=np.r_[target, 1 - target],
        )
        # A model that ranks backwards on fresh leads is not trusted with a backwards curve: flat.
        return cls(max(float(fitted.coef_[0, 0]), 1e-3), float(fitted.intercept_[0]))

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
