"""Bring your own history in a real browser (issue #13): an undated CRM export is imported, a manager
trains a model on it from the model page, reads how it was measured and which field it left out,
previews what switching changes, clicks "Score leads with this model", and the imported leads, open
and closed, then show the model's scores with their reasons.

The export is imported through the import service into the app's database for this module only; the
teardown deletes it and puts the rules back for the other modules.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from crm_app.services.importing import ImportMapping, import_file
from crm_app.services.scoring import rescore_open_leads
from crm_app.services.scoring_settings import set_engine_choice
from tests.e2e.conftest import APP_NOW, choose_viewer
from tests.test_model_history import MAPPING, lead_export

pytestmark = pytest.mark.e2e

PREFIX = "e2e-export:row-"


@pytest.fixture(scope="module")
def imported_history(app_session, tmp_path_factory):
    """300 closed and 20 open leads from an export without dates or activities, as a manager imports
    them. Returns (an open lead's id, a closed lead's id)."""
    path = tmp_path_factory.mktemp("export") / "leads.csv"
    lead_export(path, closed=300, open_rows=20, seed=9)
    mapping = ImportMapping.from_dict({**MAPPING, "row_id_prefix": PREFIX})
    import_file(app_session, path, mapping, now=datetime.now(timezone.utc))
    ids = app_session.execute(
        text("SELECT id, stage FROM leads WHERE external_id LIKE :p ORDER BY id"), {"p": PREFIX + "%"}
    ).all()
    open_id = next(i for i, stage in ids if stage not in ("won", "lost"))
    yield open_id, next(i for i, stage in ids if stage == "lost")
    set_engine_choice(app_session, mode="rules", now=APP_NOW, actor=None)
    app_session.execute(text("DELETE FROM scoring_jobs"))
    app_session.execute(text("DELETE FROM scoring_models"))
    app_session.execute(text("DELETE FROM leads WHERE external_id LIKE :p"), {"p": PREFIX + "%"})
    app_session.commit()
    rescore_open_leads(app_session, APP_NOW)


def test_a_manager_trains_on_an_import_reviews_it_and_scores_the_imported_leads(
    page, seeded_app_data, imported_history, app_session
):
    open_id, closed_id = imported_history
    page.goto("/model")
    choose_viewer(page, "Maya Manager")
    expect(page.locator(".effective-engine")).to_have_text("Rules")
    expect(page.locator(".no-model")).to_contain_text("No model trained yet")

    page.locator(".train-button").click()
    expect(page.locator(".train-job[data-status=succeeded]")).to_contain_text(
        re.compile(r"Model version \d+ trained on \d+ closed deals .*cross-validated.*"
                   r"it is now the active model"),
        timeout=240_000,
    )
    # How it was measured, and why, in words; each figure with its spread over the folds.
    expect(page.locator(".method-note")).to_contain_text(
        "Your history has no close dates, so the newest deals cannot be told apart: these figures are a "
        "5-fold cross-validation"
    )
    expect(page.locator(".validation-badge")).to_have_text("5-fold cross-validation")
    auc = page.locator(".headline-measures .measure-row[data-measure=ROC-AUC]")
    expect(auc.locator(".model-interval")).to_contain_text("±")
    # The manager said the file lists the newest deals first: its first rows are held out too.
    expect(page.locator(".time-note")).to_contain_text(
        "In the order you said the file lists its deals (newest first)"
    )
    expect(page.locator(".time-measures .measure-row")).to_have_count(5)
    # The column sales fill in after the outcome is named and left out, with a box to keep it.
    tags = page.locator(".field-row[data-field=Tags]")
    expect(tags.locator(".field-reason")).to_contain_text(
        re.compile(r"Tags alone predicts the outcome with ROC-AUC 0\.9\d: "
                   r"is it filled in after the deal closes\?")
    )
    expect(tags.locator(".field-outcome")).to_have_text("Left out of the model.")
    expect(tags.locator(".keep-field")).to_be_visible()
    expect(page.locator(".field-row[data-field='Prospect ID']")).to_have_attribute("data-kind", "id")

    # Review: the model is trained and active, the rules still score; what would switching change?
    expect(page.locator(".effective-engine")).to_have_text("Rules")
    # The model learned from every closed deal in the database: the import's 300, and any an earlier
    # browser test left (the app's database is shared by the run).
    closed = app_session.execute(text("SELECT count(*) FROM leads WHERE stage IN ('won', 'lost')")).scalar()
    expect(page.locator(".use-model-card .preview-sentence")).to_contain_text(
        re.compile(rf"\d+ of \d+ open leads would change tier\. "
                   rf"The {closed:,} closed deals it learned from will show")
    )
    expect(page.locator(".use-model-card .tier-row")).to_have_count(3)
    app_session.expire_all()
    assert app_session.execute(text("SELECT score FROM leads WHERE id = :id"), {"id": open_id}).scalar() == 0

    # Use.
    page.locator(".use-model-button").click()
    page.locator(".switch-confirm .confirm-ok").click()
    expect(page.locator(".effective-engine")).to_have_text(re.compile(r"^Model v\d+$"))
    expect(page.locator(".rescore-job[data-status=succeeded]")).to_contain_text(
        f"{closed:,} closed deals it learned from now show the score of a model that did not learn from them",
        timeout=120_000,
    )
    expect(page.locator(".use-model-card")).to_have_count(0)

    for lead_id in (open_id, closed_id):
        page.goto(f"/leads/{lead_id}")
        expect(page.locator(".detail-score")).not_to_have_text("0")
        expect(page.get_by_text("Baseline for your team")).to_be_visible()
        expect(page.locator(".reason-row").nth(1)).to_be_visible()
        app_session.expire_all()
        score = app_session.execute(text("SELECT score FROM leads WHERE id = :id"), {"id": lead_id}).scalar()
        assert score > 0
        expect(page.locator(".detail-score")).to_have_text(str(score))


def test_a_flagged_field_is_kept_in_the_next_training_when_ticked(page, seeded_app_data, imported_history):
    page.goto("/model")
    choose_viewer(page, "Maya Manager")
    tags = page.locator(".field-row[data-field=Tags]")
    expect(tags.locator(".field-outcome")).to_have_text("Left out of the model.")
    tags.locator(".keep-field").click()
    expect(tags.locator(".keep-field")).to_have_attribute("data-state", "checked")
    page.locator(".train-button").click()
    expect(page.locator(".train-job[data-status=succeeded]")).to_contain_text(
        re.compile(r"Model version (\d+) trained .*activate it to use it"), timeout=240_000
    )
    newest = page.locator(".version-row").first
    newest.locator(".activate-button").click()
    page.locator(".switch-confirm .confirm-ok").click()
    expect(newest.get_by_text("Active")).to_be_visible()
    # The model now shown learned from Tags, as asked, and says so; it measures far better, which is
    # exactly why the field is flagged.
    expect(tags.locator(".field-outcome")).to_have_text("Kept, as you asked.")
    expect(tags.locator(".keep-field")).to_have_attribute("data-state", "checked")
