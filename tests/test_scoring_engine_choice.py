"""The team's engine in use: the setting, falling back to the rules, the blend's reasons, training as a
job with progress, and switching engines rescoring the open leads (closed ones keep their scores).

Jobs commit from their own sessions, so this module works in a database of its own filled with
demo history (as test_model_training.py does), and each test starts from the rules with no model.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from crm_app.db.models import Lead
from crm_app.demo.generator import generate_demo_data
from crm_app.domain import ActivityKind
from crm_app.scoring import LeadFacts, RuleBasedScoringEngine
from crm_app.scoring.blend import BlendedScoringEngine, blend_results
from crm_app.scoring.engine import ActivityFact
from crm_app.scoring.model import OTHER_TEXT, ModelScoringEngine
from crm_app.services.errors import InvalidInput
from crm_app.services.leads import log_activity
from crm_app.services.model_report import model_page
from crm_app.services.model_training import activate_model, engine_for_model, train_model
from crm_app.services.scoring import active_engine, engine_config, load_facts, rescore_open_leads
from crm_app.services.scoring_jobs import (
    RESCORE,
    TRAIN,
    JobAlreadyRunning,
    latest_job,
    run_rescore_job,
    run_training_job,
    start_job,
)
from crm_app.services.scoring_settings import engine_status, set_engine_choice
from tests.conftest import scratch_engine

NOW = datetime(2026, 11, 12, 15, 0, tzinfo=timezone.utc)
LEADS = 1500


@pytest.fixture(scope="module")
def history(database_url: str) -> Iterator[Engine]:
    with scratch_engine(database_url, "crm_engine") as engine:
        generate_demo_data(engine, leads=LEADS, seed=11, now=NOW)
        yield engine


@pytest.fixture
def team(history: Engine) -> Iterator[Session]:
    """A session on the history database, starting from the rules with no model and no jobs."""
    with Session(history, expire_on_commit=False) as session:
        session.execute(text("DELETE FROM scoring_jobs"))
        session.execute(text("UPDATE scoring_models SET is_active = false"))
        set_engine_choice(session, mode="rules", blend_percent="50", now=NOW, actor=None)
        yield session


@pytest.fixture(scope="module")
def model_id(history: Engine) -> int:
    with Session(history) as session:
        return train_model(session, now=NOW).model_id


def open_sessions(engine: Engine):
    return lambda: Session(engine, expire_on_commit=False)


def clock() -> datetime:
    return NOW


def open_scores(session: Session) -> dict[int, tuple[int, list]]:
    rows = session.execute(text("SELECT id, score, score_reasons FROM leads WHERE stage NOT IN ('won', 'lost')"))
    return {r.id: (r.score, r.score_reasons) for r in rows}


# --- The setting and the fallback -----------------------------------------------------------------


def test_the_rules_score_until_a_model_is_active_and_the_page_says_why(team: Session) -> None:
    assert isinstance(active_engine(team), RuleBasedScoringEngine)
    set_engine_choice(team, mode="model", now=NOW, actor=None)
    assert engine_config(team).mode == "model"
    assert isinstance(active_engine(team), RuleBasedScoringEngine)  # no model yet
    status = engine_status(team, now=NOW)
    assert status.effective == "rules" and status.effective_label == "Rules"
    assert "No model is active yet" in status.note


def test_thin_history_is_explained_with_what_is_missing(session: Session) -> None:
    # The rolled-back test database has no closed deals at all.
    set_engine_choice(session, mode="blend", blend_percent="40", now=NOW, actor=None)
    status = engine_status(session, now=NOW)
    assert not status.enough_history
    assert status.effective == "rules"
    assert status.note.startswith("Too little history for a model: 0 won and 0 lost deals, 200 more closed deals")
    assert "30 more won and 30 more lost" in status.note


@pytest.mark.parametrize(
    ("mode", "typed", "field", "message"),
    [
        ("blend", "abc", "blend_weight", "Enter the model's share as a percentage"),
        ("blend", "140", "blend_weight", "between 0 and 100%"),
        ("neural", "50", "engine", "Unknown scoring engine"),
    ],
)
def test_a_bad_choice_is_refused_and_the_stored_one_kept(team: Session, mode, typed, field, message) -> None:
    set_engine_choice(team, mode="blend", blend_percent="30", now=NOW, actor=None)
    with pytest.raises(InvalidInput, match=message) as refused:
        set_engine_choice(team, mode=mode, blend_percent=typed, now=NOW, actor=None)
    assert refused.value.field == field
    config = engine_config(team)
    assert (config.mode, config.blend_weight) == ("blend", 0.3)


def test_every_worker_uses_the_active_model_and_deserialises_it_once(team: Session, model_id: int) -> None:
    activate_model(team, model_id, actor=None)
    set_engine_choice(team, mode="model", now=NOW, actor=None)
    first = active_engine(team)
    assert isinstance(first, ModelScoringEngine)
    assert active_engine(team) is first
    set_engine_choice(team, mode="blend", blend_percent="25", now=NOW, actor=None)
    blended = active_engine(team)
    assert isinstance(blended, BlendedScoringEngine) and blended.weight == 0.25 and blended.model is first
    assert engine_status(team, now=NOW).effective_label.startswith("Blend: 25% model v")


# --- The blend ------------------------------------------------------------------------------------


def test_a_blend_is_the_weighted_mix_and_its_reasons_add_up_with_their_signs(team: Session, model_id: int) -> None:
    model = engine_for_model(team, model_id)
    rules = RuleBasedScoringEngine()
    leads = [
        LeadFacts(company_size=400, source="referral", activities=(
            ActivityFact(ActivityKind.PRICING_REQUEST, NOW - timedelta(hours=2)),
            ActivityFact(ActivityKind.MEETING, NOW - timedelta(days=3)),
        )),
        LeadFacts(company_size=3, source="cold_outreach"),
        LeadFacts(company_size=None, source="webinar", activities=(
            ActivityFact(ActivityKind.EMAIL_OPENED, NOW - timedelta(days=40)),
        )),
    ]  # fmt: skip
    for weight in (0.0, 0.3, 0.5, 1.0):
        for facts, result in zip(leads, BlendedScoringEngine(model, rules, weight).score_many(leads, NOW)):
            m, r = model.score(facts, NOW), rules.score(facts, NOW)
            assert abs(result.score - (weight * m.score + (1 - weight) * r.score)) <= 0.5
            assert sum(reason.points for reason in result.reasons) == result.score
            texts = [reason.text for reason in result.reasons]
            assert len(texts) == len(set(texts))  # one line per reason, "Other factors" included
            # A reason keeps the sign it had in the engine that gave it ("Other factors" is a sum of
            # the smaller ones of both, so its sign is that of the sum).
            signs = {x.text: x.points > 0 for x in (*m.reasons, *r.reasons) if x.text != OTHER_TEXT}
            for reason in result.reasons:
                if reason.text in signs:
                    assert (reason.points > 0) == signs[reason.text], reason
    assert blend_results(model.score(leads[0], NOW), rules.score(leads[0], NOW), 1.0) == model.score(leads[0], NOW)


# --- Training as a job ------------------------------------------------------------------------------


def test_training_runs_as_a_job_with_progress_and_the_first_model_becomes_active(team: Session, history: Engine) -> None:
    team.execute(text("DELETE FROM scoring_models WHERE NOT is_active AND id NOT IN (SELECT min(id) FROM scoring_models)"))
    team.execute(text("UPDATE scoring_models SET is_active = false"))
    team.commit()
    job_id = start_job(team, kind=TRAIN, now=NOW, actor=None)
    with pytest.raises(JobAlreadyRunning, match="A model is already being trained"):
        start_job(team, kind=TRAIN, now=NOW + timedelta(seconds=5), actor=None)
    seen: list[tuple[int, str]] = []

    class Watching(Session):
        def commit(self) -> None:
            super().commit()
            job = latest_job(self, TRAIN)
            if job and job.running:
                seen.append((job.percent, job.message))

    new_id = run_training_job(lambda: Watching(history, expire_on_commit=False), job_id, clock=clock)
    assert new_id is not None
    job = latest_job(team, TRAIN)
    assert (job.status, job.percent, job.model_id) == ("succeeded", 100, new_id)
    assert "it is now the active model" in job.message
    assert engine_config(team).model_id == new_id
    percents = [p for p, _ in seen]
    assert percents == sorted(percents) and len(set(percents)) >= 4  # moved on step by step
    assert any(message.startswith("Training fold 1 of 5") for _, message in seen)
    # A second model does not replace the active one by itself.
    second = start_job(team, kind=TRAIN, now=NOW + timedelta(minutes=1), actor=None)
    other = run_training_job(open_sessions(history), second, clock=clock)
    assert engine_config(team).model_id == new_id != other
    assert "activate it to use it" in latest_job(team, TRAIN).message


def test_a_failed_training_is_shown_not_swallowed(session: Session) -> None:
    # Thin history in the rolled-back database: the job fails with the reason.
    job_id = start_job(session, kind=TRAIN, now=NOW, actor=None)

    def same_session():
        return _Borrowed(session)

    assert run_training_job(same_session, job_id, clock=clock) is None
    job = latest_job(session, TRAIN)
    assert job.status == "failed" and job.finished_at
    assert job.error.startswith("Not enough closed deals to learn from yet")
    start_job(session, kind=TRAIN, now=NOW, actor=None)  # a failed job does not block the next


def test_an_interrupted_job_does_not_block_training_for_more_than_seconds(team: Session) -> None:
    # A running job beats every 5 s (job_heartbeat.py); four missed beats and it is taken for dead.
    start_job(team, kind=TRAIN, now=NOW - timedelta(seconds=30), actor=None)
    with pytest.raises(JobAlreadyRunning):
        start_job(team, kind=TRAIN, now=NOW - timedelta(seconds=15), actor=None)
    assert latest_job(team, TRAIN, now=NOW - timedelta(seconds=15)).status == "running"
    assert latest_job(team, TRAIN, now=NOW).error.startswith("Interrupted")  # shown so before anyone starts
    start_job(team, kind=TRAIN, now=NOW, actor=None)  # the first one's heartbeat stopped 30 s ago
    statuses = team.execute(text("SELECT status, error FROM scoring_jobs ORDER BY id")).all()
    assert statuses[0].status == "failed" and statuses[0].error.startswith("Interrupted")
    assert statuses[-1].status == "running"


# --- Switching rescores the open leads ------------------------------------------------------------------


def test_a_switch_rescores_every_open_lead_and_gives_closed_deals_out_of_fold_scores(
    team: Session, history: Engine, model_id: int
) -> None:
    activate_model(team, model_id, actor=None)
    rescore_open_leads(team, NOW)  # the rules, as the fixture chose
    before = open_scores(team)
    closed_before = dict(team.execute(
        text("SELECT id, score_at_close FROM leads WHERE stage IN ('won', 'lost') ORDER BY id")
    ).all())
    set_engine_choice(team, mode="model", now=NOW, actor=None)
    job_id = start_job(team, kind=RESCORE, now=NOW, actor=None)
    written = run_rescore_job(open_sessions(history), job_id, clock=clock, batch_size=250)
    assert written == len(before)
    job = latest_job(team, RESCORE)
    assert (job.status, job.percent) == ("succeeded", 100)
    assert job.message.startswith(f"Rescored {len(before):,} open leads with model v")
    assert f"{len(closed_before):,} closed deals it learned from now show the score" in job.message
    after = open_scores(team)
    assert after.keys() == before.keys()
    changed = sum(after[i] != before[i] for i in before)
    assert changed > 0.9 * len(before)
    assert all(any(r["text"] == "Baseline for your team" for r in reasons) for _, reasons in after.values())
    assert all(sum(r["points"] for r in reasons) == score for score, reasons in after.values())
    # Every closed deal shows exactly the score a model that did not learn from it gave it, never the
    # active model's own (in-sample) score; the demo's closes were recorded by their owners, so their
    # score at close is what the score said then.
    closed_after = team.execute(
        text(
            "SELECT l.id, l.score, l.score_reasons, l.score_at_close, ms.score AS honest, ms.reasons "
            "FROM leads l JOIN model_scores ms ON ms.lead_id = l.id AND ms.model_id = :m AND ms.out_of_fold "
            "WHERE l.stage IN ('won', 'lost')"
        ),
        {"m": model_id},
    ).all()
    assert len(closed_after) == len(closed_before)
    assert all(row.score == row.honest for row in closed_after)
    assert all(row.score_reasons == [{"points": r["points"], "text": r["text"]} for r in row.reasons]
               for row in closed_after)
    assert {row.id: row.score_at_close for row in closed_after} == closed_before
    # From now on a lead's own change is scored by the model too.
    lead_id = next(iter(after))
    result = log_activity(team, lead_id=lead_id, kind=ActivityKind.PAGE_VISIT, now=NOW)
    assert any(r.text == "Baseline for your team" for r in result.reasons)


def test_a_switch_during_a_rescoring_ends_with_the_newest_choice(team: Session, history: Engine, model_id: int) -> None:
    activate_model(team, model_id, actor=None)
    job_id = start_job(team, kind=RESCORE, now=NOW, actor=None)
    switched = False

    class SwitchingMidway(Session):
        def commit(self) -> None:
            nonlocal switched
            super().commit()
            if not switched and latest_job(self, RESCORE).percent > 0:
                switched = True
                set_engine_choice(self, mode="blend", blend_percent="50", now=NOW, actor=None)

    run_rescore_job(lambda: SwitchingMidway(history, expire_on_commit=False), job_id, clock=clock, batch_size=200)
    assert switched
    blended = active_engine(team)
    assert isinstance(blended, BlendedScoringEngine)
    # Every open lead, including those the first pass had reached, holds the blended score.
    scores = open_scores(team)
    leads = team.exec(select(Lead).where(Lead.id.in_(list(scores)))).all()
    facts = load_facts(team, leads)
    expected = blended.score_many([facts[lead.id] for lead in leads], NOW)
    assert [scores[lead.id][0] for lead in leads] == [result.score for result in expected]


def test_the_model_page_shows_measures_side_by_side_and_what_the_charts_need(team: Session, model_id: int) -> None:
    activate_model(team, model_id, actor=None)
    page = model_page(team, now=NOW)
    shown = page.shown
    assert shown.id == model_id and shown.is_active and shown.features_at == "open_life"
    assert [row.measure for row in shown.measures] == [
        "ROC-AUC", "PR-AUC", "Brier score", "Win rate in the top 20%", "Lift of the top 20%",
    ]
    assert shown.measures[0].better == "model"
    gains = shown.metrics["gains"]
    assert len(gains["model"]) == len(gains["rules"]) == len(gains["shares"]) == 10
    assert gains["model"][-1] == pytest.approx(1.0) and gains["model"][1] > 0.2  # top 20% finds more than 20%
    assert shown.drivers and abs(sum(d.share for d in shown.drivers) - 1) < 1e-6
    assert all(not d.title.startswith(("kind:", "field:")) for d in shown.drivers)


def test_open_leads_are_not_told_what_only_closing_deals_lack(team: Session, model_id: int) -> None:
    """Trained on moments of the open life, the model does not hold 'no meeting yet' against every
    new lead (trained at the close it did: a lost deal stops having meetings)."""
    activate_model(team, model_id, actor=None)
    set_engine_choice(team, mode="model", now=NOW, actor=None)
    fresh = active_engine(team).score(LeadFacts(company_size=20, source="website"), NOW)
    assert all(r.points > -10 for r in fresh.reasons if r.text != "Baseline for your team"), fresh.reasons


class _Borrowed:
    """A context manager handing out the test's own session (its commits land in a savepoint)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def __enter__(self) -> Session:
        return self.session

    def __exit__(self, *exc) -> None:
        return None
