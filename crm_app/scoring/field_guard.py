"""Custom fields that would teach a model the outcome, or a row's number, instead of a signal.

A CRM export carries columns that sales fill in after the deal is decided ("Tags: Closed by Horizzon",
"Lead quality: High in relevance") and row ids that count up with time. A model learns them eagerly
and then scores open leads, where such a column is empty or means something else, badly; its figures
look excellent meanwhile. So before training, every custom field a model could use is checked:

- **Leaks.** The field alone, as the only thing known about a lead, is turned into a prediction
  (each value's win rate, learned on the other folds: its out-of-fold target encoding; numbers in up
  to 20 quantile bins, a missing value as a value of its own) and scored by ROC-AUC over stratified
  folds. At LEAK_AUC or above, a field predicts the outcome almost alone: it is left out unless the
  manager keeps it knowingly.
- **Ids.** A field with a different value on every deal (text, or whole numbers that look like ids),
  or whole numbers that count up or down with the deals' order (a row number that tracks time), is
  an id, not something about the lead. Left out the same way.

Pure: no Reflex, no SQL, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from crm_app.scoring.engine import LeadFacts
from crm_app.scoring.features import MIN_FIELD_SHARE, NUMERIC_SHARE, _category, _number, humanize

# A field that alone predicts the outcome this well is suspected of being filled in after the close.
LEAK_AUC = 0.90
GUARD_FOLDS = 5
NUMERIC_BINS = 20
# Each value's win rate is pulled towards the overall rate as if it had this many more deals.
PRIOR_DEALS = 10
# Ids are only called ids with enough deals to tell (uniqueness means little on a handful).
MIN_ID_ROWS = 20
# Whole numbers that follow the deals' order this closely (Spearman) and rarely repeat are row ids.
MONOTONE_RHO = 0.98
MONOTONE_DISTINCT_SHARE = 0.5
ID_NAME = re.compile(r"(^|[^a-z])(id|number|no|nr|num|key|uuid|guid)$|#$", re.IGNORECASE)


@dataclass(frozen=True)
class FieldVerdict:
    """A custom field the guard flagged: what it looks like, how well it alone predicts the outcome,
    whether the manager kept it anyway, and why in words."""

    key: str
    kind: str  # "leak" or "id"
    auc: float | None
    kept: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "auc": self.auc, "kept": self.kept, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FieldVerdict:
        return cls(data["key"], data["kind"], data.get("auc"), bool(data.get("kept")), data["reason"])

    @property
    def outcome(self) -> str:
        """What happened to the field, in words."""
        return "Kept, as you asked." if self.kept else "Left out of the model."


def candidate_fields(facts: Sequence[LeadFacts]) -> list[str]:
    """The custom fields a model could learn from: filled in on at least MIN_FIELD_SHARE of the leads
    (the same bar the feature spec uses)."""
    present: dict[str, int] = {}
    for lead in facts:
        for key, value in lead.custom_fields.items():
            if _category(value) is not None:
                present[key] = present.get(key, 0) + 1
    return sorted(k for k, n in present.items() if n >= MIN_FIELD_SHARE * len(facts))


def _codes(values: list[Any]) -> tuple[np.ndarray, bool]:
    """Each lead's value as a small integer code (a category, or a quantile bin of a number; a missing
    value has a code of its own), and whether the field is numeric."""
    present = [v for v in values if _category(v) is not None]
    numbers = [_number(v) for v in values]
    numeric = bool(present) and sum(n is not None for n in numbers) >= NUMERIC_SHARE * len(present)
    if numeric:
        array = np.array([np.nan if n is None else n for n in numbers], dtype=float)
        known = ~np.isnan(array)
        edges = np.unique(np.quantile(array[known], np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1]))
        codes = np.where(known, 1 + np.searchsorted(edges, np.where(known, array, 0.0), side="right"), 0)
        return codes.astype(int), True
    seen: dict[str, int] = {}
    codes = np.array(
        [0 if (c := _category(v)) is None else seen.setdefault(c, len(seen) + 1) for v in values], dtype=int
    )
    return codes, False


def single_field_auc(
    codes: np.ndarray, won: np.ndarray, *, folds: int = GUARD_FOLDS, seed: int = 0
) -> float | None:
    """ROC-AUC of predicting the outcome from one field alone, out of fold: each lead gets the
    (smoothed) win rate of its value among the leads of the other folds."""
    won = np.asarray(won, dtype=float)
    if won.min() == won.max():
        return None
    size = int(codes.max()) + 1
    prediction = np.empty(won.size)
    splits = StratifiedKFold(n_splits=min(folds, int(min(won.sum(), won.size - won.sum()))), shuffle=True,
                             random_state=seed)
    for train, test in splits.split(codes, won):
        wins = np.bincount(codes[train], weights=won[train], minlength=size)
        deals = np.bincount(codes[train], minlength=size)
        prior = won[train].mean()
        prediction[test] = ((wins + PRIOR_DEALS * prior) / (deals + PRIOR_DEALS))[codes[test]]
    return float(roc_auc_score(won.astype(bool), prediction))


def _id_reason(key: str, values: list[Any], numeric: bool) -> str | None:
    """Why a field is an id rather than a fact about the lead, or None. `values` are in the deals'
    order (oldest first)."""
    title = humanize(key)
    positions = [i for i, v in enumerate(values) if _category(v) is not None]
    if len(positions) < MIN_ID_ROWS:
        return None
    if not numeric:
        distinct = len({_category(values[i]) for i in positions})
        if distinct == len(positions):
            return f"{title} has a different value on every deal: an id, not something about the lead."
        return None
    numbers = np.array([_number(values[i]) for i in positions], dtype=float)
    if np.isnan(numbers).any() or not np.all(numbers == np.round(numbers)):
        return None  # amounts, rates and measures are facts even when every one differs
    distinct = np.unique(numbers).size
    rho = spearmanr(numbers, positions).statistic if distinct > 1 else 0.0
    if distinct >= MONOTONE_DISTINCT_SHARE * numbers.size and abs(rho) >= MONOTONE_RHO:
        return (f"{title} counts {'up' if rho > 0 else 'down'} with the order of your deals: a row number or "
                f"id that tracks time, not something about the lead.")
    dense = numbers.max() - numbers.min() + 1 <= 2 * numbers.size
    if distinct == numbers.size and (ID_NAME.search(key.strip()) or dense):
        return f"{title} has a different whole number on every deal: an id, not something about the lead."
    return None


def check_fields(
    facts: Sequence[LeadFacts],
    won: np.ndarray,
    *,
    keep: Collection[str] = (),
    seed: int = 0,
) -> list[FieldVerdict]:
    """Every candidate custom field that is an id or predicts the outcome alone with ROC-AUC of at
    least LEAK_AUC, with the reason in words; `keep` names fields the manager keeps anyway. `facts`
    are in the deals' order, oldest first (ids that track time are found by it)."""
    won = np.asarray(won, dtype=float)
    verdicts = []
    for key in candidate_fields(facts):
        values = [lead.custom_fields.get(key) for lead in facts]
        codes, numeric = _codes(values)
        auc = single_field_auc(codes, won, seed=seed)
        id_reason = _id_reason(key, values, numeric)
        if id_reason is not None:
            verdicts.append(FieldVerdict(key, "id", auc, key in keep, id_reason))
        elif auc is not None and auc >= LEAK_AUC:
            verdicts.append(FieldVerdict(
                key, "leak", auc, key in keep,
                f"{humanize(key)} alone predicts the outcome with ROC-AUC {auc:.2f}: "
                "is it filled in after the deal closes?",
            ))
    return verdicts


def left_out(verdicts: Sequence[FieldVerdict]) -> set[str]:
    """The fields the model must not see: flagged and not kept."""
    return {v.key for v in verdicts if not v.kept}


def without_fields(facts: Sequence[LeadFacts], keys: Collection[str]) -> list[LeadFacts]:
    """The leads' facts with these custom fields removed (the others untouched)."""
    if not keys:
        return list(facts)
    return [
        replace(lead, custom_fields={k: v for k, v in lead.custom_fields.items() if k not in keys})
        if any(k in lead.custom_fields for k in keys) else lead
        for lead in facts
    ]
