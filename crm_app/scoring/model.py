"""A scoring engine learned from the team's own won and lost deals, explained like the rubric.

`ModelScoringEngine` implements the same `ScoringEngine` interface as the rules: facts and `now` in,
a 0-100 score, its tier and reasons out. It holds a gradient-boosted tree model (XGBoost), a
calibrator and the feature spec it was trained with.

The score is the calibrated probability of winning, times 100, rounded. The reasons come from the
model's own per-lead contributions (XGBoost's exact TreeSHAP, `pred_contribs=True`), summed per group
of features and converted from log-odds to points of calibrated probability:

    Baseline for your team   +18   the score of a lead the model knows nothing special about
    Source is Referral       +12
    No engagement in 30 days  -8
    ...
    Other factors             +1   the smaller groups together

The points add up to the score exactly, and each group's points have the sign of its contribution:
the contributions that push up share the rise the positives cause, those that push down share the
fall (averaged over both orders of applying them, so neither side is favoured), and the totals are
rounded by largest remainder, which never turns a push up into a push down.

Pure: no Reflex, no SQL, no clock. Serialized without pickle: XGBoost's own UBJSON for the trees and
JSON for the rest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import xgboost as xgb

from crm_app.scoring.calibration import Calibrator, calibrator_from_dict
from crm_app.scoring.engine import LeadFacts, Reason, ScoreResult, tier_for
from crm_app.scoring.features import FeatureSpec

FORMAT_MAGIC = b"CRM-SCORING-MODEL/1\n"
BASELINE_TEXT = "Baseline for your team"
OTHER_TEXT = "Other factors"
TOP_REASONS = 5
# A rescore a moment after a split threshold is crossed, so float rounding cannot land just before it.
VALID_UNTIL_MARGIN = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Factor:
    """One group of features for one lead: what it says, its pull in log-odds and its points."""

    group: str
    text: str
    log_odds: float
    points: int


@dataclass(frozen=True, slots=True)
class Explanation:
    score: int
    probability: float
    baseline: int
    factors: tuple[Factor, ...]  # the shown groups, largest first; "Other factors" has group ""
    valid_until: datetime | None

    def result(self) -> ScoreResult:
        reasons = [Reason(self.baseline, BASELINE_TEXT)] if self.baseline else []
        reasons += [Reason(f.points, f.text) for f in self.factors if f.points]
        return ScoreResult(
            score=self.score, tier=tier_for(self.score), reasons=tuple(reasons), valid_until=self.valid_until
        )


def _round_half_up(values: np.ndarray) -> np.ndarray:
    return np.floor(values + 0.5).astype(int)


def apportion(values: Sequence[float], total: int) -> list[int]:
    """Whole numbers near `values` that add up to `total` (largest remainder). Each result is the
    value rounded down or up, so a positive value never becomes negative nor a negative positive."""
    floors = [math.floor(v) for v in values]
    remainder = total - sum(floors)
    fractions = sorted(range(len(values)), key=lambda i: (values[i] - floors[i]), reverse=True)
    result = list(floors)
    if 0 <= remainder <= len(values):
        for i in fractions[:remainder]:
            result[i] += 1
        return result
    # Only reachable through float rounding at a half: move the surplus where it keeps every sign.
    step = 1 if remainder > 0 else -1
    order = fractions if step > 0 else fractions[::-1]
    while remainder:
        moved = False
        for i in order:
            candidate = result[i] + step
            if remainder and ((values[i] >= 0 and candidate >= 0) or (values[i] <= 0 and candidate <= 0)):
                result[i] = candidate
                remainder -= step
                moved = True
        if not moved:  # nothing can move without a sign change: the total still has to hold
            result[order[0]] += remainder
            remainder = 0
    return result


def _split_thresholds(booster: xgb.Booster, columns: int) -> list[np.ndarray]:
    """Every split threshold of every column, sorted: where a value crossing changes the score."""
    found: list[set[float]] = [set() for _ in range(columns)]

    def walk(node: dict[str, Any]) -> None:
        if "split" in node:
            found[int(str(node["split"]).removeprefix("f"))].add(float(node["split_condition"]))
            for child in node.get("children", ()):
                walk(child)

    for tree in booster.get_dump(dump_format="json"):
        walk(json.loads(tree))
    return [np.array(sorted(values)) for values in found]


class ModelScoringEngine:
    """Scores leads with a trained booster, a calibrator and the feature spec they were built on."""

    name = "model"

    def __init__(
        self,
        booster: xgb.Booster,
        calibrator: Calibrator,
        spec: FeatureSpec,
        *,
        meta: dict[str, Any] | None = None,
        top_reasons: int = TOP_REASONS,
    ) -> None:
        self.booster = booster
        self.calibrator = calibrator
        self.spec = spec
        self.meta = dict(meta or {})
        self.top_reasons = top_reasons
        self._groups = spec.groups
        self._group_matrix = spec.group_matrix()
        thresholds = _split_thresholds(booster, len(spec.columns))
        # Only the columns that grow with time alone (days since ...) make a score expire.
        self._ageing = [(i, thresholds[i]) for i, c in enumerate(spec.columns) if c.ages and thresholds[i].size]

    # --- The Strategy interface ----------------------------------------------------------------

    def score(self, facts: LeadFacts, now: datetime) -> ScoreResult:
        """Score one lead as of `now`."""
        return self.explain_many([facts], now)[0].result()

    def score_many(self, facts: Sequence[LeadFacts], now: datetime) -> list[ScoreResult]:
        """Score many leads at once (one call into XGBoost): what bulk rescoring should use."""
        return [e.result() for e in self.explain_many(facts, now)]

    # --- Numbers -------------------------------------------------------------------------------

    def margins(self, features: np.ndarray) -> np.ndarray:
        """The model's raw log-odds for rows of features."""
        return self.booster.predict(xgb.DMatrix(features, missing=np.nan), output_margin=True).astype(float)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Calibrated P(won) for rows of features."""
        return self.calibrator(self.margins(features))

    def explain_many(self, facts: Sequence[LeadFacts], now: datetime | Sequence[datetime]) -> list[Explanation]:
        """Scores with every number behind their reasons, for many leads as of `now`, or each as of
        its own moment (the training rows' out-of-fold scores; no `valid_until` then)."""
        if not facts:
            return []
        features = self.spec.matrix(facts, now)
        contributions = self.booster.predict(
            xgb.DMatrix(features, missing=np.nan), pred_contribs=True
        ).astype(float)
        bias = contributions[:, -1]
        by_group = contributions[:, :-1] @ self._group_matrix
        up = np.where(by_group > 0, by_group, 0.0).sum(axis=1)
        down = np.where(by_group < 0, by_group, 0.0).sum(axis=1)

        def prob(margin: np.ndarray) -> np.ndarray:
            return self.calibrator(margin)

        p_base, p_all = prob(bias), prob(bias + up + down)
        p_up, p_down = prob(bias + up), prob(bias + down)
        # Shapley between "all that pushes up" and "all that pushes down", in probability points.
        up_points = 50 * ((p_up - p_base) + (p_all - p_down))
        down_points = 50 * ((p_down - p_base) + (p_all - p_up))
        with np.errstate(divide="ignore", invalid="ignore"):
            share_up = np.where(up[:, None] > 0, by_group / up[:, None], 0.0)
            share_down = np.where(down[:, None] < 0, by_group / down[:, None], 0.0)
        group_points = np.where(
            by_group > 0, share_up * up_points[:, None], np.where(by_group < 0, share_down * down_points[:, None], 0.0)
        )
        scores = np.clip(_round_half_up(100 * p_all), 0, 100)
        baselines = np.clip(_round_half_up(100 * p_base), 0, 100)
        expiries = self._valid_until(features, now) if isinstance(now, datetime) else [None] * len(facts)

        explanations = []
        for row in range(len(facts)):
            explanations.append(
                self._explain_row(
                    facts[row], features[row], by_group[row], group_points[row],
                    int(scores[row]), int(baselines[row]), float(p_all[row]), expiries[row],
                )
            )  # fmt: skip
        return explanations

    def _explain_row(
        self,
        facts: LeadFacts,
        features: np.ndarray,
        log_odds: np.ndarray,
        points: np.ndarray,
        score: int,
        baseline: int,
        probability: float,
        valid_until: datetime | None,
    ) -> Explanation:
        ranked = sorted((i for i in range(len(points)) if points[i] != 0), key=lambda i: -abs(points[i]))
        shown, rest = ranked[: self.top_reasons], ranked[self.top_reasons :]
        reals = [float(points[i]) for i in shown]
        # "Other factors" holds the rest; with nothing shown it takes whatever rounding leaves.
        other = bool(rest) or not shown
        if other:
            reals.append(float(sum(points[i] for i in rest)))
        whole = apportion(reals, score - baseline)
        factors = [
            Factor(self._groups[i], self.spec.describe(self._groups[i], features, facts), float(log_odds[i]), p)
            for i, p in zip(shown, whole)
        ]
        if other:
            factors.append(Factor("", OTHER_TEXT, float(sum(log_odds[i] for i in rest)), whole[-1]))
        factors.sort(key=lambda f: -abs(f.points))
        return Explanation(score, probability, baseline, tuple(factors), valid_until)

    def _valid_until(self, features: np.ndarray, now: datetime) -> list[datetime | None]:
        """When time alone next moves a lead's feature across a split, i.e. may change its score."""
        soonest = np.full(len(features), np.inf)
        for column, thresholds in self._ageing:
            values = features[:, column].astype(float)
            known = ~np.isnan(values)
            index = np.searchsorted(thresholds, np.where(known, values, np.inf), side="right")
            ahead = index < thresholds.size
            days = np.where(known & ahead, thresholds[np.minimum(index, thresholds.size - 1)] - values, np.inf)
            soonest = np.minimum(soonest, days)
        return [
            None if math.isinf(d) else now + timedelta(days=float(d)) + VALID_UNTIL_MARGIN for d in soonest
        ]

    # --- Storing -------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The engine as bytes for the model registry: a JSON header, then XGBoost's UBJSON."""
        header = json.dumps(
            {"spec": self.spec.as_dict(), "calibrator": self.calibrator.as_dict(), "meta": self.meta}
        ).encode()
        return FORMAT_MAGIC + len(header).to_bytes(8, "big") + header + bytes(self.booster.save_raw("ubj"))

    @classmethod
    def from_bytes(cls, blob: bytes) -> ModelScoringEngine:
        blob = bytes(blob)
        if not blob.startswith(FORMAT_MAGIC):
            raise ValueError("not a stored scoring model")
        start = len(FORMAT_MAGIC)
        size = int.from_bytes(blob[start : start + 8], "big")
        header = json.loads(blob[start + 8 : start + 8 + size])
        booster = xgb.Booster()
        booster.load_model(bytearray(blob[start + 8 + size :]))
        return cls(
            booster,
            calibrator_from_dict(header["calibrator"]),
            FeatureSpec.from_dict(header["spec"]),
            meta=header["meta"],
        )
