"""The model page in a real browser: a rep is refused; a manager trains a model from the page, sees
its progress and then its measures next to the rules', switches the engine, and a lead's score and
reasons change to the model's.

The app's database gets a history of closed deals for this module only (owned by a user of its own);
the teardown deletes it and puts the rules back, so the other modules see the rubric's scores.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from crm_app.db.models import Lead
from crm_app.services.scoring import rescore_open_leads
from crm_app.services.scoring_settings import set_engine_choice
from tests.e2e.conftest import APP_NOW, choose_viewer
from tests.factories import make_user

pytestmark = pytest.mark.e2e

WON, LOST = 140, 110


@pytest.fixture(scope="module")
def closed_history(app_session):
    """250 deals closed 20-100 days ago: the won ones asked for pricing and a demo, the lost ones
    mostly opened an email or two."""
    owner = make_user(app_session, "Hilda History")
    params = {"owner": owner.id, "now": APP_NOW}
    app_session.execute(
        text(
            """
            INSERT INTO leads (name, email, company, company_size, source, stage, owner_id, tier, score,
                               created_at, stage_entered_at, closed_at, updated_at)
            SELECT 'History ' || i, 'history' || i || '@example.com', 'Past Co ' || i,
                   CASE WHEN i % 3 = 0 THEN 400 ELSE 12 END,
                   CASE WHEN i <= :won THEN 'referral' ELSE 'cold_outreach' END,
                   CASE WHEN i <= :won THEN 'won' ELSE 'lost' END, :owner, 'cold', 0,
                   :now - (120 + i % 60) * interval '1 day', :now - (20 + i % 80) * interval '1 day',
                   :now - (20 + i % 80) * interval '1 day', :now
              FROM generate_series(1, :total) AS i
            """
        ),
        {**params, "won": WON, "total": WON + LOST},
    )
    # Activities spread over each deal's life: pricing and demo requests for most wins.
    app_session.execute(
        text(
            """
            INSERT INTO activities (lead_id, kind, occurred_at)
            SELECT l.id, k.kind, l.created_at + (l.closed_at - l.created_at) * k.at
              FROM leads l
              JOIN LATERAL (VALUES ('email_opened', 0.1), ('pricing_request', 0.2), ('demo_request', 0.3),
                                   ('meeting', 0.5), ('page_visit', 0.15)) AS k(kind, at) ON TRUE
             WHERE l.owner_id = :owner
               AND (l.stage = 'won' AND (k.kind <> 'pricing_request' OR l.id % 5 <> 0)
                    OR l.stage = 'lost' AND k.kind = 'email_opened'
                    OR l.stage = 'lost' AND k.kind = 'page_visit' AND l.id % 4 = 0)
            """
        ),
        params,
    )
    app_session.commit()
    yield owner
    # Back to the rules for the other modules: the rubric's scores, no model, no jobs, no history.
    set_engine_choice(app_session, mode="rules", now=APP_NOW, actor=None)
    app_session.execute(text("DELETE FROM scoring_jobs"))
    app_session.execute(text("DELETE FROM scoring_models"))
    app_session.execute(text("DELETE FROM leads WHERE owner_id = :owner"), {"owner": owner.id})
    app_session.execute(text("DELETE FROM users WHERE id = :owner"), {"owner": owner.id})
    app_session.commit()
    rescore_open_leads(app_session, APP_NOW)


def test_a_rep_is_refused_the_model_page(page, seeded_app_data, closed_history):
    page.goto("/model")
    choose_viewer(page, "Ria Rep")
    expect(page.locator(".model-refused")).to_contain_text("Only a manager can see the model page")
    expect(page.locator(".train-button")).to_have_count(0)
    expect(page.locator(".measure-row")).to_have_count(0)


def test_a_manager_trains_a_model_then_switches_and_a_lead_is_scored_by_it(
    page, seeded_app_data, closed_history, app_session
):
    ada = seeded_app_data["leads"]["Ada Lovelace"]
    app_session.expire_all()
    rules_score = app_session.get(Lead, ada.id).score

    # This module's history, and whatever deals other modules closed in the same database.
    won, lost = app_session.execute(
        text("SELECT count(*) FILTER (WHERE stage = 'won'), count(*) FILTER (WHERE stage = 'lost') FROM leads")
    ).one()
    assert won >= WON and lost >= LOST
    closed = won + lost

    page.goto("/model")
    choose_viewer(page, "Maya Manager")
    expect(page.locator(".history-counts")).to_have_text(f"{closed} closed deals to learn from ({won} won, {lost} lost)")
    expect(page.locator(".no-model")).to_contain_text("No model trained yet")
    expect(page.locator(".effective-engine")).to_have_text("Rules")

    page.locator(".train-button").click()
    # Progress first (a bar with a step), then the outcome.
    expect(page.locator(".train-job[data-status=running] [role=progressbar]")).to_be_visible()
    expect(page.locator(".train-job[data-status=succeeded]")).to_contain_text(
        re.compile(rf"Model version \d+ trained on {closed} closed deals .*it is now the active model"), timeout=90_000
    )
    # The measures of model and rules side by side, and the charts.
    expect(page.locator(".headline-measures .measure-row")).to_have_count(5)
    auc = page.locator(".headline-measures .measure-row[data-measure=ROC-AUC]")
    assert float(auc.locator(".model-value").inner_text()) > float(auc.locator(".rules-value").inner_text())
    expect(page.locator(".calibration-chart.js-plotly-plot, .calibration-chart .js-plotly-plot").first).to_be_visible()
    expect(page.locator(".gains-chart.js-plotly-plot, .gains-chart .js-plotly-plot").first).to_be_visible()
    expect(page.locator(".version-row")).to_have_count(1)
    expect(page.locator(".trained-at")).to_contain_text(f"on {closed} closed deals")
    # Trained, active, but the team still scores with the rules until a manager switches.
    expect(page.locator(".effective-engine")).to_have_text("Rules")
    app_session.expire_all()
    assert app_session.get(Lead, ada.id).score == rules_score

    page.get_by_role("radio", name="Model").click()
    # A team-wide switch says what it changes before it is made.
    expect(page.locator(".switch-confirm .confirm-impact")).to_contain_text(re.compile(r"^Re-ranks \d+ open leads; Hot \d"))
    page.locator(".switch-confirm .confirm-ok").click()
    expect(page.locator(".effective-engine")).to_have_text(re.compile(r"^Model v\d+$"))
    expect(page.locator(".rescore-job[data-status=succeeded]")).to_contain_text("Rescored", timeout=60_000)

    app_session.expire_all()
    rescored = app_session.get(Lead, ada.id)
    texts = [reason["text"] for reason in rescored.score_reasons]
    assert "Baseline for your team" in texts
    assert sum(reason["points"] for reason in rescored.score_reasons) == rescored.score
    page.goto(f"/leads/{ada.id}")
    expect(page.locator(".detail-score")).to_have_text(str(rescored.score))
    expect(page.locator(".reason-row").first).to_be_visible()
    expect(page.get_by_text("Baseline for your team")).to_be_visible()


def test_a_bad_blend_share_is_explained_next_to_the_field(page, seeded_app_data, closed_history):
    page.goto("/model")
    choose_viewer(page, "Maya Manager")
    page.get_by_role("radio", name="Blend").click()
    page.locator(".blend-input input, input.blend-input").first.fill("250")
    page.locator(".blend-save").click()
    expect(page.locator(".blend-error")).to_have_text("Choose a share between 0 and 100%.")
    page.locator(".blend-input input, input.blend-input").first.fill("40")
    page.locator(".blend-save").click()
    page.locator(".switch-confirm .confirm-ok").click()
    expect(page.locator(".effective-engine")).to_have_text(re.compile(r"^Blend: 40% model v\d+, 60% rules$"))
    expect(page.locator(".blend-error")).to_have_count(0)
