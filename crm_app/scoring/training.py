"""Learning a scoring model from closed deals, and judging it against the rules on the same leads.

Pure: the caller hands over the closed leads (their facts, the moment each closed, and whether it was
won); nothing here reads a database or the clock. The database path (services/model_training.py)
and the CSV evaluation script (scripts/evaluate_bank.py) both come through `fit_scoring_model`.

Time decides every split, never chance, because the model will score leads that come *after* the
ones it learned from:

    oldest 64 % of closed leads   fit the trees
    next 16 %                     calibrate the probabilities (and stop adding trees)
    newest 20 %                   the holdout: model and rules are measured here, and only here

Each lead's features are computed as of its `moment` (a moment of its open life, or its close), from
activities up to then only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import xgboost as xgb

from crm_app.scoring.calibration import fit_calibrator
from crm_app.scoring.engine import LeadFacts
from crm_app.scoring.evaluation import Evaluation, brier, evaluate
from crm_app.scoring.features import FeatureSpec
from crm_app.scoring.model import ModelScoringEngine
from crm_app.scoring.rules import RuleBasedScoringEngine

MIN_CLOSED = 200
MIN_EACH_OUTCOME = 30
HOLDOUT_SHARE = 0.20
CALIBRATION_SHARE = 0.20  # of what is left after the holdout

XGB_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "tree_method": "hist",
    "eta": 0.05,
    "max_depth": 4,
    "min_child_weight": 5,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "lambda": 2.0,
    "nthread": 2,
    "seed": 0,
}
MAX_TREES = 1000


def booster_params(spec: FeatureSpec) -> dict[str, Any]:
    """XGB_PARAMS for a spec's columns: monotone in every prospect-activity column, so more or newer
    buying intent never lowers a score (features.py)."""
    return {**XGB_PARAMS, "monotone_constraints": spec.monotone_constraints()}
EARLY_STOPPING_TREES = 50


class NotEnoughHistory(ValueError):
    """Too few closed deals, or too few of one outcome, to learn from."""


@dataclass(frozen=True, slots=True)
class LabeledLead:
    """A closed lead: what was known about it, when it closed, and whether it was won."""

    facts: LeadFacts
    closed_at: datetime
    won: bool
    # The moment its features are taken at: a moment of its open life, so training rows look like the
    # open leads the model will score (None: at the close, as the public data sets have it).
    as_of: datetime | None = None

    @property
    def moment(self) -> datetime:
        return self.as_of or self.closed_at


@dataclass(frozen=True)
class TrainingResult:
    """The trained engine and how it and the rules did on the newest closed leads."""

    engine: ModelScoringEngine
    model: Evaluation
    rules: Evaluation
    # A constant "every lead wins at the training base rate" on the holdout: the bar for Brier.
    base_rate_brier: float
    rows: int
    fit_rows: int
    calibration_rows: int
    holdout_rows: int
    holdout_from: datetime
    trees: int
    calibration_method: str
    # The feature groups that move the holdout's scores most: mean |log-odds|, largest first.
    drivers: list[tuple[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    def metrics(self) -> dict[str, Any]:
        """Everything measured, as JSON for the model registry."""
        return {
            "model": self.model.as_dict(),
            "rules": self.rules.as_dict(),
            "base_rate_brier": self.base_rate_brier,
            "rows": self.rows,
            "fit_rows": self.fit_rows,
            "calibration_rows": self.calibration_rows,
            "holdout_rows": self.holdout_rows,
            "holdout_from": self.holdout_from.isoformat(),
            "trees": self.trees,
            "calibration_method": self.calibration_method,
            "drivers": [[group, value] for group, value in self.drivers],
            "seconds": self.seconds,
        }

    def summary(self) -> str:
        """Model and rules side by side on the holdout, then the calibration tables."""
        return format_comparison(self.model, self.rules, self.base_rate_brier) + (
            f"\n\nHoldout: the newest {self.holdout_rows:,} of {self.rows:,} closed leads "
            f"(closed from {self.holdout_from:%Y-%m-%d %H:%M}). Trained on {self.fit_rows:,}, "
            f"calibrated ({self.calibration_method}) on {self.calibration_rows:,}; {self.trees} trees; "
            f"{self.seconds:.1f} s."
        )


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_comparison(model: Evaluation, rules: Evaluation, base_rate_brier: float | None = None) -> str:
    """A plain-text table: one row per measure, model next to rules, then both calibration tables."""
    lines = [
        f"{'':30}{'model':>10}{'rules':>10}",
        f"{'ROC-AUC':30}{_fmt(model.roc_auc):>10}{_fmt(rules.roc_auc):>10}",
        f"{'PR-AUC':30}{_fmt(model.pr_auc):>10}{_fmt(rules.pr_auc):>10}",
        f"{'Brier (lower is better)':30}{_fmt(model.brier, 4):>10}{_fmt(rules.brier, 4):>10}",
        f"{'Win rate in top 20%':30}{model.top_20_win_rate:>10.1%}{rules.top_20_win_rate:>10.1%}",
        f"{'Lift of top 20%':30}{_fmt(model.top_20_lift, 2):>10}{_fmt(rules.top_20_lift, 2):>10}",
        f"{'Base rate (holdout)':30}{model.base_rate:>10.1%}{rules.base_rate:>10.1%}",
    ]
    if base_rate_brier is not None:
        lines.append(f"{'Brier of a constant base rate':30}{base_rate_brier:>10.4f}")
    lines.append("")
    lines.append("Calibration by decile (predicted -> observed, leads)")
    lines.append(f"{'':4}{'model':^28}{'rules':^28}")
    for i in range(max(len(model.calibration), len(rules.calibration))):
        cells = []
        for table in (model.calibration, rules.calibration):
            if i < len(table):
                b = table[i]
                cells.append(f"{b.predicted:>7.1%} -> {b.observed:>6.1%} {b.count:>6,}")
            else:
                cells.append("")
        lines.append(f"{i + 1:>2}  {cells[0]:<28}{cells[1]:<28}")
    return "\n".join(lines)


def check_history(won: int, lost: int) -> None:
    """Raise NotEnoughHistory unless there are enough closed deals of both outcomes."""
    closed = won + lost
    if closed < MIN_CLOSED or won < MIN_EACH_OUTCOME or lost < MIN_EACH_OUTCOME:
        raise NotEnoughHistory(
            f"Not enough closed deals to learn from yet: {closed:,} closed ({won:,} won, {lost:,} lost). "
            f"A model needs at least {MIN_CLOSED} closed deals with at least {MIN_EACH_OUTCOME} won "
            f"and {MIN_EACH_OUTCOME} lost; until then the rules keep scoring the leads."
        )


def time_split(count: int, holdout: int | None = None) -> tuple[slice, slice, slice]:
    """(fit, calibrate, holdout) slices of leads sorted oldest to newest; the newest HOLDOUT_SHARE
    are held out unless `holdout` says how many."""
    holdout = holdout or max(1, round(HOLDOUT_SHARE * count))
    calibration = max(1, round(CALIBRATION_SHARE * (count - holdout)))
    fit_end = count - holdout - calibration
    return slice(0, fit_end), slice(fit_end, count - holdout), slice(count - holdout, count)


def fit_scoring_model(
    leads: Sequence[LabeledLead],
    *,
    progress: Callable[[str], None] | None = None,
    meta: dict[str, Any] | None = None,
    keep_order: bool = False,
    holdout_rows: int | None = None,
) -> TrainingResult:
    """Fit, calibrate and evaluate a model on closed leads; the rules are measured on the same holdout.

    Leads are ordered by close time (ties keep the given order); `keep_order` takes the given order as
    the timeline instead and `holdout_rows` how many of the newest to hold out (cross-validation passes
its folds that way). Raises NotEnoughHistory below
    MIN_CLOSED closed leads or MIN_EACH_OUTCOME of either outcome.
    """
    say = progress or (lambda message: None)
    started = time.perf_counter()
    won_count = sum(lead.won for lead in leads)
    check_history(won_count, len(leads) - won_count)

    # Stable: ties keep their order.
    ordered = list(leads) if keep_order else sorted(leads, key=lambda lead: lead.closed_at)
    facts = [lead.facts for lead in ordered]
    moments = [lead.moment for lead in ordered]
    won = np.array([lead.won for lead in ordered], dtype=float)
    fit, calibrate, holdout = time_split(len(ordered), holdout_rows)

    say(f"Computing features of {len(ordered):,} closed leads")
    spec = FeatureSpec.learn(facts[fit])
    features = spec.matrix(facts, moments)

    say(f"Training on {fit.stop:,} leads, calibrating on {calibrate.stop - calibrate.start:,}")
    train_matrix = xgb.DMatrix(features[fit], label=won[fit], missing=np.nan)
    calibration_matrix = xgb.DMatrix(features[calibrate], label=won[calibrate], missing=np.nan)
    booster = xgb.train(
        booster_params(spec),
        train_matrix,
        num_boost_round=MAX_TREES,
        evals=[(calibration_matrix, "calibration")],
        early_stopping_rounds=EARLY_STOPPING_TREES,
        verbose_eval=False,
    )
    trees = booster.best_iteration + 1
    booster = booster[:trees]  # keep only the trees that helped on the calibration leads
    margins = booster.predict(xgb.DMatrix(features, missing=np.nan), output_margin=True).astype(float)
    calibrator = fit_calibrator(margins[calibrate], won[calibrate])
    engine = ModelScoringEngine(
        booster,
        calibrator,
        spec,
        meta={**(meta or {}), "base_rate": float(won[fit].mean()), "trees": trees},
    )

    say(f"Measuring model and rules on the newest {holdout.stop - holdout.start:,} closed leads")
    model_probability = calibrator(margins[holdout])
    rules = RuleBasedScoringEngine()
    rule_probability = np.array(
        [rules.score(f, t).score / 100 for f, t in zip(facts[holdout], moments[holdout])]
    )
    outcomes = won[holdout]
    contributions = booster.predict(
        xgb.DMatrix(features[holdout], missing=np.nan), pred_contribs=True
    )[:, :-1] @ spec.group_matrix()
    pull = np.abs(contributions).mean(axis=0)
    drivers = sorted(zip(spec.groups, (float(v) for v in pull)), key=lambda item: -item[1])[:10]

    return TrainingResult(
        engine=engine,
        model=evaluate(model_probability, outcomes),
        rules=evaluate(rule_probability, outcomes),
        base_rate_brier=brier(np.full(outcomes.size, won[fit.start : calibrate.stop].mean()), outcomes),
        rows=len(ordered),
        fit_rows=fit.stop,
        calibration_rows=calibrate.stop - calibrate.start,
        holdout_rows=holdout.stop - holdout.start,
        holdout_from=ordered[holdout.start].closed_at,
        trees=trees,
        calibration_method=calibrator.method,
        drivers=drivers,
        seconds=time.perf_counter() - started,
    )


@dataclass(frozen=True)
class CrossValidation:
    """The whole training recipe (fit, calibrate, measure) repeated on k random folds: each fold is
    the holdout once. For data without meaningful dates (a public data set, an import without close
    dates) this is the fair measure; the spread across folds says how much a single holdout wobbles."""

    folds: list[TrainingResult]
    seed: int

    _MEASURES = (
        ("ROC-AUC", "roc_auc", 3),
        ("PR-AUC", "pr_auc", 3),
        ("Brier (lower is better)", "brier", 4),
        ("Win rate in top 20%", "top_20_win_rate", 3),
        ("Lift of top 20%", "top_20_lift", 2),
    )

    def mean(self, scorer: str, measure: str) -> float | None:
        values = [getattr(getattr(fold, scorer), measure) for fold in self.folds]
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    def spread(self, scorer: str, measure: str) -> float | None:
        values = [getattr(getattr(fold, scorer), measure) for fold in self.folds]
        values = [v for v in values if v is not None]
        return float(np.std(values, ddof=1)) if len(values) > 1 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "folds": len(self.folds),
            "seed": self.seed,
            **{
                f"{scorer}_{key}": {"mean": self.mean(scorer, key), "sd": self.spread(scorer, key)}
                for scorer in ("model", "rules")
                for _, key, _ in self._MEASURES
            },
        }

    def summary(self) -> str:
        """Mean +- standard deviation over the folds, model next to rules."""
        lines = [f"{len(self.folds)}-fold cross-validation (random folds, seed {self.seed}): mean +- sd", ""]
        lines.append(f"{'':30}{'model':>18}{'rules':>18}")
        for label, key, digits in self._MEASURES:
            cells = []
            for scorer in ("model", "rules"):
                mean, sd = self.mean(scorer, key), self.spread(scorer, key)
                cells.append("n/a" if mean is None else f"{mean:.{digits}f} +- {sd or 0:.{digits}f}")
            lines.append(f"{label:30}{cells[0]:>18}{cells[1]:>18}")
        rows = self.folds[0].rows
        seconds = sum(fold.seconds for fold in self.folds)
        lines.append("")
        lines.append(
            f"Each fold: trained on {self.folds[0].fit_rows:,}, calibrated on {self.folds[0].calibration_rows:,}, "
            f"measured on {self.folds[0].holdout_rows:,} of {rows:,} closed leads; {seconds:.1f} s in all."
        )
        return "\n".join(lines)


def cross_validate(
    leads: Sequence[LabeledLead],
    *,
    folds: int = 5,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> CrossValidation:
    """Run `fit_scoring_model` once per random fold, that fold being the holdout: the newest rows of
    a timeline made of the other folds (shuffled) followed by it."""
    if not 2 <= folds <= len(leads):
        raise ValueError(f"cannot split {len(leads)} leads into {folds} folds")
    say = progress or (lambda message: None)
    order = np.random.default_rng(seed).permutation(len(leads))
    bounds = np.linspace(0, len(leads), folds + 1).round().astype(int)
    results = []
    for i in range(folds):
        test = order[bounds[i] : bounds[i + 1]]
        rest = np.concatenate([order[: bounds[i]], order[bounds[i + 1] :]])
        ordered = [leads[j] for j in rest] + [leads[j] for j in test]
        say(f"Fold {i + 1} of {folds}")
        results.append(fit_scoring_model(ordered, keep_order=True, holdout_rows=len(test)))
    return CrossValidation(results, seed)
