"""Cross-validation: the training recipe measured on every lead once, for data without real dates."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from crm_app.scoring.engine import LeadFacts
from crm_app.scoring.training import LabeledLead, cross_validate

BANK_CSV = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "bank-additional-full.csv"
START = datetime(2025, 1, 1, tzinfo=timezone.utc)


def _leads(count: int) -> list[LabeledLead]:
    """Leads whose industry decides their chances (software wins 60%, retail 15%), no activities."""
    rng = random.Random(7)
    leads = []
    for i in range(count):
        industry = rng.choice(("software", "retail"))
        won = rng.random() < (0.6 if industry == "software" else 0.15)
        facts = LeadFacts(custom_fields={"industry": industry, "seats": rng.randint(1, 500)})
        leads.append(LabeledLead(facts, START + timedelta(hours=i), won))
    return leads


def test_every_lead_is_held_out_exactly_once_and_the_model_finds_the_signal() -> None:
    leads = _leads(1_000)
    cv = cross_validate(leads, folds=5, seed=1)

    assert len(cv.folds) == 5
    assert sum(fold.holdout_rows for fold in cv.folds) == 1_000
    assert all(fold.rows == 1_000 for fold in cv.folds)
    # Industry alone separates 60% from 15%: an AUC near 0.72; the rules see no activities at all.
    assert cv.mean("model", "roc_auc") > 0.66
    assert cv.mean("rules", "roc_auc") == 0.5
    assert cv.spread("model", "roc_auc") is not None
    text = cv.summary()
    assert "5-fold cross-validation" in text and "ROC-AUC" in text and "+-" in text


def test_too_many_folds_for_the_leads_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot split 3 leads into 5 folds"):
        cross_validate(_leads(3), folds=5)


@pytest.mark.skipif(not BANK_CSV.exists(), reason=f"bank marketing CSV not found at {BANK_CSV}")
def test_on_the_bank_data_random_folds_reach_the_published_bar() -> None:
    from scripts.evaluate_bank import evaluate_bank

    cv = evaluate_bank(BANK_CSV, order="random")
    # The bar for the public data set (duration excluded): ROC-AUC of at least 0.80.
    assert cv.mean("model", "roc_auc") >= 0.80
    assert cv.mean("rules", "roc_auc") == 0.5
    assert cv.mean("model", "brier") < cv.mean("rules", "brier")
