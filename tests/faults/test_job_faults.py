"""A job's process killed mid-way: the job is seen as dead in seconds, a new one starts, nothing that
was working stops working."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from crm_app.background import sweep_with_retries
from crm_app.db import engine as app_engine
from crm_app.db.engine import make_engine, normalize_url
from crm_app.db.models import Lead
from crm_app.demo.generator import generate_demo_data
from crm_app.services.model_training import activate_model, train_model
from crm_app.services.scoring import active_engine, engine_config, rescore_lead
from crm_app.services.scoring_jobs import (
    RESCORE,
    TRAIN,
    JobAlreadyRunning,
    latest_job,
    run_rescore_job,
    run_training_job,
    start_job,
)
from crm_app.services.scoring_settings import set_engine_choice
from crm_app.settings import REPO_ROOT
from tests.conftest import database_away, scratch_database
from tests.faults.conftest import kill, record, wait_until

pytestmark = pytest.mark.faults

LEADS = 600


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@pytest.fixture(scope="module")
def history_url(database_url: str) -> Iterator[str]:
    """A team with closed deals to learn from and a model that scores its leads."""
    with scratch_database(database_url, "crm_faults_jobs") as url:
        engine = make_engine(url)
        generate_demo_data(engine, leads=LEADS, seed=7, now=utcnow())
        with Session(engine) as session:
            report = train_model(session, now=utcnow())
            activate_model(session, report.model_id, actor=None)
            set_engine_choice(session, mode="model", now=utcnow(), actor=None)
        engine.dispose()
        yield url


@pytest.fixture
def history(history_url: str) -> Iterator[Engine]:
    engine = make_engine(history_url)
    yield engine
    engine.dispose()


def _status(engine: Engine, job_id: int) -> str:
    with engine.connect() as connection:
        return connection.execute(text("SELECT status FROM scoring_jobs WHERE id = :id"),
                                  {"id": job_id}).scalar_one()


def _percent(engine: Engine, job_id: int) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT percent FROM scoring_jobs WHERE id = :id"),
                                  {"id": job_id}).scalar_one()


def test_training_killed_mid_way_frees_training_within_30_s_and_the_active_model_still_scores(history):
    """The job worker (where training runs; the web process never trains) killed while it fits."""
    with Session(history) as session:
        active_before = engine_config(session).model_id
        # As the model page does: the job and its queued task in one transaction.
        job_id = start_job(session, kind=TRAIN, now=utcnow(), actor=None, queue={})
    url = history.url.render_as_string(hide_password=False)
    env = {**os.environ, "DATABASE_URL": url, "CRM_WORKER_NAME": "crm-faults-job-worker"}
    log_path = REPO_ROOT / "test-artifacts" / "faults-job-worker.log"
    log_path.parent.mkdir(exist_ok=True)
    with open(log_path, "w") as log:
        worker = subprocess.Popen([sys.executable, "-m", "crm_app.worker"], cwd=REPO_ROOT, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            # Mid-way: past loading and computing features, fitting the trees.
            assert wait_until(lambda: _percent(history, job_id) >= 35 or worker.poll() is not None, 120), \
                f"the job worker did not get far into the training; see {log_path}"
            assert worker.poll() is None, f"the job worker exited; see {log_path}"
            assert _status(history, job_id) == "running", "training finished before it could be killed"
            kill(worker.pid)
            killed_at = time.monotonic()
        finally:
            worker.kill()
            worker.wait()

    accepted_after = None
    shown_interrupted_after = None
    new_job = None
    deadline = killed_at + 60
    while time.monotonic() < deadline and new_job is None:
        with Session(history, expire_on_commit=False) as session:
            shown = latest_job(session, TRAIN, now=utcnow())
            if shown_interrupted_after is None and shown.status == "failed":
                shown_interrupted_after = time.monotonic() - killed_at
            try:
                new_job = start_job(session, kind=TRAIN, now=utcnow(), actor=None)
                accepted_after = time.monotonic() - killed_at
            except JobAlreadyRunning:
                time.sleep(0.5)
    record("training_killed", new_training_accepted_after_s=accepted_after and round(accepted_after, 1),
           shown_interrupted_after_s=shown_interrupted_after and round(shown_interrupted_after, 1))
    assert accepted_after is not None and accepted_after <= 30, \
        f"a new training was refused for {deadline - killed_at:.0f} s"
    assert shown_interrupted_after is not None and shown_interrupted_after <= 30
    with Session(history, expire_on_commit=False) as session:
        killed = session.execute(text("SELECT status, error FROM scoring_jobs WHERE id = :id"),
                                 {"id": job_id}).one()
        assert killed.status == "failed" and killed.error.startswith("Interrupted")
        # The model that scored before still does, and nothing half-trained replaced it.
        assert engine_config(session).model_id == active_before
        lead = session.execute(text("SELECT id FROM leads WHERE stage NOT IN ('won', 'lost') LIMIT 1")
                               ).scalar_one()
        result = rescore_lead(session, session.get(Lead, lead), utcnow(), engine=active_engine(session))
        assert 0 <= result.score <= 100 and result.reasons
        assert type(active_engine(session)).__name__ != "RuleBasedScoringEngine"
        session.rollback()
    # And the new training runs to the end.
    new_model = run_training_job(lambda: Session(history, expire_on_commit=False), new_job, clock=utcnow)
    assert new_model is not None


JOB_CONNECTIONS = "crm-faults-job"


def _engine_named(url: str, name: str):
    """An engine like the app's whose connections carry `name`, so a test can cut exactly those."""
    return create_engine(normalize_url(url), pool_pre_ping=True,
                         connect_args={"application_name": name, "options": "-c timezone=UTC"})


def test_a_rescoring_cut_off_by_a_database_outage_runs_again_when_it_is_back(history_url):
    engine = _engine_named(history_url, JOB_CONNECTIONS)
    with Session(engine) as session:
        job_id = start_job(session, kind=RESCORE, now=utcnow(), actor=None)
    done: dict = {}
    runner = threading.Thread(target=lambda: done.setdefault(
        "written", run_rescore_job(lambda: Session(engine, expire_on_commit=False), job_id, clock=utcnow,
                                   batch_size=25)))
    with database_away(history_url, JOB_CONNECTIONS):
        runner.start()
        time.sleep(3)  # the job starts while the database refuses it, and waits
    runner.join(120)
    with Session(engine) as session:
        job = session.execute(text("SELECT status, error, message FROM scoring_jobs WHERE id = :id"),
                              {"id": job_id}).one()
    engine.dispose()
    assert job.status == "succeeded", f"the job failed instead of waiting for the database: {job.error}"
    assert done["written"] > 0 and job.message.startswith("Rescored")


def test_the_background_sweep_retries_in_seconds_while_the_database_is_away(history_url):
    engine = _engine_named(history_url, JOB_CONNECTIONS)
    with engine.begin() as connection:
        expired = connection.execute(text(
            "UPDATE leads SET score_valid_until = now() - interval '1 minute' WHERE id IN "
            "(SELECT id FROM leads WHERE stage NOT IN ('won', 'lost') ORDER BY id LIMIT 5) RETURNING id")
        ).scalars().all()
    assert expired

    def still_expired() -> int:
        with engine.connect() as connection:
            return connection.execute(text("SELECT count(*) FROM leads WHERE id = ANY(:ids) AND "
                                            "score_valid_until <= now()"), {"ids": expired}).scalar_one()

    before = app_engine._engine
    app_engine.set_engine(engine)
    try:
        # The periodic sweep task's body, as a job worker runs it, started while the database is away.
        sweeper = threading.Thread(target=sweep_with_retries, daemon=True)
        with database_away(history_url, JOB_CONNECTIONS):
            sweeper.start()
            time.sleep(3)
        back = time.monotonic()
        assert wait_until(lambda: not still_expired(), 30), "the sweep did not run again soon after the outage"
        swept_after = time.monotonic() - back
        sweeper.join(60)
        assert not sweeper.is_alive()
    finally:
        app_engine.set_engine(before)
        engine.dispose()
    record("background_sweep_outage", swept_after_database_back_s=round(swept_after, 1))
