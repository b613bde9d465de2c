"""The app as scripts/serve.sh runs it on a machine behind a load balancer: two web workers (granian)
sharing users' state in Redis and one job worker, under scripts/supervise.py, on a database of its own.

Which web worker a tab's live connection landed on is read from the page frame's `data-worker`
(AppState.served_by: the worker that handled the page's load event, which is the one holding its
websocket).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from sqlmodel import Session

from crm_app.db.engine import make_engine
from tests.conftest import scratch_database
from tests.e2e.conftest import ARTIFACTS
from tests.servers import free_port, serve

REDIS_URL = os.environ.get("CRM_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
WEB_WORKERS = 2
APP_CONNECTIONS = "crm-multiworker-app"


@dataclass
class Cluster:
    url: str
    database_url: str
    engine: object
    supervisor_pid: int


@pytest.fixture(scope="session")
def cluster(database_url: str) -> Iterator[Cluster]:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        pytest.skip(f"needs Redis at {REDIS_URL} (CRM_TEST_REDIS_URL): {error}")
    with scratch_database(database_url, "crm_multi") as db_url:
        engine = make_engine(db_url)
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "REFLEX_REDIS_URL": REDIS_URL,
            "REFLEX_OPLOCK_ENABLED": "1",  # as serve.sh sets it
            "REFLEX_REDIS_LOCK_EXPIRATION": "60000",  # as serve.sh sets it
            "REFLEX_OPLOCK_HOLD_TIME": "30",  # as serve.sh sets it
            "GRANIAN_WORKERS": str(WEB_WORKERS),
            "CRM_JOB_WORKERS": "1",
            "CRM_SECRET_KEY": "multiworker-test-secret-shared-by-every-worker",
            "REFLEX_USE_NPM": "1",
            "REFLEX_TELEMETRY_ENABLED": "false",
            "REFLEX_CHECK_LATEST_VERSION": "false",
            "PGAPPNAME": APP_CONNECTIONS,
        }
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "scripts/supervise.py", "--port", str(port)]
        # The frontend is built once per port (as for the browser tests): allow ten minutes.
        with serve(command, env=env, ready_url=f"{url}/health", log_path=ARTIFACTS / "multiworker-app.log",
                   what="The app (2 web workers + 1 job worker)", timeout=600) as supervisor:
            yield Cluster(url, db_url, engine, supervisor.pid)
        engine.dispose()


@pytest.fixture(scope="session")
def team(cluster: Cluster) -> dict:
    """A manager, a rep with two open deals, and 250 closed deals to learn from."""
    from sqlalchemy import text

    from crm_app.db.models import utcnow
    from tests.factories import make_lead, make_user

    now = utcnow()
    with Session(cluster.engine, expire_on_commit=False) as session:
        make_user(session, "Abe Admin", role="admin")  # a team with an admin: sign-in is not the first run
        maya = make_user(session, "Maya Manager", role="manager")
        ria = make_user(session, "Ria Rep")
        history = make_user(session, "Hilda History")
        leads = [make_lead(session, f"Multi Deal {i}", now=now, owner=ria, company=f"Multi {i} Ltd",
                           deal_value=1000 * (i + 1)) for i in range(2)]
        session.execute(text(
            """
            INSERT INTO leads (name, email, company, company_size, source, stage, owner_id, tier, score,
                               created_at, stage_entered_at, closed_at, updated_at)
            SELECT 'History ' || i, 'history' || i || '@example.com', 'Past Co ' || i,
                   CASE WHEN i % 3 = 0 THEN 400 ELSE 12 END,
                   CASE WHEN i <= 140 THEN 'referral' ELSE 'cold_outreach' END,
                   CASE WHEN i <= 140 THEN 'won' ELSE 'lost' END, :owner, 'cold', 0,
                   :now - (120 + i % 60) * interval '1 day', :now - (20 + i % 80) * interval '1 day',
                   :now - (20 + i % 80) * interval '1 day', :now
              FROM generate_series(1, 250) AS i
            """), {"owner": history.id, "now": now})
        session.execute(text(
            """
            INSERT INTO activities (lead_id, kind, occurred_at)
            SELECT l.id, k.kind, l.created_at + (l.closed_at - l.created_at) * k.at
              FROM leads l
              JOIN LATERAL (VALUES ('email_opened', 0.1), ('pricing_request', 0.2), ('demo_request', 0.3),
                                   ('meeting', 0.5)) AS k(kind, at) ON TRUE
             WHERE l.owner_id = :owner
               AND (l.stage = 'won' AND (k.kind <> 'pricing_request' OR l.id % 5 <> 0)
                    OR l.stage = 'lost' AND k.kind = 'email_opened')
            """), {"owner": history.id})
        session.commit()
    return {"maya": maya, "ria": ria, "leads": leads}


class Tab:
    """A page of the app; `worker()` is the web worker holding its live connection (the page frame's
    data-worker, AppState.served_by)."""

    def __init__(self, context):
        self.page = context.new_page()
        self.page.set_default_timeout(30_000)

    def worker(self) -> str:
        frame = self.page.locator("[data-worker]").first
        frame.wait_for(state="attached")
        self.page.wait_for_function(
            "() => (document.querySelector('[data-worker]')?.getAttribute('data-worker') || '') !== ''")
        return frame.get_attribute("data-worker")
