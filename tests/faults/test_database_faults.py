"""The database dies under concurrent API writers: the embedded one (killed, restarted by the app's
supervisor) and an external one (restarted in immediate mode, only reconnected to).

What a client must see: every write answered 2xx is in the database afterwards, exactly once; while
the database is away the answers are 503 JSON with Retry-After (never a text/plain 500, never a
hang); and the same server answers 2xx again soon after, without being restarted."""

from __future__ import annotations

import time

import psutil
import pytest

from tests.faults.conftest import (
    ARTIFACTS,
    Writers,
    api_server,
    embedded_database,
    kill,
    prepare_database,
    private_cluster,
    record,
    server_env,
    stored_subjects,
    wait_until,
)

pytestmark = pytest.mark.faults

WRITERS = 12


def _assert_clean_outage_answers(writers: Writers) -> None:
    failures = writers.failures()
    unanswered = [a for a in failures if a.status is None]
    assert not unanswered, f"requests left without an answer (hangs or dropped connections): {unanswered[:3]}"
    unclean = [a for a in failures if not (a.status == 503 and a.content_type.startswith("application/json")
                                          and a.retry_after and '"status":503' in a.error.replace(" ", ""))]
    assert not unclean, f"answers other than 503 JSON with Retry-After: {unclean[:3]}"


def _assert_every_acknowledged_write_stored_once(writers: Writers, engine) -> None:
    stored = stored_subjects(engine, writers.run_id)
    lost = writers.acknowledged - set(stored)
    twice = {subject: n for subject, n in stored.items() if n != 1}
    assert not lost, f"{len(lost)} acknowledged writes are not in the database: {sorted(lost)[:5]}"
    assert not twice, f"writes applied more than once: {twice}"
    assert set(stored) == writers.acknowledged  # nothing stored that the writers were not told about


def test_the_embedded_postgres_killed_under_writers_is_restarted_and_loses_nothing(tmp_path):
    with embedded_database(tmp_path) as db:
        team = prepare_database(db.url())
        env = server_env(CRM_DATA_DIR=str(tmp_path))
        with api_server(env, "faults-embedded-api.log") as (url, _pid):
            writers = Writers(url, team.key, team.lead_ids, count=WRITERS)
            writers.start()
            try:
                assert wait_until(lambda: len(writers.acknowledged) >= 3 * WRITERS, 60), \
                    "no writes went through"
                victim = db.postmaster_pid()
                killed_at = time.monotonic()
                kill(victim)
                assert wait_until(lambda: writers.first_success_after(killed_at) is not None, 30)
                recovered = writers.first_success_after(killed_at)
                time.sleep(2)  # writes keep flowing after the restart
            finally:
                writers.stop()
            restarted = db.postmaster_pid()
        server_log = (ARTIFACTS / "faults-embedded-api.log").read_text()
        outage = writers.failures()
        record("embedded_postgres_killed", first_2xx_after_kill_s=round(recovered, 2),
               writers=WRITERS, acknowledged=len(writers.acknowledged), outage_answers=len(outage))
        assert restarted is not None and restarted != victim, "the embedded PostgreSQL was not started again"
        assert "is back" in server_log, "the restart is not logged (test-artifacts/faults-embedded-api.log)"
        assert recovered <= 10, f"first 2xx {recovered:.1f} s after the kill (target: 10 s)"
        assert outage, "the kill cut no request: the test did not hit the outage"
        _assert_clean_outage_answers(writers)
        _assert_every_acknowledged_write_stored_once(writers, team.engine)
        team.engine.dispose()


def test_an_external_postgres_restarted_in_immediate_mode_under_writers(tmp_path):
    down_seconds = 3
    with private_cluster() as cluster:
        from crm_app.db.engine import ensure_database

        ensure_database(cluster.url("postgres"), "crm")
        team = prepare_database(cluster.url("crm"))
        env = server_env(DATABASE_URL=cluster.url("crm"), CRM_DATA_DIR=str(tmp_path / "app-data"))
        with api_server(env, "faults-external-api.log") as (url, server_pid):
            writers = Writers(url, team.key, team.lead_ids, count=15)
            writers.start()
            try:
                assert wait_until(lambda: len(writers.acknowledged) >= 45, 60), "no writes went through"
                stopped_at = time.monotonic()
                cluster.stop("immediate")
                time.sleep(down_seconds)
                cluster.start()
                back_at = time.monotonic()
                assert wait_until(lambda: writers.first_success_after(back_at) is not None, 30)
                recovered = writers.first_success_after(back_at)
                time.sleep(2)
            finally:
                writers.stop()
            assert psutil.pid_exists(server_pid)  # the same server, not restarted
        record("external_postgres_stopped_immediate_3s", first_2xx_after_postgres_back_s=round(recovered, 2),
               outage_s=round(back_at - stopped_at, 2), writers=15, acknowledged=len(writers.acknowledged),
               outage_answers=len(writers.failures()))
        assert not (tmp_path / "app-data" / "pgdata").exists(), \
            "the app started an embedded server of its own"
        assert recovered <= 5, f"first 2xx {recovered:.1f} s after PostgreSQL was back"
        assert writers.failures(), "the restart cut no request: the test did not hit the outage"
        _assert_clean_outage_answers(writers)
        _assert_every_acknowledged_write_stored_once(writers, team.engine)
        team.engine.dispose()
