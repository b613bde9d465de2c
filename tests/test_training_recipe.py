"""The training recipe without a database (issue #13): undated history is cross-validated (and a
declared order gives a time holdout), the scoring model is refit on all its training history and
calibrated on out-of-fold margins, every deal gets a score from a model that did not learn from it,
figures carry intervals and no more decimals than those support, and the leak and id guard."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import xgboost as xgb

from crm_app.scoring.calibration import IsotonicCalibrator, PlattCalibrator, calibrator_from_dict
from crm_app.scoring.engine import LeadFacts
from crm_app.scoring.evaluation import Interval, figure_text, measures, resampled_measures
from crm_app.scoring.field_guard import LEAK_AUC, check_fields
from crm_app.scoring import training
from crm_app.scoring.features import FeatureSpec
from crm_app.scoring.model import ModelScoringEngine, dmatrix
from crm_app.scoring.training import (
    CROSS_VALIDATION,
    HOLDOUT,
    NO_DATES_SENTENCE,
    ORDER_NEWEST_FIRST,
    LabeledLead,
    dates_tell_apart,
    fit_scoring_model,
)

START = datetime(2025, 1, 1, tzinfo=timezone.utc)


def history(count: int, *, dated: bool = True, seed: int = 3) -> list[LabeledLead]:
    """Closed deals, oldest first: industry and seats decide; newer deals win more often (a drift a
    time holdout sees and a random fold does not)."""
    rng = random.Random(seed)
    leads = []
    for i in range(count):
        industry = rng.choice(["Software", "Retail", "Media"])
        seats = rng.randint(1, 400)
        log_odds = -1.0 + 1.2 * (industry == "Software") + seats / 300 + 1.5 * i / count
        won = rng.random() < 1 / (1 + math.exp(-log_odds))
        closed = START + timedelta(hours=i) if dated else START
        leads.append(LabeledLead(LeadFacts(custom_fields={"industry": industry, "seats": seats}), closed, won,
                                 lead_id=i + 1))
    return leads


def test_close_dates_that_cannot_tell_the_newest_deals_apart() -> None:
    assert dates_tell_apart([START + timedelta(hours=i) for i in range(100)])
    assert not dates_tell_apart([START] * 100)  # an import without dates: one moment for every deal
    # The newest fifth (20 deals) mostly share one moment: which of them are newest is the file's order.
    late = [START + timedelta(days=9)] * 15
    assert not dates_tell_apart([START + timedelta(hours=i) for i in range(85)] + late)
    # A tie among the oldest deals does not matter.
    assert dates_tell_apart([START] * 50 + [START + timedelta(hours=i) for i in range(1, 51)])


def test_an_undated_history_sorted_newest_first_is_cross_validated_and_says_so() -> None:
    oldest_first = history(600, dated=False)
    file_rows = oldest_first[::-1]  # the export lists the newest deal first
    result = fit_scoring_model(file_rows)
    assert result.validation == CROSS_VALIDATION and result.holdout_rows == 0
    assert result.fit_rows == 600  # the model that scores learned from every deal
    metrics = result.metrics()
    assert len(metrics["folds"]) == 5 and metrics["interval_kind"] == "folds"
    low, high = metrics["intervals"]["model"]["roc_auc"]
    assert low < metrics["headline"]["model"]["roc_auc"] < high
    assert result.summary().startswith(NO_DATES_SENTENCE.format(folds=5))
    assert result.time_holdout is None  # nobody said what the file order means

    # The manager said "newest first": the import order (reversed) is the timeline, and the newest
    # fifth (the first rows of the file) is held out besides the cross-validation.
    declared = fit_scoring_model(oldest_first, keep_order=True, history_order=ORDER_NEWEST_FIRST)
    assert declared.validation == CROSS_VALIDATION
    held = declared.time_holdout
    newest = file_rows[:120]
    assert held.rows == 120 and held.model.base_rate == pytest.approx(np.mean([l.won for l in newest]))
    assert "In the order you gave (newest first), the newest 120 held out" in declared.summary()


def test_the_scoring_model_is_refit_on_all_its_training_history_and_calibrated_out_of_fold() -> None:
    result = fit_scoring_model(history(1500))
    assert result.validation == HOLDOUT and result.holdout_rows == 300
    # Trees fit on the whole training part (1,200 deals); before, on 64% of all (960), with the next
    # 16% only for stopping and calibration.
    assert result.fit_rows == result.calibration_rows == 1200
    stored = ModelScoringEngine.from_bytes(result.engine.to_bytes())
    assert stored.meta["fit_rows"] == 1200 and stored.meta["trees"] == result.trees
    assert stored.booster.num_boosted_rounds() == result.trees
    assert result.metrics()["calibrated_on"] == "out_of_fold"
    assert result.calibration_method == "isotonic"  # 1,200 out-of-fold margins are enough for its steps


def test_folds_fit_side_by_side_give_the_models_of_one_fit_after_the_other(monkeypatch) -> None:
    leads = history(1500)
    won = np.array([lead.won for lead in leads], dtype=float)
    spec = FeatureSpec.learn([lead.facts for lead in leads])
    features = spec.matrix([lead.facts for lead in leads], [lead.moment for lead in leads])
    side_by_side = training.fit_recipe(features, won, spec)
    monkeypatch.setattr(training, "FIT_THREADS", 1)
    in_turn = training.fit_recipe(features, won, spec)
    assert side_by_side.trees == in_turn.trees
    models = zip(side_by_side.fold_boosters + [side_by_side.booster], in_turn.fold_boosters + [in_turn.booster])
    for a, b in models:
        assert bytes(a.save_raw("ubj")) == bytes(b.save_raw("ubj"))
    assert (side_by_side.oof_probability == in_turn.oof_probability).all()
    # The refit grew beside the folds only as far as their stopping points allowed: it has the trees of
    # a fit of exactly the folds' mean, no more.
    plain = xgb.train(training.booster_params(spec), dmatrix(features, won), num_boost_round=in_turn.trees)
    assert side_by_side.booster.num_boosted_rounds() == in_turn.trees
    assert (side_by_side.booster.predict(dmatrix(features), output_margin=True)
            == plain.predict(dmatrix(features), output_margin=True)).all()


def test_a_failing_fold_fails_the_training_instead_of_leaving_the_refit_waiting(monkeypatch) -> None:
    leads = history(600)
    won = np.array([lead.won for lead in leads], dtype=float)
    spec = FeatureSpec.learn([lead.facts for lead in leads])
    features = spec.matrix([lead.facts for lead in leads], [lead.moment for lead in leads])
    grew = training._FoldProgress.after_iteration

    def broken(self, model, epoch, evals_log):
        if self._fold == 3 and epoch == 5:
            raise MemoryError("fold 4 ran out of memory")
        return grew(self, model, epoch, evals_log)

    monkeypatch.setattr(training._FoldProgress, "after_iteration", broken)
    with pytest.raises(MemoryError, match="fold 4"):
        training.fit_recipe(features, won, spec)


def test_every_deal_is_scored_by_a_model_that_did_not_learn_from_it() -> None:
    result = fit_scoring_model(history(800))
    scorer = result.honest_scorer
    assert (scorer[:640] >= 0).all() and (scorer[640:] == -1).all()  # folds, then the held-out deals
    honest = result.honest_results()
    assert len(honest) == 800 and all(r.valid_until is None for r in honest)
    assert all(sum(x.points for x in r.reasons) == r.score for r in honest)
    # A held-out deal's honest score is the scoring model's own (it never trained on it) ...
    last = result.ordered[-1]
    assert honest[-1].score == result.engine.score(last.facts, last.moment).score
    # ... a training deal's comes from its fold's model, not from the scoring model that learned it.
    fold_model = result.fold_engines[scorer[0]]
    assert honest[0].score == fold_model.score(result.ordered[0].facts, result.ordered[0].moment).score


def test_a_small_holdout_is_printed_with_an_interval_and_fewer_decimals() -> None:
    result = fit_scoring_model(history(200, seed=8))
    assert result.holdout_rows == 40
    interval = result.figures.intervals["model"]["roc_auc"]
    assert interval.kind == "bootstrap" and interval.high - interval.low > 0.1  # 40 deals: a wide range
    line = next(l for l in result.summary().splitlines() if l.startswith("ROC-AUC"))
    model_cell = line.split()[1:3]  # "0.78", "(0.64-0.90)"
    assert len(model_cell[0].split(".")[1]) == 2 and model_cell[1].startswith("(")
    assert figure_text("roc_auc", 0.8613, Interval(0.842, 0.879, "bootstrap")) == "0.861 (0.842-0.879)"
    assert figure_text("roc_auc", 0.81, Interval(0.73, 0.895, "bootstrap")) == "0.81 (0.73-0.90)"
    assert figure_text("brier", 0.1163, Interval(0.1153, 0.1173, "folds")) == "0.1163 +- 0.0010"
    assert figure_text("top_20_win_rate", 0.36, Interval(0.3, 0.42, "bootstrap")) == "36% (30%-42%)"


def test_the_bootstrap_measures_each_resample_as_measures_would() -> None:
    # Resamples are given as draw counts per deal and measured all at once: the figures are those of
    # measures() on each resample itself, ties in the scores (the rules' steps) included.
    rng = np.random.default_rng(5)
    won = (rng.random(300) < 0.3).astype(float)
    for probability in (rng.random(300), rng.integers(0, 6, 300) / 5):
        draws = [rng.integers(0, 300, 300) for _ in range(20)] + [np.flatnonzero(won == 0)]  # one without wins
        counts = np.array([np.bincount(draw, minlength=300) for draw in draws], dtype=float)
        found = resampled_measures(probability, won, counts)
        for r, draw in enumerate(draws):
            for measure, value in measures(probability[draw], won[draw]).items():
                if value is None:
                    assert math.isnan(found[measure][r])
                else:
                    assert found[measure][r] == pytest.approx(value, abs=1e-12)


def test_stored_calibrators_keep_their_json_form() -> None:
    # As models stored before scikit-learn did the fitting wrote them.
    old = calibrator_from_dict(
        {"method": "isotonic", "margins": [-1.0, 0.0, 2.0], "probabilities": [0.1, 0.4, 0.9]}
    )
    assert list(old(np.array([-3.0, -0.5, 1.0, 5.0]))) == pytest.approx([0.1, 0.25, 0.65, 0.9])
    platt = calibrator_from_dict({"method": "platt", "slope": 0.5, "intercept": -1.0})
    assert platt(np.array([2.0]))[0] == pytest.approx(0.5)
    fitted = IsotonicCalibrator.fit(np.array([0.0, 1.0, 2.0, 3.0]), np.array([0, 1, 0, 1]))
    assert calibrator_from_dict(fitted.as_dict()) == fitted
    assert isinstance(calibrator_from_dict(PlattCalibrator(1.0, 0.0).as_dict()), PlattCalibrator)


# --- The leak and id guard -------------------------------------------------------------------------


def guarded_history(count: int = 600, seed: int = 4) -> tuple[list[LeadFacts], np.ndarray]:
    rng = random.Random(seed)
    facts, won = [], []
    for i in range(count):
        industry = rng.choice(["Software", "Retail"])
        outcome = rng.random() < (0.6 if industry == "Software" else 0.2)
        facts.append(LeadFacts(custom_fields={
            "industry": industry,
            "Deal amount": round(rng.uniform(500, 90_000), 2),  # every one differs: still a fact
            "Annual revenue": rng.randint(10_000, 50_000_000),  # whole numbers, all different: a fact
            "Customer No": 1000 + (i * 7919) % count,  # unique, dense, shuffled: an id
            "Row": count - i,  # counts down the file: an id that tracks time
            "Year": 2020 + 5 * i // count,  # follows the order but repeats: a fact (and not unique)
            "Lost reason": "" if outcome else rng.choice(["Price", "Timing", "No budget"]),  # after the close
            "Email": f"lead{i}@example.com",  # text, a different value on every deal
        }))
        won.append(outcome)
    return facts, np.array(won, dtype=float)


def test_the_guard_flags_leaks_and_ids_and_leaves_facts_alone() -> None:
    facts, won = guarded_history()
    verdicts = {v.key: v for v in check_fields(facts, won)}
    assert set(verdicts) == {"Customer No", "Row", "Lost reason", "Email"}
    assert verdicts["Lost reason"].kind == "leak" and verdicts["Lost reason"].auc >= LEAK_AUC
    assert verdicts["Lost reason"].reason == (
        f"Lost reason alone predicts the outcome with ROC-AUC {verdicts['Lost reason'].auc:.2f}: "
        "is it filled in after the deal closes?"
    )
    assert verdicts["Row"].kind == "id"
    assert "counts down with the order of your deals" in verdicts["Row"].reason
    assert verdicts["Customer No"].kind == "id" and verdicts["Email"].kind == "id"
    assert not any(v.kept for v in verdicts.values())
    kept = {v.key: v for v in check_fields(facts, won, keep={"Lost reason"})}
    assert kept["Lost reason"].kept and kept["Lost reason"].outcome == "Kept, as you asked."


def test_a_leaky_field_is_not_learned_unless_kept() -> None:
    facts, won = guarded_history(400)
    leads = [LabeledLead(f, START, bool(w), lead_id=i) for i, (f, w) in enumerate(zip(facts, won))]
    honest = fit_scoring_model(leads)
    learned = {c.key for c in honest.engine.spec.custom_fields}
    assert learned == {"industry", "Deal amount", "Annual revenue", "Year"}
    leaky = fit_scoring_model(leads, keep_fields={"Lost reason"})
    assert "Lost reason" in {c.key for c in leaky.engine.spec.custom_fields}
    assert leaky.figures.headline["model"]["roc_auc"] > 0.95 > honest.figures.headline["model"]["roc_auc"]
