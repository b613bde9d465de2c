"""Learning a scoring model from closed deals, and judging it honestly against the rules.

Pure: the caller hands over the closed leads (their facts, the moment each closed, and whether it was
won); nothing here reads a database or the clock. The database path (services/model_training.py)
and the CSV evaluation script (scripts/evaluate_bank.py) both come through `fit_scoring_model`.

The recipe (`fit_recipe`), on the deals a model learns from:

    5 stratified folds        each fold's trees are fit on the other four fifths, adding trees while
                              the fold itself still improves (early stopping); every deal gets an
                              out-of-fold margin from the fold model that did not see it
    the number of trees       the mean of the folds' stopping points
    calibration               on the out-of-fold margins of all those deals
    the model that scores     refit on ALL of them with that number of trees

How it is measured depends on the dates:

- Close dates that tell the deals apart: the newest 20% are held out (time decides, never chance,
  because the model will score leads that come after the ones it learned from). The recipe runs on the
  older 80%; model and rules are measured on the holdout, each figure with a 95% bootstrap interval.
- No usable dates (an import without them closes every deal at one moment): which deals are newest
  cannot be told, so the figures are a 5-fold cross-validation. Every deal is scored by the fold model
  that did not see it, calibrated on the other folds' margins; a figure is the mean over the folds
  with their spread; the model that scores learns from every deal. When the manager said in which
  order the file lists its deals, that order also gives a time holdout (the recipe again on the older
  80%, measured on the newest 20%).

Either way every closed deal gets an honest score, from a model that never trained on it
(`TrainingResult.honest_results`): that is what the app stores as a closed deal's score.

Before any of it, custom fields that predict the outcome almost alone or are row ids are left out
(field_guard.py), unless the manager keeps them knowingly.

Each lead's features are computed as of its `moment` (a moment of its open life, or its close), from
activities up to then only.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import xgboost as xgb
from sklearn.model_selection import StratifiedKFold

from crm_app.scoring.calibration import Calibrator, fit_calibrator
from crm_app.scoring.engine import LeadFacts, ScoreResult
from crm_app.scoring.evaluation import (
    BOOTSTRAP_ROUNDS,
    GAINS_SHARES,
    MEASURES,
    Evaluation,
    Interval,
    bootstrap_intervals,
    brier,
    digits_for,
    evaluate,
    figure_text,
    fold_spread,
    gains_curve,
    measures,
)
from crm_app.scoring.features import FeatureSpec
from crm_app.scoring.field_guard import FieldVerdict, check_fields, left_out, without_fields
from crm_app.scoring.model import Explanation, ModelScoringEngine, dmatrix
from crm_app.scoring.rules import RuleBasedScoringEngine

MIN_CLOSED = 200
MIN_EACH_OUTCOME = 30
HOLDOUT_SHARE = 0.20
FOLDS = 5

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
    # One thread: training runs beside the app (a thread of its server), and on a busy machine two
    # OpenMP threads spin-wait for each other: 200 trees on 26,000 bank rows took 1.2-4.8 s with one
    # thread and 36-44 s with two (CPU 0.8-1.0 s against 10.5-13.5 s).
    "nthread": 1,
    "seed": 0,
}
# Fold models fit at once, each on one thread of its own: two threads that each grow a tree alone
# never wait for each other (unlike OpenMP's threads inside one fit, see "nthread" above).
FIT_THREADS = 2
MAX_TREES = 1000
EARLY_STOPPING_TREES = 50
# Drivers are read on at most this many deals of the holdout or the cross-validation (enough for an
# average; TreeSHAP of every deal's activity took a tenth of a training run at 50,000 deals).
DRIVER_ROWS = 5000

# How the closed deals are ordered in time: by their close dates, or (without usable dates) in the
# order the manager said the file lists them, or not at all.
ORDER_DATES = "dates"
ORDER_NEWEST_FIRST = "newest_first"
ORDER_OLDEST_FIRST = "oldest_first"
ORDER_UNKNOWN = "unknown"
HOLDOUT = "holdout"
CROSS_VALIDATION = "cross_validation"


def booster_params(spec: FeatureSpec) -> dict[str, Any]:
    """XGB_PARAMS for a spec's columns, the one place every fit (fold models, the refit) takes them
    from: monotone in every prospect-activity column, so more or newer buying intent never lowers a
    score (features.py)."""
    return {**XGB_PARAMS, "monotone_constraints": spec.monotone_constraints()}


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
    # The stored lead it is (None for rows that are not stored leads, e.g. a public data set).
    lead_id: int | None = None

    @property
    def moment(self) -> datetime:
        return self.as_of or self.closed_at


def check_history(won: int, lost: int) -> None:
    """Raise NotEnoughHistory unless there are enough closed deals of both outcomes."""
    closed = won + lost
    if closed < MIN_CLOSED or won < MIN_EACH_OUTCOME or lost < MIN_EACH_OUTCOME:
        raise NotEnoughHistory(
            f"Not enough closed deals to learn from yet: {closed:,} closed ({won:,} won, {lost:,} lost). "
            f"A model needs at least {MIN_CLOSED} closed deals with at least {MIN_EACH_OUTCOME} won "
            f"and {MIN_EACH_OUTCOME} lost; until then the rules keep scoring the leads."
        )


def holdout_size(count: int) -> int:
    return max(1, round(HOLDOUT_SHARE * count))


def dates_tell_apart(closed_at: Sequence[datetime]) -> bool:
    """Whether close dates can say which deals are the newest: False when the close moments of the
    would-be holdout (the newest HOLDOUT_SHARE) are shared by more deals than half of it. An import
    without dates closes every deal at the import moment; which of them are "newest" is then the
    file's row order, not time."""
    if not closed_at:
        return False
    ordered = sorted(closed_at)
    held = holdout_size(len(ordered))
    counts = Counter(ordered)
    tied = max(counts[moment] for moment in set(ordered[-held:]))
    return tied <= held / 2


# --- The recipe ----------------------------------------------------------------------------------


@dataclass
class Recipe:
    """One run of the recipe on some deals: the model that scores and what made it."""

    booster: xgb.Booster  # refit on all the deals, with `trees` trees
    calibrator: Calibrator  # on every deal's out-of-fold margin
    trees: int
    fold_of: np.ndarray  # each deal's fold
    fold_boosters: list[xgb.Booster]  # each with `trees` trees at most
    # Fold j's calibrator learned from the other folds' out-of-fold margins only, so that a deal's
    # out-of-fold probability owes nothing to its own outcome.
    fold_calibrators: list[Calibrator]
    oof_margin: np.ndarray
    oof_probability: np.ndarray


class _TreeCount:
    """The scoring model's number of trees (the mean of the folds' stopping points), and while the
    folds still run, how many it will have at least: a running fold that has grown e + 1 trees stops
    at e - 49 or later (early stopping ends a fit EARLY_STOPPING_TREES rounds after its best one), one
    not started at 1 or later, and the rounded mean never falls as they grow."""

    def __init__(self, folds: int) -> None:
        self._at_least = [1] * folds
        self._done = [False] * folds
        self._failed = False
        self._changed = threading.Condition()

    def grew(self, fold: int, trees: int) -> None:
        with self._changed:
            if not self._done[fold] and trees - EARLY_STOPPING_TREES > self._at_least[fold]:
                self._at_least[fold] = trees - EARLY_STOPPING_TREES
                self._changed.notify_all()

    def stopped(self, fold: int, stop: int) -> None:
        with self._changed:
            self._at_least[fold], self._done[fold] = stop, True
            self._changed.notify_all()

    def fail(self) -> None:
        with self._changed:
            self._failed = True
            self._changed.notify_all()

    def _bound(self) -> int:
        return max(1, round(float(np.mean(self._at_least))))

    def trees(self) -> int:
        """The final count (every fold stopped)."""
        with self._changed:
            assert all(self._done)
            return self._bound()

    def wait_beyond(self, grown: int) -> bool:
        """Wait until more than `grown` trees are certain (True) or the count is final at `grown` or a
        fold failed (False)."""
        with self._changed:
            while True:
                if self._failed:
                    raise RuntimeError("a fold model failed: the scoring model is not refit")
                if self._bound() > grown:
                    return True
                if all(self._done):
                    return False
                self._changed.wait()


class _FoldProgress(xgb.callback.TrainingCallback):
    """Tells the tree count how far a fold has grown."""

    def __init__(self, count: _TreeCount, fold: int) -> None:
        super().__init__()
        self._count, self._fold = count, fold

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: Any) -> bool:
        self._count.grew(self._fold, epoch + 1)
        return False


class _GrowTo(xgb.callback.TrainingCallback):
    """Lets a fit add tree number `epoch + 1` only once the tree count is sure to reach it, and stops
    it at the count."""

    def __init__(self, count: _TreeCount) -> None:
        super().__init__()
        self._count = count

    def before_iteration(self, model: xgb.Booster, epoch: int, evals_log: Any) -> bool:
        return not self._count.wait_beyond(epoch)


def fit_recipe(
    features: np.ndarray,
    won: np.ndarray,
    spec: FeatureSpec,
    *,
    folds: int = FOLDS,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Recipe:
    """Fold models with early stopping, out-of-fold margins, calibration on them, and the refit on
    every deal with the folds' mean number of trees."""
    say = progress or (lambda message: None)
    params = booster_params(spec)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold_of = np.empty(won.size, dtype=int)
    splits = list(splitter.split(features, won))
    for j, (_, test) in enumerate(splits):
        fold_of[test] = j

    count = _TreeCount(folds)

    def fit_fold(j: int) -> xgb.Booster:
        train, test = splits[j]
        try:
            booster = xgb.train(
                params,
                dmatrix(features[train], won[train]),
                num_boost_round=MAX_TREES,
                evals=[(dmatrix(features[test], won[test]), "fold")],
                early_stopping_rounds=EARLY_STOPPING_TREES,
                verbose_eval=False,
                callbacks=[_FoldProgress(count, j)],
            )
        except BaseException:
            count.fail()
            raise
        count.stopped(j, booster.best_iteration + 1)
        return booster

    def refit() -> xgb.Booster:
        # Grows while the folds still run, only as far as their stopping points so far guarantee
        # (_TreeCount.wait_beyond): the same trees as a fit of exactly `trees` rounds, never one more.
        return xgb.train(params, dmatrix(features, won), num_boost_round=MAX_TREES,
                         callbacks=[_GrowTo(count)])

    # The folds are fit FIT_THREADS at a time, each on one thread (XGBoost releases the GIL while it
    # grows a tree): a booster's trees depend only on its data and seed, not on the thread or the
    # order, so they are the trees a fit one after the other grows. The scoring model's refit starts
    # on the first thread free after the last fold started (beside the last fold).
    with ThreadPoolExecutor(max_workers=FIT_THREADS, thread_name_prefix="fold-fit") as pool:
        running = [pool.submit(fit_fold, j) for j in range(folds)]
        refitting = pool.submit(refit)
        fitted: list[xgb.Booster] = []
        try:
            for j, fit in enumerate(running):
                say(f"Training fold {j + 1} of {folds} on {splits[j][0].size:,} deals")
                fitted.append(fit.result())
        except BaseException:
            count.fail()  # the refit stops waiting
            raise
        trees = count.trees()
        say(f"Training the scoring model on all {won.size:,} deals with {trees} trees")
        booster = refitting.result()
    fold_boosters = [b[: min(trees, b.num_boosted_rounds())] for b in fitted]
    oof_margin = np.empty(won.size)
    for j, fold_booster in enumerate(fold_boosters):
        rows = fold_of == j
        oof_margin[rows] = fold_booster.predict(dmatrix(features[rows]), output_margin=True)
    calibrator = fit_calibrator(oof_margin, won)
    fold_calibrators = [fit_calibrator(oof_margin[fold_of != j], won[fold_of != j]) for j in range(folds)]
    oof_probability = np.empty(won.size)
    for j, fold_calibrator in enumerate(fold_calibrators):
        rows = fold_of == j
        oof_probability[rows] = fold_calibrator(oof_margin[rows])
    return Recipe(booster, calibrator, trees, fold_of, fold_boosters, fold_calibrators, oof_margin,
                  oof_probability)


# --- What a training run gives ------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """Model and rules measured on the same deals, each measure with its interval."""

    model: Evaluation
    rules: Evaluation
    # measure -> value: on a holdout the evaluation's own value, in a cross-validation the mean over folds.
    headline: dict[str, dict[str, float | None]]
    intervals: dict[str, dict[str, Interval | None]]
    base_rate_brier: float
    rows: int
    # Cross-validation only: each fold's measures, model and rules.
    folds: list[dict[str, dict[str, float | None]]] = field(default_factory=list)
    # Cumulative gains of model and rules on the same deals (the share of wins in the best 10%, 20%, ...).
    gains: dict[str, list[float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.as_dict(),
            "rules": self.rules.as_dict(),
            "headline": self.headline,
            "intervals": {
                scorer: {m: (i.as_list() if i else None) for m, i in by_measure.items()}
                for scorer, by_measure in self.intervals.items()
            },
            "interval_kind": next(
                (i.kind for by in self.intervals.values() for i in by.values() if i is not None), None
            ),
            "base_rate_brier": self.base_rate_brier,
            "rows": self.rows,
            "folds": self.folds,
            "gains": {"shares": list(GAINS_SHARES), **self.gains},
        }


def _holdout_figures(model_p: np.ndarray, rules_p: np.ndarray, won: np.ndarray, train_rate: float,
                     bootstrap_rounds: int) -> Figures:
    model, rules = evaluate(model_p, won), evaluate(rules_p, won)
    intervals = (
        bootstrap_intervals({"model": model_p, "rules": rules_p}, won, rounds=bootstrap_rounds)
        if bootstrap_rounds else {"model": {}, "rules": {}}
    )
    return Figures(
        model=model,
        rules=rules,
        headline={scorer: {m: getattr(evaluation, m) for m in MEASURES}
                  for scorer, evaluation in (("model", model), ("rules", rules))},
        intervals=intervals,
        base_rate_brier=brier(np.full(won.size, train_rate), won),
        rows=int(won.size),
        gains={"model": gains_curve(model_p, won), "rules": gains_curve(rules_p, won)},
    )


def _cross_validated_figures(model_p: np.ndarray, rules_p: np.ndarray, won: np.ndarray, fold_of: np.ndarray,
                             folds: int) -> Figures:
    per_fold = []
    base = np.empty(won.size)
    for j in range(folds):
        rows = fold_of == j
        per_fold.append({"model": measures(model_p[rows], won[rows]),
                         "rules": measures(rules_p[rows], won[rows])})
        base[rows] = won[~rows].mean()  # the constant a fold's training deals would have said
    headline: dict[str, dict[str, float | None]] = {"model": {}, "rules": {}}
    intervals: dict[str, dict[str, Interval | None]] = {"model": {}, "rules": {}}
    for scorer in ("model", "rules"):
        for measure in MEASURES:
            mean, sd = fold_spread([f[scorer][measure] for f in per_fold])
            headline[scorer][measure] = mean
            intervals[scorer][measure] = (
                None if mean is None or sd is None else Interval(mean - sd, mean + sd, "folds")
            )
    return Figures(
        model=evaluate(model_p, won),
        rules=evaluate(rules_p, won),
        headline=headline,
        intervals=intervals,
        base_rate_brier=brier(base, won),
        rows=int(won.size),
        folds=per_fold,
        gains={"model": gains_curve(model_p, won), "rules": gains_curve(rules_p, won)},
    )


@dataclass(frozen=True)
class TrainingResult:
    """The trained engine, how it and the rules did, and what gives every deal its honest score."""

    engine: ModelScoringEngine
    figures: Figures  # the headline: the time holdout, or the cross-validation
    validation: str  # HOLDOUT or CROSS_VALIDATION
    history_order: str  # ORDER_*
    rows: int
    fit_rows: int  # deals the scoring model's trees were fit on (all of its training history)
    holdout_rows: int  # 0 for a cross-validation
    holdout_from: datetime | None
    trees: int
    calibration_method: str
    folds: int
    field_guard: list[FieldVerdict]
    # Cross-validation with a declared order: the newest fifth in that order, held out.
    time_holdout: Figures | None = None
    # The feature groups that move the scores most: mean |log-odds|, largest first.
    drivers: list[tuple[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    # Not stored: the deals in training order, and who scores each honestly (-1 the engine: a held-out
    # deal; j the model of fold j, which did not train on it).
    ordered: list[LabeledLead] = field(default_factory=list, repr=False)
    honest_scorer: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=int), repr=False)
    fold_engines: list[ModelScoringEngine] = field(default_factory=list, repr=False)
    features: np.ndarray | None = field(default=None, repr=False)  # `ordered`'s rows, each at its moment

    @property
    def model(self) -> Evaluation:
        return self.figures.model

    @property
    def rules(self) -> Evaluation:
        return self.figures.rules

    @property
    def base_rate_brier(self) -> float:
        return self.figures.base_rate_brier

    @property
    def calibration_rows(self) -> int:
        """Deals whose out-of-fold margins calibrated the model: every deal its trees were fit on."""
        return self.fit_rows

    def metrics(self) -> dict[str, Any]:
        """Everything measured, as JSON for the model registry."""
        figures = self.figures.as_dict()
        return {
            **figures,
            "validation": self.validation,
            "history_order": self.history_order,
            "rows": self.rows,
            "fit_rows": self.fit_rows,
            "calibration_rows": self.calibration_rows,
            "calibrated_on": "out_of_fold",
            "holdout_rows": self.holdout_rows,
            "holdout_from": self.holdout_from.isoformat() if self.holdout_from else None,
            "trees": self.trees,
            "calibration_method": self.calibration_method,
            "folds_count": self.folds,
            "time_holdout": self.time_holdout.as_dict() if self.time_holdout else None,
            "field_guard": [v.as_dict() for v in self.field_guard],
            "drivers": [[group, value] for group, value in self.drivers],
            "seconds": self.seconds,
        }

    def summary(self) -> str:
        """The report as plain text (what `cli train` prints)."""
        return format_report(self.metrics())

    def honest_results(self, batch_size: int = 10_000) -> list[ScoreResult]:
        """Every deal's score with its reasons, in training order, each from a model that did not
        train on it (as of the deal's moment, so no `valid_until`)."""
        results: list[ScoreResult | None] = [None] * len(self.ordered)
        for part, explained in self.honest_batches(batch_size):
            for i, result in zip(part, explained):
                results[i] = result
        return results  # type: ignore[return-value]

    def honest_batches(self, batch_size: int = 10_000) -> Iterator[tuple[np.ndarray, list[ScoreResult]]]:
        """honest_results a batch at a time, scorer by scorer: (positions in `ordered`, their results),
        so a caller can store one batch while the next is computed."""
        for part, explained in self.honest_explanations(batch_size):
            yield part, [explanation.result() for explanation in explained]

    def honest_explanations(self, batch_size: int = 10_000) -> Iterator[tuple[np.ndarray, list[Explanation]]]:
        """honest_batches with the explanations behind the results (`Explanation.result`), for a caller
        that writes them out and needs no ScoreResult objects."""
        for scorer in np.unique(self.honest_scorer):
            engine = self.engine if scorer < 0 else self.fold_engines[scorer]
            rows = np.flatnonzero(self.honest_scorer == scorer)
            for start in range(0, rows.size, batch_size):
                part = rows[start : start + batch_size]
                leads = [self.ordered[i] for i in part]
                yield part, engine.explain_many([l.facts for l in leads], [l.moment for l in leads],
                                                None if self.features is None else self.features[part])


def _rule_probabilities(leads: Sequence[LabeledLead]) -> np.ndarray:
    rules = RuleBasedScoringEngine()
    return np.array([rules.score(lead.facts, lead.moment).score / 100 for lead in leads], dtype=float)


def _drivers(engine: ModelScoringEngine, features: np.ndarray) -> list[tuple[str, float]]:
    spec = engine.spec
    contributions = engine.contributions(features)[:, :-1]
    pull = np.abs(contributions @ spec.group_matrix()).mean(axis=0)
    return sorted(zip(spec.groups, (float(v) for v in pull)), key=lambda item: -item[1])[:10]


def fit_scoring_model(
    leads: Sequence[LabeledLead],
    *,
    progress: Callable[[str], None] | None = None,
    meta: dict[str, Any] | None = None,
    keep_order: bool = False,
    holdout_rows: int | None = None,
    history_order: str | None = None,
    keep_fields: Collection[str] = (),
    folds: int = FOLDS,
    seed: int = 0,
    bootstrap_rounds: int | None = None,
    dates_usable: bool | None = None,
) -> TrainingResult:
    """Check the fields, fit the recipe, measure model and rules, and say who scores each deal honestly.

    Leads are ordered by close time (ties keep the given order); `keep_order` takes the given order as
    the timeline instead (`history_order` then says what that order is: a declared ORDER_*; without
    it, cross_validate's construction, whose last `holdout_rows` are the holdout). Close dates that
    cannot tell the newest deals apart (`dates_tell_apart`, or `dates_usable=False`: the import said
    so) make it a cross-validation. Raises
    NotEnoughHistory below MIN_CLOSED closed leads or MIN_EACH_OUTCOME of either outcome.
    """
    say = progress or (lambda message: None)
    started = time.perf_counter()
    rounds = BOOTSTRAP_ROUNDS if bootstrap_rounds is None else bootstrap_rounds
    won_count = sum(lead.won for lead in leads)
    check_history(won_count, len(leads) - won_count)

    # Stable: ties keep their order.
    ordered = list(leads) if keep_order else sorted(leads, key=lambda lead: lead.closed_at)
    if keep_order:
        order = history_order or ORDER_DATES
        validation = HOLDOUT if holdout_rows is not None or order == ORDER_DATES else CROSS_VALIDATION
    elif dates_usable is not False and dates_tell_apart([lead.closed_at for lead in ordered]):
        order, validation = ORDER_DATES, HOLDOUT
    else:
        order, validation = ORDER_UNKNOWN, CROSS_VALIDATION
    facts = [lead.facts for lead in ordered]
    moments = [lead.moment for lead in ordered]
    won = np.array([lead.won for lead in ordered], dtype=float)
    count = len(ordered)
    held = (holdout_rows or holdout_size(count)) if validation == HOLDOUT else 0
    train = slice(0, count - held)

    say(f"Checking the custom fields of {count - held:,} closed leads for leaks and ids")
    verdicts = check_fields(facts[train], won[train], keep=keep_fields, seed=seed)
    say(f"Computing features of {count:,} closed leads")
    spec = FeatureSpec.learn(without_fields(facts[train], left_out(verdicts)))
    features = spec.matrix(facts, moments)

    recipe = fit_recipe(features[train], won[train], spec, folds=folds, seed=seed, progress=say)
    engine = ModelScoringEngine(
        recipe.booster,
        recipe.calibrator,
        spec,
        meta={**(meta or {}), "base_rate": float(won[train].mean()), "trees": recipe.trees,
              "fit_rows": count - held, "validation": validation},
    )
    fold_engines = [
        ModelScoringEngine(b, c, spec, meta={"fold": j})
        for j, (b, c) in enumerate(zip(recipe.fold_boosters, recipe.fold_calibrators))
    ]
    time_holdout = None
    if validation == HOLDOUT:
        say(f"Measuring model and rules on the newest {held:,} closed leads")
        test = slice(count - held, count)
        model_p = engine.probabilities(features[test])
        figures = _holdout_figures(model_p, _rule_probabilities(ordered[test]), won[test],
                                   float(won[train].mean()), rounds)
        sample = np.random.default_rng(seed).permutation(np.arange(count - held, count))[:DRIVER_ROWS]
        drivers = _drivers(engine, features[np.sort(sample)])
        honest_scorer = np.r_[recipe.fold_of, np.full(held, -1)]
    else:
        say(f"Measuring model and rules over {folds} folds of {count:,} closed leads")
        rules_p = _rule_probabilities(ordered)
        figures = _cross_validated_figures(recipe.oof_probability, rules_p, won, recipe.fold_of, folds)
        sample = np.random.default_rng(seed).permutation(count)[:DRIVER_ROWS]
        drivers = _drivers(engine, features[np.sort(sample)])
        honest_scorer = recipe.fold_of.copy()
        if order in (ORDER_NEWEST_FIRST, ORDER_OLDEST_FIRST):
            late = holdout_size(count)
            say(f"Measuring on the newest {late:,} closed leads in the order you gave")
            older = slice(0, count - late)
            again = fit_recipe(features[older], won[older], spec, folds=folds, seed=seed)
            newest = slice(count - late, count)
            time_holdout = _holdout_figures(
                again.calibrator(again.booster.predict(dmatrix(features[newest]),
                                                       output_margin=True)),
                rules_p[newest], won[newest], float(won[older].mean()), rounds,
            )

    return TrainingResult(
        engine=engine,
        figures=figures,
        validation=validation,
        history_order=order,
        rows=count,
        fit_rows=count - held,
        holdout_rows=held,
        holdout_from=ordered[count - held].closed_at if held else None,
        trees=recipe.trees,
        calibration_method=recipe.calibrator.method,
        folds=folds,
        field_guard=verdicts,
        time_holdout=time_holdout,
        drivers=drivers,
        seconds=time.perf_counter() - started,
        ordered=ordered,
        honest_scorer=honest_scorer,
        fold_engines=fold_engines,
        features=features,
    )


# --- Reports ------------------------------------------------------------------------------------

_LABELS = {
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC",
    "brier": "Brier (lower is better)",
    "top_20_win_rate": "Win rate in top 20%",
    "top_20_lift": "Lift of top 20%",
}
NO_DATES_SENTENCE = (
    "Your history has no close dates, so the newest deals cannot be told apart: "
    "these figures are a {folds}-fold cross-validation"
)


def stored_interval(metrics: dict[str, Any], scorer: str, measure: str) -> Interval | None:
    """A measure's interval from stored metrics (None for models stored before intervals were)."""
    pair = ((metrics.get("intervals") or {}).get(scorer) or {}).get(measure)
    return Interval(pair[0], pair[1], metrics.get("interval_kind") or "bootstrap") if pair else None


def stored_headline(metrics: dict[str, Any], scorer: str, measure: str) -> float | None:
    """A measure's headline value from stored metrics: the mean over folds for a cross-validation,
    else the holdout's (older models stored only that)."""
    headline = (metrics.get("headline") or {}).get(scorer)
    if headline is not None:
        return headline.get(measure)
    return metrics[scorer].get(measure)


def _comparison_lines(metrics: dict[str, Any]) -> list[str]:
    lines = [f"{'':26}{'model':>26}{'rules':>26}"]
    for measure in MEASURES:
        intervals = [stored_interval(metrics, s, measure) for s in ("model", "rules")]
        digits = digits_for(measure, *intervals)
        cells = [
            figure_text(measure, stored_headline(metrics, s, measure), interval, digits=digits)
            for s, interval in zip(("model", "rules"), intervals)
        ]
        lines.append(f"{_LABELS[measure]:26}{cells[0]:>26}{cells[1]:>26}")
    model_rate, rules_rate = metrics["model"]["base_rate"], metrics["rules"]["base_rate"]
    lines.append(f"{'Base rate':26}{model_rate:>26.1%}{rules_rate:>26.1%}")
    if metrics.get("base_rate_brier") is not None:
        lines.append(f"{'Brier of a constant base rate':26}{metrics['base_rate_brier']:>26.4f}")
    return lines


def format_report(metrics: dict[str, Any]) -> str:
    """Model and rules side by side with their intervals, how they were measured, the calibration
    tables and the fields left out: from stored metrics, so `train` and `evaluate` print alike."""
    validation = metrics.get("validation", HOLDOUT)
    kind = metrics.get("interval_kind")
    lines = []
    if validation == CROSS_VALIDATION:
        folds = metrics.get("folds_count", FOLDS)
        lines.append(NO_DATES_SENTENCE.format(folds=folds) + f" over {metrics['rows']:,} closed leads "
                     "(each scored by a model trained on the other folds); +- is the spread over the folds.")
    else:
        since = str(metrics.get("holdout_from") or "")[:16].replace("T", " ")
        lines.append(f"Holdout: the newest {metrics['holdout_rows']:,} of {metrics['rows']:,} closed leads "
                     f"(closed from {since})" + ("; in brackets a 95% bootstrap interval." if kind else "."))
    lines.append("")
    lines += _comparison_lines(metrics)
    time_holdout = metrics.get("time_holdout")
    if time_holdout:
        order = "newest first" if metrics.get("history_order") == ORDER_NEWEST_FIRST else "oldest first"
        lines += ["", f"In the order you gave ({order}), the newest {time_holdout['rows']:,} held out:", ""]
        lines += _comparison_lines(time_holdout)
    lines += ["", "Calibration by decile (predicted -> observed, leads)", f"{'':4}{'model':^28}{'rules':^28}"]
    model_table, rules_table = metrics["model"]["calibration"], metrics["rules"]["calibration"]
    for i in range(max(len(model_table), len(rules_table))):
        cells = []
        for table in (model_table, rules_table):
            if i < len(table):
                b = table[i]
                cells.append(f"{b['predicted']:>7.1%} -> {b['observed']:>6.1%} {b['count']:>6,}")
            else:
                cells.append("")
        lines.append(f"{i + 1:>2}  {cells[0]:<28}{cells[1]:<28}")
    guard = metrics.get("field_guard") or []
    if guard:
        lines += ["", "Custom fields checked before training:"]
        lines += [f"  - {v['reason']} {FieldVerdict.from_dict(v).outcome}" for v in guard]
    lines.append("")
    trees, fit_rows = metrics.get("trees", 0), metrics.get("fit_rows", 0)
    method = metrics.get("calibration_method", "")
    if metrics.get("calibrated_on") == "out_of_fold":
        lines.append(f"The scoring model: {trees} trees fit on all {fit_rows:,} deals of its training "
                     f"history, calibrated ({method}) on their out-of-fold scores; "
                     f"{metrics.get('seconds', 0):.1f} s.")
    else:  # models stored before the refit
        lines.append(f"The scoring model: {trees} trees fit on {fit_rows:,} deals, calibrated ({method}) on "
                     f"{metrics.get('calibration_rows', 0):,}.")
    return "\n".join(lines)


# --- Cross-validation of the whole recipe ---------------------------------------------------------


@dataclass(frozen=True)
class CrossValidation:
    """The whole training recipe (guard, fit, calibrate, measure) repeated on k random folds: each fold
    is the holdout once. For data without meaningful dates (a public data set, an import without close
    dates) this is the fair measure; the spread across folds says how much a single holdout wobbles."""

    folds: list[TrainingResult]
    seed: int

    def mean(self, scorer: str, measure: str) -> float | None:
        return fold_spread([getattr(getattr(fold, scorer), measure) for fold in self.folds])[0]

    def spread(self, scorer: str, measure: str) -> float | None:
        return fold_spread([getattr(getattr(fold, scorer), measure) for fold in self.folds])[1]

    def as_dict(self) -> dict[str, Any]:
        return {
            "folds": len(self.folds),
            "seed": self.seed,
            **{
                f"{scorer}_{key}": {"mean": self.mean(scorer, key), "sd": self.spread(scorer, key)}
                for scorer in ("model", "rules")
                for key in MEASURES
            },
        }

    def summary(self) -> str:
        """Mean +- standard deviation over the folds, model next to rules."""
        lines = [f"{len(self.folds)}-fold cross-validation (random folds, seed {self.seed}): mean +- sd", ""]
        lines.append(f"{'':26}{'model':>22}{'rules':>22}")
        for measure in MEASURES:
            means = [self.mean(scorer, measure) for scorer in ("model", "rules")]
            sds = [self.spread(scorer, measure) or 0.0 for scorer in ("model", "rules")]
            intervals = [None if m is None else Interval(m - sd, m + sd, "folds")
                         for m, sd in zip(means, sds)]
            digits = digits_for(measure, *intervals)
            cells = [figure_text(measure, m, i, digits=digits) for m, i in zip(means, intervals)]
            lines.append(f"{_LABELS[measure]:26}{cells[0]:>22}{cells[1]:>22}")
        first = self.folds[0]
        seconds = sum(fold.seconds for fold in self.folds)
        lines.append("")
        lines.append(
            f"Each fold: the recipe on {first.fit_rows:,} deals ({first.trees} trees, calibrated on their "
            f"out-of-fold scores), measured on {first.holdout_rows:,} of {first.rows:,} closed leads; "
            f"{seconds:.1f} s in all."
        )
        return "\n".join(lines)


def cross_validate(
    leads: Sequence[LabeledLead],
    *,
    folds: int = 5,
    seed: int = 0,
    keep_fields: Collection[str] = (),
    progress: Callable[[str], None] | None = None,
) -> CrossValidation:
    """Run `fit_scoring_model` once per stratified random fold, that fold being the holdout: the
    newest rows of a timeline made of the other folds (shuffled) followed by it."""
    if not 2 <= folds <= len(leads):
        raise ValueError(f"cannot split {len(leads)} leads into {folds} folds")
    say = progress or (lambda message: None)
    won = np.array([lead.won for lead in leads], dtype=int)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    results = []
    for i, (rest, test) in enumerate(splitter.split(np.zeros(len(leads)), won)):
        rest = np.random.default_rng(seed + i).permutation(rest)
        ordered = [leads[j] for j in rest] + [leads[j] for j in test]
        say(f"Fold {i + 1} of {folds}")
        results.append(fit_scoring_model(ordered, keep_order=True, holdout_rows=len(test),
                                         keep_fields=keep_fields, seed=seed, bootstrap_rounds=0))
    return CrossValidation(results, seed)
