"""Several web workers on Redis and a job worker, as scripts/serve.sh runs them: the load balancer's
health check, signing in, a drag-and-drop move seen live by a tab on the other web worker, and a
training started on the model page and run by the job worker."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from tests.e2e.conftest import sign_in_as
from tests.e2e.test_pipeline import drag_card_to_column
from tests.faults.conftest import wait_until
from tests.multiworker.conftest import WEB_WORKERS, Tab

pytestmark = pytest.mark.multiworker


def _board(tab: Tab, lead) -> None:
    tab.page.goto("/pipeline")
    expect(tab.page.locator('.pipeline-board[data-ready="true"]')).to_have_count(1)
    expect(tab.page.locator(f'[data-rfd-draggable-id="{lead.id}"]')).to_be_visible()


def _in_column(tab: Tab, lead, stage: str):
    return tab.page.locator(f'.pipeline-column[data-stage="{stage}"] [data-rfd-draggable-id="{lead.id}"]')


def test_the_health_check_sees_the_database_redis_and_the_job_worker(cluster):
    def answer():
        return httpx.get(f"{cluster.url}/health", timeout=10)

    assert wait_until(lambda: (answer().json().get("job_workers") or 0) >= 1, 60), answer().text
    response = answer()
    assert response.status_code == 200
    assert response.json() | {"job_workers": 1} == {"status": True, "db": True, "redis": True, "job_workers": 1}


def test_a_move_on_one_web_worker_reaches_a_tab_on_the_other_live(cluster, team, browser):
    rep_context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=cluster.url)
    manager_context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=cluster.url)
    try:
        mover = Tab(rep_context)
        sign_in_as(mover.page, "Ria Rep", "/pipeline")
        lead = team["leads"][0]
        _board(mover, lead)
        assert mover.worker()
        # The manager's board, on the other web worker: new tabs until one lands there.
        watcher = Tab(manager_context)
        sign_in_as(watcher.page, "Maya Manager", "/pipeline")
        tries = 1
        while watcher.worker() == mover.worker() and tries < 12:
            watcher.page.close()
            watcher = Tab(manager_context)
            watcher.page.goto("/pipeline")
            expect(watcher.page.locator('.pipeline-board[data-ready="true"]')).to_have_count(1)
            tries += 1
        assert watcher.worker() != mover.worker(), \
            f"{tries} tabs all landed on the mover's worker ({WEB_WORKERS} workers)"
        _board(watcher, lead)
        expect(_in_column(watcher, lead, "new")).to_have_count(1)

        drag_card_to_column(mover.page, lead.id, "contacted")
        expect(_in_column(mover, lead, "contacted")).to_have_count(1)
        # Without a reload, the other worker's tab shows it (its worker LISTENs on its own connection).
        expect(_in_column(watcher, lead, "contacted")).to_have_count(1, timeout=20_000)
        expect(_in_column(watcher, lead, "new")).to_have_count(0)
        with cluster.engine.connect() as connection:
            stored = connection.execute(text("SELECT stage FROM leads WHERE id = :id"), {"id": lead.id}).scalar_one()
        assert stored == "contacted"
        # The rep's tab carries on after its state moved through Redis: a reload shows the move.
        mover.page.reload()
        expect(_in_column(mover, lead, "contacted")).to_have_count(1)
    finally:
        rep_context.close()
        manager_context.close()


def test_moves_made_one_after_another_on_a_worker_are_all_saved(cluster, team, browser):
    """A rep drops two cards, then the first again before anything is saved: the board shows each at
    once and saved soon after, in the order made (the state goes through Redis between the drops and
    their writes; a lost lock wake-up there once held a save for the lock's whole 60 s)."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=cluster.url)
    try:
        tab = Tab(context)
        sign_in_as(tab.page, "Ria Rep", "/pipeline")
        first, second = team["leads"]
        _board(tab, first)
        with cluster.engine.connect() as connection:
            stages = dict(connection.execute(text("SELECT id, stage FROM leads WHERE id IN (:a, :b)"),
                                             {"a": first.id, "b": second.id}).all())
        # Columns in view at this width (the board scrolls sideways past Meeting).
        there = {lead.id: "qualified" if stages[lead.id] != "qualified" else "contacted" for lead in (first, second)}
        drag_card_to_column(tab.page, first.id, there[first.id])
        drag_card_to_column(tab.page, second.id, there[second.id])
        drag_card_to_column(tab.page, first.id, stages[first.id])  # back, before or after its first save
        for lead, stage in ((first, stages[first.id]), (second, there[second.id])):
            expect(_in_column(tab, lead, stage)).to_have_count(1)
            expect(_in_column(tab, lead, stage)).to_have_attribute("data-saving", "false")
        with cluster.engine.connect() as connection:
            now = dict(connection.execute(text("SELECT id, stage FROM leads WHERE id IN (:a, :b)"),
                                          {"a": first.id, "b": second.id}).all())
            moves = connection.execute(text(
                "SELECT lead_id, from_stage, to_stage FROM stage_changes WHERE lead_id IN (:a, :b) ORDER BY id DESC LIMIT 3"),
                {"a": first.id, "b": second.id}).all()
        assert now == {first.id: stages[first.id], second.id: there[second.id]}
        assert sorted(tuple(m) for m in moves) == sorted([
            (first.id, stages[first.id], there[first.id]), (second.id, stages[second.id], there[second.id]),
            (first.id, there[first.id], stages[first.id])])
    finally:
        context.close()


def test_a_training_started_on_the_model_page_is_run_by_the_job_worker(cluster, team, browser):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=cluster.url)
    try:
        tab = Tab(context)
        sign_in_as(tab.page, "Maya Manager", "/model")
        tab.page.locator(".train-button").click()
        expect(tab.page.locator(".train-job[data-status=succeeded]")).to_contain_text(
            re.compile(r"Model version 1 trained on 250 closed deals .*it is now the active model"), timeout=120_000)
    finally:
        context.close()
    with cluster.engine.connect() as connection:
        job = connection.execute(text(
            "SELECT status, queue_job_id FROM scoring_jobs WHERE kind = 'train' ORDER BY id DESC LIMIT 1")).one()
        ran = connection.execute(text(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'crm.train'")).scalar_one()
    # Queued for the job worker (the web workers have no way to train), done, and gone from the queue
    # (the worker deletes successful jobs).
    assert job.status == "succeeded" and job.queue_job_id is not None and ran == 0
