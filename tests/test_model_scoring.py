"""The model engine without a database: reasons that add up and point the right way, calibration,
the measures, storing and loading, and facts from after the outcome kept out."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_app.domain import ActivityKind as K
from crm_app.domain import Source
from crm_app.scoring import ActivityFact, LeadFacts, Reason, tier_for
from crm_app.scoring.calibration import IsotonicCalibrator, PlattCalibrator
from crm_app.scoring.evaluation import calibration_table, pr_auc, roc_auc, top_share_win_rate
from crm_app.scoring.features import ACTIVITY_KINDS, FeatureSpec
from crm_app.scoring.model import BASELINE_TEXT, OTHER_MAX_POINTS, OTHER_TEXT, ModelScoringEngine, _classes, apportion
from crm_app.scoring.training import LabeledLead, NotEnoughHistory, fit_scoring_model
from crm_app.services.model_training import _reasons_json

NOW = datetime(2026, 11, 12, 15, 0, tzinfo=timezone.utc)
START = NOW - timedelta(days=400)


def synthetic_history(count: int, seed: int = 3) -> list[LabeledLead]:
    """Closed leads whose outcome follows known rules: referrals and pricing requests win, leads
    gone quiet for weeks before the close lose, an industry field helps a little."""
    rng = random.Random(seed)
    leads = []
    for i in range(count):
        closed_at = START + timedelta(days=360 * i / count)
        source = rng.choice(list(Source))
        asked = rng.random() < 0.35
        quiet_days = rng.choice([1, 3, 10, 30, 60])
        industry = rng.choice(["Software", "Retail", "Media"])
        log_odds = (
            -0.8 + 1.6 * (source is Source.REFERRAL) + 1.5 * asked - 0.04 * quiet_days
            + 0.5 * (industry == "Software") + rng.gauss(0, 0.5)
        )  # fmt: skip
        last = closed_at - timedelta(days=quiet_days)
        activities = [ActivityFact(K.EMAIL_OPENED, last - timedelta(days=d)) for d in range(rng.randint(0, 4))]
        activities.append(ActivityFact(K.PAGE_VISIT, last))
        if asked:
            activities.append(ActivityFact(K.PRICING_REQUEST, last - timedelta(days=1)))
        facts = LeadFacts(
            company_size=rng.choice([None, 5, 40, 300]),
            source=source.value,
            activities=tuple(activities),
            custom_fields={"industry": industry},
        )
        leads.append(LabeledLead(facts, closed_at, rng.random() < 1 / (1 + math.exp(-log_odds))))
    return leads


@pytest.fixture(scope="module")
def trained():
    return fit_scoring_model(synthetic_history(1500))


@pytest.fixture(scope="module")
def open_leads() -> list[LeadFacts]:
    """Fresh leads to score now, from the same story (their outcome is unknown)."""
    return [replace(lead.facts, activities=tuple(
        ActivityFact(a.kind, a.occurred_at + (NOW - lead.closed_at)) for a in lead.facts.activities
    )) for lead in synthetic_history(300, seed=11)]  # fmt: skip


# --- Reasons ------------------------------------------------------------------------------------


def test_reasons_add_up_to_the_score_starting_from_the_team_baseline(trained, open_leads) -> None:
    engine = trained.engine
    for facts in open_leads:
        result = engine.score(facts, NOW)
        assert sum(r.points for r in result.reasons) == result.score
        assert result.tier is tier_for(result.score)
        assert result.reasons[0].text == BASELINE_TEXT
        others = [r.points for r in result.reasons if r.text == OTHER_TEXT]
        assert all(abs(points) <= OTHER_MAX_POINTS for points in others), result.reasons


def test_each_reason_pushes_the_way_its_contribution_does(trained, open_leads) -> None:
    """A profile fact pushes the way its contribution does; the prospect's activity only ever up."""
    pushes = set()
    for explanation in trained.engine.explain_many(open_leads, NOW):
        for factor in explanation.factors:
            if factor.key in {kind.value for kind in K}:
                assert factor.points >= 0, factor
            elif factor.points:
                assert math.copysign(1, factor.points) == math.copysign(1, factor.log_odds), factor
                pushes.add(factor.points > 0)
    assert pushes == {True, False}, "expected profile reasons pushing both up and down"


def test_the_score_is_the_calibrated_probability_in_points(trained, open_leads) -> None:
    engine = trained.engine
    probabilities = engine.probabilities(engine.spec.matrix(open_leads, NOW))
    scores = [engine.score(f, NOW).score for f in open_leads]
    assert scores == [math.floor(100 * p + 0.5) for p in probabilities]


def test_reasons_name_what_the_model_learned(trained) -> None:
    referral_asking = LeadFacts(
        source=Source.REFERRAL.value,
        activities=(
            ActivityFact(K.PRICING_REQUEST, NOW - timedelta(days=2)),
            ActivityFact(K.PAGE_VISIT, NOW - timedelta(days=1)),
        ),
        custom_fields={"industry": "Software"},
    )
    gone_quiet = LeadFacts(
        source=Source.PAID_SEARCH.value,
        activities=(ActivityFact(K.PAGE_VISIT, NOW - timedelta(days=60)),),
        custom_fields={"industry": "Retail"},
    )
    hot = trained.engine.score(referral_asking, NOW)
    cold = trained.engine.score(gone_quiet, NOW)
    reasons = {r.text: r.points for r in hot.reasons}
    assert reasons["Source is Referral"] > 0
    assert reasons["Asked for pricing on 10 Nov"] > 0
    assert reasons["Visited the website on 11 Nov"] >= 0
    # What a lead has not done is no reason: it is part of the baseline.
    for reason in (*hot.reasons, *cold.reasons):
        assert not reason.text.startswith(("No ", "Never")) and "unknown" not in reason.text, reason
    assert hot.score > cold.score


@given(st.lists(st.floats(-60, 60, allow_nan=False), min_size=1, max_size=8), st.integers(-3, 3))
def test_apportion_rounds_to_the_total_and_keeps_every_sign(values, nudge) -> None:
    total = round(sum(values)) + (nudge if abs(nudge) <= 1 else 0)
    whole = apportion(values, total)
    assert sum(whole) == total
    for value, points in zip(values, whole):
        assert abs(points - value) < 2
        if abs(total - sum(values)) < 1:  # the totals the engine asks for
            assert value * points >= 0 or points == 0


# --- Time ---------------------------------------------------------------------------------------


def test_treeshap_by_classes_of_rows_equals_treeshap_row_by_row(trained, open_leads) -> None:
    # The engine computes TreeSHAP tree by tree, once per class of rows that the tree's splits send the
    # same way, and adds the trees up as XGBoost does; on the rows themselves XGBoost gives the very
    # same numbers (to the bit), for leads as they are and without activity, with values on split
    # points and unknowns among them, from the trained engine and from one read back from storage.
    engine = ModelScoringEngine.from_bytes(trained.engine.to_bytes())
    features = engine.spec.matrix(open_leads, NOW)
    on_splits = features.copy()
    for column, splits in engine._splits:  # noqa: SLF001 - values exactly at each split, and just below
        on_splits[: splits.size, column] = splits[: len(on_splits)]
        on_splits[splits.size : 2 * splits.size, column] = np.nextafter(splits, -np.inf)[: len(on_splits) - splits.size]
    on_splits[::7, engine.spec.columns.index(next(c for c in engine.spec.columns if c.group == "company_size"))] = np.nan
    for rows in (features, engine.spec.no_activity(features), on_splits):
        assert np.array_equal(engine.contributions(rows), engine._tree_shap(rows))  # noqa: SLF001
        assert np.array_equal(trained.engine.contributions(rows), engine._tree_shap(rows))  # noqa: SLF001


def test_in_place_margins_are_xgboosts_on_a_dmatrix(trained, open_leads) -> None:
    # The engine predicts in place (no DMatrix built): the same log-odds to the bit, unknowns included,
    # and from a model read back from storage as from the trained one.
    from crm_app.scoring.model import dmatrix

    features = trained.engine.spec.matrix(open_leads, NOW)
    features[::5, 7] = np.nan
    for engine in (trained.engine, ModelScoringEngine.from_bytes(trained.engine.to_bytes())):
        expected = engine.booster.predict(dmatrix(features), output_margin=True).astype(float)
        assert engine.margins(features).tobytes() == expected.tobytes()
        assert engine.margins(features[::-2]).tobytes() == expected[::-2].tobytes()  # a strided view
    assert trained.engine.margins(features[:0]).size == 0


@settings(deadline=None)
@given(st.lists(st.lists(st.integers(-1, 3), min_size=1, max_size=1), min_size=1, max_size=60),
       st.integers(1, 40), st.integers(0, 2**20))
def test_rows_of_equal_sides_are_one_class_and_no_other(cells, columns, width) -> None:
    # The classes TreeSHAP runs once for: two rows share one exactly when they agree at every split
    # (also past an int64 key: wide columns make the numbering rank its key midway).
    rng = np.random.default_rng(len(cells) * columns + width)
    base = np.array(cells, dtype=np.int32).reshape(-1, 1)
    sides = np.where(rng.random((len(cells), columns)) < 0.5, base, rng.integers(-1, 3, (len(cells), columns)))
    sides[:, 0] = np.where(sides[:, 0] < 0, -1, np.minimum(sides[:, 0] * width, 2**30))
    sides = sides.astype(np.int32)
    first, inverse = _classes(sides)
    assert np.array_equal(sides[first][inverse], sides)  # each row is its class's row
    assert len({row.tobytes() for row in sides}) == first.size  # and distinct rows are apart


@settings(deadline=None)  # a busy shared machine
@given(st.lists(st.tuples(st.integers(-100, 100), st.text(), st.text(max_size=12)), max_size=8))
def test_stored_reasons_are_the_json_of_their_dicts(reasons) -> None:
    # Training writes each closed deal's reasons as text for the COPY; a reader parses what
    # json.dumps of the dicts would have written (quotes, backslashes, accents, emoji included).
    listed = [Reason(points, text, key) for points, text, key in reasons]
    assert _reasons_json(reasons) == json.dumps([{**r.as_dict(), "key": r.key} for r in listed])


def test_a_score_holds_until_its_valid_until(trained, open_leads) -> None:
    engine = trained.engine
    expiring = [(f, r) for f in open_leads if (r := engine.score(f, NOW)).valid_until is not None]
    assert expiring, "recency features should make some scores expire"
    for facts, result in expiring[:50]:
        just_before = result.valid_until - timedelta(minutes=2)
        assert engine.score(facts, just_before).score == result.score


def test_activities_after_now_are_not_known_yet(trained) -> None:
    facts = synthetic_history(1, seed=5)[0].facts
    with_future = replace(
        facts, activities=(*facts.activities, ActivityFact(K.PRICING_REQUEST, NOW + timedelta(hours=1)))
    )
    now_known, plain = trained.engine.score(with_future, NOW), trained.engine.score(facts, NOW)
    assert (now_known.score, now_known.reasons) == (plain.score, plain.reasons)
    # ... and the score holds only until it is: the sweep rescores the lead then.
    assert now_known.valid_until == min(t for t in (plain.valid_until, NOW + timedelta(hours=1)) if t)


def test_features_as_of_the_close_ignore_what_came_after() -> None:
    lead = synthetic_history(1, seed=9)[0]
    after = (
        ActivityFact(K.PRICING_REQUEST, lead.closed_at + timedelta(minutes=1)),
        ActivityFact(K.MEETING, lead.closed_at + timedelta(days=3)),
    )
    spec = FeatureSpec.learn([lead.facts])
    leaked = replace(lead.facts, activities=(*lead.facts.activities, *after))
    before = spec.matrix([lead.facts], lead.closed_at)
    assert np.array_equal(spec.matrix([leaked], lead.closed_at), before, equal_nan=True)
    assert not np.array_equal(spec.matrix([leaked], lead.closed_at + timedelta(days=4)), before, equal_nan=True)


# --- Storing ------------------------------------------------------------------------------------


def test_a_stored_engine_scores_exactly_like_the_original(trained, open_leads) -> None:
    blob = trained.engine.to_bytes()
    assert not blob.startswith(b"\x80")  # not a pickle
    loaded = ModelScoringEngine.from_bytes(blob)
    assert loaded.score_many(open_leads, NOW) == trained.engine.score_many(open_leads, NOW)


def test_bytes_that_are_not_a_model_are_refused() -> None:
    with pytest.raises(ValueError, match="not a stored scoring model"):
        ModelScoringEngine.from_bytes(b"\x80\x04something pickled")


# --- Training -----------------------------------------------------------------------------------


def test_the_model_finds_the_signal_the_rules_miss(trained) -> None:
    assert trained.model.roc_auc > trained.rules.roc_auc
    assert trained.model.brier < trained.base_rate_brier
    assert trained.holdout_rows == round(0.2 * trained.rows)


@pytest.mark.parametrize(
    ("won", "lost", "needed"),
    [(100, 99, "at least 200 closed deals"), (20, 300, "at least 30 won"), (300, 29, "30 lost")],
)
def test_thin_history_is_refused_with_what_is_missing(won, lost, needed) -> None:
    leads = synthetic_history(won + lost)
    leads = [replace(lead, won=i < won) for i, lead in enumerate(leads)]
    with pytest.raises(NotEnoughHistory, match=needed) as error:
        fit_scoring_model(leads)
    assert f"{won + lost:,} closed ({won:,} won, {lost:,} lost)" in str(error.value)


# --- Calibrators and measures -------------------------------------------------------------------


def test_isotonic_pools_violators_into_a_non_decreasing_curve() -> None:
    calibrator = IsotonicCalibrator.fit(np.array([0.0, 1.0, 2.0, 3.0]), np.array([0, 1, 0, 1]))
    assert list(calibrator(np.array([-5.0, 0.0, 1.0, 1.5, 2.0, 3.0, 9.0]))) == [0, 0, 0.5, 0.5, 0.5, 1, 1]


def test_platt_recovers_a_logistic_curve() -> None:
    rng = np.random.default_rng(0)
    margin = rng.normal(0, 2, 20_000)
    won = rng.random(margin.size) < 1 / (1 + np.exp(-(0.5 * margin - 1)))
    calibrator = PlattCalibrator.fit(margin, won)
    assert calibrator.slope == pytest.approx(0.5, abs=0.05)
    assert calibrator.intercept == pytest.approx(-1, abs=0.05)


def test_measures_on_cases_worked_by_hand() -> None:
    won = np.array([1, 0, 1, 0])
    assert roc_auc(np.array([0.9, 0.1, 0.8, 0.2]), won) == 1.0
    assert roc_auc(np.array([0.1, 0.9, 0.2, 0.8]), won) == 0.0
    assert roc_auc(np.full(4, 0.3), won) == 0.5  # a constant score knows nothing
    assert roc_auc(np.array([0.5, 0.5]), np.array([1, 1])) is None
    # Ranked: won, lost, won -> precision 1 at recall 1/2, 2/3 at recall 1.
    assert pr_auc(np.array([0.9, 0.5, 0.4]), np.array([1, 0, 1])) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # Top 20% of 10 leads is 2; all tied: the expected win rate is the overall one.
    assert top_share_win_rate(np.full(10, 0.4), np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])) == pytest.approx(0.3)
    table = calibration_table(np.linspace(0, 1, 100), (np.arange(100) >= 50).astype(float))
    assert [b.count for b in table] == [10] * 10
    assert [b.observed for b in table] == [0] * 5 + [1] * 5


def test_features_from_counts_per_kind_equal_features_from_the_activities(trained, open_leads) -> None:
    # The switch preview reads each lead's activity as a count and latest moment per kind (a GROUP BY);
    # its rows are the very numbers `matrix` computes from the activities, custom fields included, with
    # an activity exactly at `now`, one after it and a lead with none.
    spec = trained.engine.spec
    assert spec.custom_fields
    leads = [*open_leads,
             replace(open_leads[0], activities=(ActivityFact(K.DEMO_REQUEST, NOW),
                                                ActivityFact(K.PRICING_REQUEST, NOW + timedelta(seconds=1)))),
             replace(open_leads[1], activities=(), company_size=None, custom_fields={})]
    kinds = list(ACTIVITY_KINDS)
    counts = np.zeros((len(leads), len(kinds)), dtype=np.int64)
    latest = np.zeros((len(leads), len(kinds)), dtype=np.int64)
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    for i, lead in enumerate(leads):
        for activity in lead.activities:
            if activity.occurred_at <= NOW and activity.kind in kinds:
                k = kinds.index(activity.kind)
                counts[i, k] += 1
                latest[i, k] = max(latest[i, k], (activity.occurred_at - epoch) // timedelta(microseconds=1))
    bare = [replace(lead, activities=()) for lead in leads]
    assert np.array_equal(spec.matrix_of_counts(bare, counts, latest, NOW), spec.matrix(leads, NOW), equal_nan=True)


def test_remembered_sentences_never_give_one_lead_another_leads_rare_category(trained, open_leads) -> None:
    # The engine remembers each profile sentence per value of its group's columns; a category too rare
    # for a column of its own shares one column ("<other>"), so its words come from each lead's facts.
    engine = ModelScoringEngine.from_bytes(trained.engine.to_bytes())
    group = engine.spec.groups.index("field:industry")
    for value in ("Mining", "Farming", "Software", "Mining"):
        lead = replace(open_leads[0], custom_fields={"industry": value})
        row = engine.spec.matrix([lead], NOW)[0]
        assert engine._describe(group, row, lead) == f"Industry is {value}"  # noqa: SLF001
    assert engine._describe(engine.spec.groups.index("source"), row, lead) == engine.spec.describe("source", row)  # noqa: SLF001
