"""A scoring engine learned from the team's own won and lost deals, explained like the rubric.

`ModelScoringEngine` implements the same `ScoringEngine` interface as the rules: facts and `now` in,
a 0-100 score, its tier and reasons out. It holds a gradient-boosted tree model (XGBoost, trained
monotone in every prospect-activity feature: see features.py), a calibrator and the feature spec.

The score is the calibrated probability of winning, times 100, rounded. The reasons split it in two:

    Baseline for your team        +18   a lead with no activity yet and nothing known about it
    Source is Referral            +12   } the lead's profile: XGBoost's exact TreeSHAP contributions
    Company has 40 employees       -3   } on the lead *without* its activity, per group
    Asked for pricing on 2 Dec    +21   } the prospect's activity, kind by kind: what adding that
    Replied 2 times, last on 1 Dec +6   } kind's activities adds to the calibrated probability
    Other factors                  +1   the smallest profile groups together (at most a few points)

- Activity is credited in a fixed order, strongest signals first (`ACTIVITY_ORDER`): pricing
  requests, then demo requests, replies, ... Each step adds one kind's activities to the lead as
  it stood after the steps before. Because the model is monotone in activity, no step can lower the
  score: buying signals are never shown pushing a score down, and every pricing and demo request is
  named with its date, whatever its points.
- Absences are no reasons ("No page visit", "Company size unknown"): what a lead with nothing known
  scores is folded into the baseline.
- A rep's own calls, emails and notes are not features, so they are never a reason.

Profile points are in calibrated probability too: the groups that push up share the rise the
positives cause, those that push down share the fall (averaged over both orders of applying them),
and all points are rounded by largest remainder so they add up to the score exactly without turning a
push up into a push down.

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

from crm_app.domain import ActivityKind
from crm_app.scoring.calibration import Calibrator, calibrator_from_dict
from crm_app.scoring.engine import LeadFacts, Reason, ScoreResult, next_activity_at, sooner, tier_for
from crm_app.scoring.features import ACTIVITY_KINDS, ACTIVITY_ORDER, FeatureSpec
from crm_app.scoring.phrases import LISTED_KINDS, activity_key, activity_phrase

# Version 2: features without a rep's own activity, monotone in the prospect's (older models cannot
# be read by this code: they are retrained).
FORMAT_MAGIC = b"CRM-SCORING-MODEL/2\n"
BASELINE_TEXT = "Baseline for your team"
OTHER_TEXT = "Other factors"
TOP_REASONS = 5
# "Other factors" holds at most this many points (either way): past it, more profile groups are named.
OTHER_MAX_POINTS = 3.0
# A rescore a moment after a split threshold is crossed, so float rounding cannot land just before it.
VALID_UNTIL_MARGIN = timedelta(minutes=1)
_PROSPECT_KINDS = frozenset(ACTIVITY_KINDS)  # the kinds that are features (a rep's own work is not)


@dataclass(frozen=True, slots=True)
class Factor:
    """One group of features for one lead: what it says, its pull in log-odds and its points."""

    group: str
    text: str
    log_odds: float
    points: int
    key: str = ""


@dataclass(frozen=True, slots=True)
class Explanation:
    score: int
    probability: float
    baseline: int
    factors: tuple[Factor, ...]  # the shown groups, largest first; "Other factors" has group ""
    valid_until: datetime | None

    def result(self) -> ScoreResult:
        return ScoreResult(score=self.score, tier=tier_for(self.score),
                           reasons=tuple(Reason(*reason) for reason in self.reason_parts()),
                           valid_until=self.valid_until)

    def reason_parts(self) -> list[tuple[int, str, str]]:
        """The result's reasons as (points, text, key), without making them (training stores 100,000
        deals' reasons as text: services/model_training._reasons_json)."""
        reasons = [(self.baseline, BASELINE_TEXT, "baseline")] if self.baseline else []
        # A pricing or demo request is named even when the model gives it no points.
        reasons += [(f.points, f.text, f.key) for f in self.factors if f.points or f.key in _LISTED_KEYS]
        return reasons


class OutdatedModel(ValueError):
    """A stored model of an earlier format: the app scores with the rules until one is trained again."""


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


def _tree_splits(booster: xgb.Booster) -> list[list[tuple[int, np.ndarray]]]:
    """Per tree, each column it splits on with that tree's split values there, sorted (as XGBoost's
    dump prints them: nine significant digits, so each is its float32 exactly)."""
    trees = []

    def walk(node: dict[str, Any], found: dict[int, set[float]]) -> None:
        if "split" in node:
            found.setdefault(int(str(node["split"]).removeprefix("f")), set()).add(float(node["split_condition"]))
            for child in node.get("children", ()):
                walk(child, found)

    for tree in booster.get_dump(dump_format="json"):
        found: dict[int, set[float]] = {}
        walk(json.loads(tree), found)
        trees.append([(column, np.array(sorted(values))) for column, values in sorted(found.items())])
    return trees


def _split_thresholds(trees: list[list[tuple[int, np.ndarray]]], columns: int) -> list[np.ndarray]:
    """Every split threshold of every column over all trees, sorted: where a value crossing changes the
    score."""
    found: list[set[float]] = [set() for _ in range(columns)]
    for splits in trees:
        for column, values in splits:
            found[column].update(values.tolist())
    return [np.array(sorted(values)) for values in found]


def dmatrix(features: np.ndarray, label: np.ndarray | None = None) -> xgb.DMatrix:
    """XGBoost's matrix of rows of features (NaN: unknown), built on one thread like every fit and
    prediction here (training.XGB_PARAMS): on the shared machine, all threads took twice as long."""
    return xgb.DMatrix(features, label=label, missing=np.nan, nthread=1)


_LISTED_KEYS = frozenset(activity_key(kind) for kind in LISTED_KINDS)


def _classes(sides: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of equal `sides` as one class: (a row of each class, each row's class). The classes are
    numbered column by column (a mixed-radix key, ranked whenever it would outgrow an int64), which
    costs a fraction of np.unique over whole rows; which row stands for a class does not matter."""
    key = np.zeros(len(sides), dtype=np.int64)
    scale = 1
    for j in range(sides.shape[1]):
        column = sides[:, j].astype(np.int64) + 1
        width = int(column.max()) + 1
        if scale * width >= 2**62:
            _, key = np.unique(key, return_inverse=True)
            key = key.reshape(-1).astype(np.int64)
            scale = int(key.max()) + 1
        key = key + column * scale
        scale *= width
    return _key_classes(key, scale)


def _key_classes(key: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(a row of each distinct key, each row's class) for keys in [0, scale)."""
    if scale <= 4 * len(key) + 1024:  # a table over the keys instead of a sort
        seen = np.zeros(scale, dtype=bool)
        seen[key] = True
        distinct = np.flatnonzero(seen)
        rank = np.empty(scale, dtype=np.int64)
        rank[distinct] = np.arange(distinct.size)
        inverse = rank[key]
        first = np.empty(distinct.size, dtype=np.int64)
        first[inverse] = np.arange(len(key))  # some row of each class
        return first, inverse
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


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
        trees = _tree_splits(booster)
        thresholds = _split_thresholds(trees, len(spec.columns))
        # Only the columns that grow with time alone (days since ...) make a score expire.
        self._ageing = [(i, thresholds[i]) for i, c in enumerate(spec.columns) if c.ages and thresholds[i].size]
        # The split values as XGBoost compares them (float32), for the columns some tree splits on.
        self._splits = [(i, t.astype(np.float32)) for i, t in enumerate(thresholds) if t.size]
        # Per tree: its split columns, and each column's split values in that tree (float32).
        self._trees = [[(i, t.astype(np.float32)) for i, t in splits] for splits in trees]
        self._single_trees: list[xgb.Booster] | None = None  # each tree as a booster, made when needed
        # Per tree: (its split column's index in _splits, a table from a row's side over all trees + 1
        # to its side in this tree: 0 missing, else 1 + how many of the tree's split values lie at or
        # below the value). The tree's values are some of the column's, so this is exact.
        position = {column: j for j, (column, _) in enumerate(self._splits)}
        self._tree_sides = [
            [(position[column], np.r_[0, 1 + np.searchsorted(values, np.r_[-np.inf, self._splits[position[column]][1]]
                                                              .astype(np.float32), side="right")])
             for column, values in splits]
            for splits in self._trees
        ]
        # spec.describe's sentences by group and value (see _describe)
        self._describe_columns = [
            np.array([i for i, c in enumerate(spec.columns) if c.group == group]) for group in self._groups
        ]
        self._described: dict[tuple[int, bytes], str] = {}

    # --- The Strategy interface ----------------------------------------------------------------

    def score(self, facts: LeadFacts, now: datetime) -> ScoreResult:
        """Score one lead as of `now`."""
        return self.explain_many([facts], now)[0].result()

    def score_many(self, facts: Sequence[LeadFacts], now: datetime) -> list[ScoreResult]:
        """Score many leads at once (one call into XGBoost): what bulk rescoring should use."""
        return [e.result() for e in self.explain_many(facts, now)]

    # --- Numbers -------------------------------------------------------------------------------

    def margins(self, features: np.ndarray) -> np.ndarray:
        """The model's raw log-odds for rows of features: XGBoost's in-place prediction, the numbers of
        `predict` on a DMatrix to the bit (compared) without building one (at a million leads the
        preview's 480,000 rows and the out-of-fold steps spent a fifth of their prediction on that)."""
        rows = np.ascontiguousarray(features)
        if len(rows) == 0:
            return np.zeros(0)
        return self.booster.inplace_predict(rows, predict_type="margin", missing=np.nan).astype(float)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Calibrated P(won) for rows of features."""
        return self.calibrator(self.margins(features))

    def contributions(self, features: np.ndarray) -> np.ndarray:
        """XGBoost's exact TreeSHAP contributions (rows x columns + 1, the last the bias), computed tree
        by tree, once per class of rows that the tree's splits all send the same way.

        TreeSHAP reads a row only through the side each split sends it to (left when the value is
        below the split, the tree's default side when it is missing), so rows that agree at every
        split of a tree get the same contributions from it. A depth-4 tree has at most 15 splits, so
        its classes are a few dozen however many rows there are; over all trees at once, the company
        sizes alone made thousands of classes, each evaluated on every tree. XGBoost adds the trees'
        contributions up in float32, tree after tree, and the bias (the trees' expected values and the
        base score) is the same for every row: added up here in that same order, the numbers are
        XGBoost's own to the last bit (a test compares). At 50,000 closed deals, TreeSHAP of a fold's
        8,300 deals without their activity: 0.9 s -> 0.45 s; of 5,000 deals with it: 1.1 s -> 0.45 s."""
        rows = np.asarray(features, dtype=np.float32)
        if len(rows) < 2:
            return self._tree_shap(rows)
        # Rows that every split of every tree sends the same way first become one (leads without their
        # activity differ only in their profile: a few thousand classes, however many leads). A row's
        # side of a column is how many of the column's split values (all trees) lie at or below it, -1
        # when it is missing.
        sides = np.empty((len(rows), len(self._splits)), dtype=np.int32)
        for j, (column, splits) in enumerate(self._splits):
            values = rows[:, column]
            sides[:, j] = np.where(np.isnan(values), -1, np.searchsorted(splits, values, side="right"))
        first, inverse = _classes(sides)
        return self._tree_by_tree(rows[first], sides[first])[inverse]

    def _tree_by_tree(self, rows: np.ndarray, sides: np.ndarray) -> np.ndarray:
        """Contributions of rows of distinct classes (`sides`: as `contributions` made them), tree by
        tree. A tree's classes are told apart by its own splits only: its side of a column (how many of
        its split values lie at or below the value, 0 when missing, else that + 1) is read from the
        row's side over all trees through a table (`_tree_sides`), so no value is searched again."""
        if len(rows) < 2:
            return self._tree_shap(rows)
        if self._single_trees is None:
            self._single_trees = [self.booster[t : t + 1] for t in range(len(self._trees))]
            for tree in self._single_trees:
                tree.set_param({"nthread": 1})
        shifted = np.asfortranarray(sides + 1)  # -1 (missing) -> 0: an index into each table
        total = np.zeros((len(rows), rows.shape[1] + 1), dtype=np.float32, order="F")  # column by column
        for tables, tree in zip(self._tree_sides, self._single_trees):
            if not tables:
                continue
            key = np.zeros(len(rows), dtype=np.int64)
            scale = 1
            for j, table in tables:  # at most 3 ** 15 classes: the key fits
                key += table[shifted[:, j]] * scale
                scale *= int(table[-1]) + 1
            first, inverse = _key_classes(key, scale)
            # A zero base margin: the tree's own contributions, without the base score added in.
            part = tree.predict(xgb.DMatrix(rows[first], missing=np.nan, nthread=1,
                                            base_margin=np.zeros(first.size)), pred_contribs=True)
            for j, _ in tables:  # a tree gives the other columns exactly 0
                column = self._splits[j][0]
                total[:, column] += part[inverse, column]
        total[:, -1] = self._tree_shap(rows[:1])[0, -1]
        return total.astype(float)

    def _tree_shap(self, rows: np.ndarray) -> np.ndarray:
        return self.booster.predict(dmatrix(rows), pred_contribs=True).astype(float)

    def explain_many(
        self, facts: Sequence[LeadFacts], now: datetime | Sequence[datetime], features: np.ndarray | None = None
    ) -> list[Explanation]:
        """Scores with every number behind their reasons, for many leads as of `now`, or each as of
        its own moment (the training rows' out-of-fold scores; no `valid_until` then). `features`:
        their rows of spec.matrix(facts, now) when the caller has them already."""
        if not facts:
            return []
        spec = self.spec
        features = spec.matrix(facts, now) if features is None else features
        blank = spec.no_activity(features)
        rows = len(facts)

        # The profile: TreeSHAP on the lead without its activity. What the activity groups' absence
        # and unknown profile values contribute there belongs to the baseline, not to a reason.
        contributions = self.contributions(blank)
        by_group = contributions[:, :-1] @ self._group_matrix
        named = np.zeros_like(by_group, dtype=bool)
        for g, group in enumerate(self._groups):
            if not spec.is_activity(group):
                named[:, g] = spec.known_rows(group, blank)
        profile = np.where(named, by_group, 0.0)
        base_margin = contributions[:, -1] + np.where(named, 0.0, by_group).sum(axis=1)
        up = np.where(profile > 0, profile, 0.0).sum(axis=1)
        down = np.where(profile < 0, profile, 0.0).sum(axis=1)
        prob = self.calibrator
        p_base, p_blank = prob(base_margin), prob(base_margin + up + down)
        p_up, p_down = prob(base_margin + up), prob(base_margin + down)
        # Shapley between "all that pushes up" and "all that pushes down", in probability points.
        up_points = 50 * ((p_up - p_base) + (p_blank - p_down))
        down_points = 50 * ((p_down - p_base) + (p_blank - p_up))
        with np.errstate(divide="ignore", invalid="ignore"):
            share_up = np.where(up[:, None] > 0, profile / up[:, None], 0.0)
            share_down = np.where(down[:, None] < 0, profile / down[:, None], 0.0)
        profile_points = np.where(
            profile > 0, share_up * up_points[:, None], np.where(profile < 0, share_down * down_points[:, None], 0.0)
        )

        # The activity: add one kind at a time (strongest signals first) and see what each adds.
        p_all = prob(self.margins(features))
        activity_points = self._activity_steps(features, blank, p_blank, p_all)

        scores = np.clip(_round_half_up(100 * p_all), 0, 100)
        baselines = np.clip(_round_half_up(100 * p_base), 0, 100)
        if isinstance(now, datetime):
            moments, expiries = [now] * rows, self._valid_until(features, now)
            # A prospect's activity stamped after `now` is a feature from its moment on.
            expiries = [sooner(expiry, next_activity_at(lead.activities, now, _PROSPECT_KINDS))
                        for expiry, lead in zip(expiries, facts)]
        else:  # each lead as of its own moment (training rows): nothing to expire
            moments, expiries = list(now), [None] * rows
        # Per row as plain Python numbers (the same float64 values): the row loop below is the part of
        # scoring that runs once per lead, and NumPy scalars cost several times more there.
        kinds = list(activity_points)
        steps = list(zip(*(column.tolist() for column in activity_points.values()))) if kinds else [()] * rows
        profile_rows, point_rows = profile.tolist(), profile_points.tolist()
        score_list, baseline_list, p_list = scores.tolist(), baselines.tolist(), p_all.tolist()
        return [
            self._explain_row(
                facts[r], moments[r], features[r], profile_rows[r], point_rows[r], dict(zip(kinds, steps[r])),
                score_list[r], baseline_list[r], p_list[r], expiries[r],
            )
            for r in range(rows)
        ]  # fmt: skip

    def _activity_steps(
        self, features: np.ndarray, blank: np.ndarray, p_blank: np.ndarray, p_all: np.ndarray
    ) -> dict[ActivityKind, np.ndarray]:
        """Per kind, the probability points its activities add (rows x 1; 0 where the lead has none).

        Step by step in `ACTIVITY_ORDER`, each step adding that kind's count and recency and moving the
        totals with them, so every intermediate row is a lead that could exist. All steps of all
        leads go to XGBoost in one call. The last step of a lead is its own row, so the steps add up to
        its score exactly."""
        spec = self.spec
        total_count, total_days = spec.total_columns()
        current = blank.copy()
        steps: list[tuple[ActivityKind, np.ndarray]] = []
        batches = []
        for kind in ACTIVITY_ORDER:
            count, days = spec.kind_columns(kind)
            present = np.flatnonzero(features[:, count] > 0)
            if present.size == 0:
                continue
            current[present, count] = features[present, count]
            current[present, days] = features[present, days]
            current[present, total_count] += features[present, count]
            current[present, total_days] = np.minimum(current[present, total_days], features[present, days])
            steps.append((kind, present))
            batches.append(current[present].copy())
        points: dict[ActivityKind, np.ndarray] = {}
        if not steps:
            return points
        p_steps = self.calibrator(self.margins(np.concatenate(batches)))
        before = p_blank.copy()
        last_step = np.full(len(features), -1)
        for s, (_, present) in enumerate(steps):
            last_step[present] = s
        offset = 0
        for s, (kind, present) in enumerate(steps):
            after = p_steps[offset : offset + present.size]
            offset += present.size
            # The lead's last step is the lead itself (same row; this only removes float noise).
            after = np.where(last_step[present] == s, p_all[present], after)
            column = np.zeros(len(features))
            column[present] = 100 * (after - before[present])
            points[kind] = column
            before[present] = after
        return points

    def _explain_row(
        self,
        facts: LeadFacts,
        now: datetime,
        features: np.ndarray,
        log_odds: list[float],
        profile_points: list[float],
        activity_points: dict[ActivityKind, float],
        score: int,
        baseline: int,
        probability: float,
        valid_until: datetime | None,
    ) -> Explanation:
        # (text, key, real points, log-odds) of every fact that gets a line of its own
        lines: list[tuple[str, str, float, float]] = []
        moments: dict[ActivityKind, list[datetime]] = {}
        for activity in facts.activities:
            if activity.occurred_at <= now and activity.kind in activity_points:
                moments.setdefault(activity.kind, []).append(activity.occurred_at)
        for kind in ACTIVITY_ORDER:
            if kind in moments:
                lines.append(
                    (activity_phrase(kind, moments[kind], now), activity_key(kind), activity_points[kind], 0.0)
                )
        # Profile groups, largest first, until what is left for "Other factors" is a few points.
        ranked = sorted((g for g, points in enumerate(profile_points) if points != 0),
                        key=lambda g: -abs(profile_points[g]))
        rest_abs = sum(abs(profile_points[g]) for g in ranked)
        shown: list[int] = []
        for g in ranked:
            if rest_abs <= OTHER_MAX_POINTS and len(shown) >= self.top_reasons:
                break
            if rest_abs <= OTHER_MAX_POINTS and abs(profile_points[g]) < 1:
                break
            shown.append(g)
            rest_abs -= abs(profile_points[g])
        rest = ranked[len(shown):]
        for g in shown:
            lines.append((self._describe(g, features, facts), self._groups[g], profile_points[g], log_odds[g]))
        if rest or not lines:
            lines.append((OTHER_TEXT, "other", float(sum(profile_points[g] for g in rest)),
                          float(sum(log_odds[g] for g in rest))))
        whole = apportion([pts for _, _, pts, _ in lines], score - baseline)
        factors = [Factor(key, text, lo, p, key) for (text, key, _, lo), p in zip(lines, whole)]
        factors.sort(key=lambda f: -abs(f.points))
        return Explanation(score, probability, baseline, tuple(factors), valid_until)

    def _describe(self, g: int, features: np.ndarray, facts: LeadFacts) -> str:
        """spec.describe of profile group `g` for one lead, remembered per value of the group's columns
        (a source, a company size: a few thousand sentences for a hundred thousand leads). A category
        too rare for a column of its own is worded from the lead's facts, so it is not remembered."""
        group = self._groups[g]
        columns = self._describe_columns[g]
        key = (g, features[columns].tobytes())
        text = self._described.get(key)
        if text is None:
            text = self.spec.describe(group, features, facts)
            if not (group.startswith("field:") and features[columns[-1]] == 1.0):  # "<other>": the raw value
                if len(self._described) < 100_000:
                    self._described[key] = text
        return text

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
            if blob.startswith(b"CRM-SCORING-MODEL/"):
                raise OutdatedModel("this model was trained by an earlier version of the app: train a new one")
            raise ValueError("not a stored scoring model")
        start = len(FORMAT_MAGIC)
        size = int.from_bytes(blob[start : start + 8], "big")
        header = json.loads(blob[start + 8 : start + 8 + size])
        booster = xgb.Booster()
        booster.load_model(bytearray(blob[start + 8 + size :]))
        # A loaded booster forgets its thread count and would predict on every core; one, as trained
        # (training.XGB_PARAMS: OpenMP threads spin-wait for each other on the shared machine).
        booster.set_param({"nthread": 1})
        return cls(
            booster,
            calibrator_from_dict(header["calibrator"]),
            FeatureSpec.from_dict(header["spec"]),
            meta=header["meta"],
        )
