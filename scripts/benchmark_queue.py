"""How fast the job queue hands a job to a job worker.

    python scripts/benchmark_queue.py [--jobs 20] [--leads 2000] [--database-url URL]

(Re)creates a scratch database `crm_bench_queue` on the server of --database-url (default: the
embedded one), adds --leads demo leads, starts one job worker (`python -m crm_app.worker`) and queues
--jobs rescoring jobs one after another, the way the model page does (the scoring_jobs row and its
task in one transaction, through the web login's function). procrastinate records when each job was
queued and when a worker started it (`procrastinate_events`); a trigger of this scratch database
keeps a copy, since the worker deletes finished jobs and their events. Prints queued -> started and
queued -> finished (p50, p95, max) and the rescoring's own leads/s. It is a script, not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlmodel import Session  # noqa: E402

from crm_app.db.engine import embedded_server_url, ensure_database, make_engine, normalize_url  # noqa: E402
from crm_app.db.migrate import upgrade_to_head  # noqa: E402
from crm_app.services.scoring_jobs import RESCORE, start_job  # noqa: E402

DATABASE = "crm_bench_queue"
COPY_EVENTS = """
CREATE TABLE bench_queue_events (job_id bigint, type text, at timestamptz);
CREATE FUNCTION bench_copy_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO bench_queue_events VALUES (NEW.job_id, NEW.type::text, NEW.at); RETURN NEW; END $$;
CREATE TRIGGER bench_copy_event AFTER INSERT ON procrastinate_events
    FOR EACH ROW EXECUTE FUNCTION bench_copy_event();
"""


def now() -> datetime:
    return datetime.now(timezone.utc)


def figures(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--leads", type=int, default=2000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    server = normalize_url(args.database_url) if args.database_url else embedded_server_url("postgres")
    admin_url = make_url(server).set(database="postgres").render_as_string(hide_password=False)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
    ensure_database(admin_url, DATABASE)
    url = make_url(admin_url).set(database=DATABASE).render_as_string(hide_password=False)
    upgrade_to_head(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.connection.driver_connection.cursor().execute(COPY_EVENTS)
    from crm_app.demo.generator import generate_demo_data

    generate_demo_data(engine, leads=args.leads, seed=3, now=now())
    with engine.connect() as conn:
        open_leads = conn.execute(text("SELECT count(*) FROM leads WHERE stage NOT IN ('won', 'lost')")).scalar_one()
    worker = subprocess.Popen([sys.executable, "-m", "crm_app.worker", "--queue", "scoring"], cwd=ROOT,
                              env={**os.environ, "DATABASE_URL": url, "CRM_LOG_LEVEL": "WARNING"})
    try:
        time.sleep(8)  # the worker imports the app and starts listening
        ids = []
        for _ in range(args.jobs):
            with Session(engine) as session:
                job_id = start_job(session, kind=RESCORE, now=now(), actor=None, queue={})
            ids.append(job_id)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    status = conn.execute(text("SELECT status FROM scoring_jobs WHERE id = :id"),
                                          {"id": job_id}).scalar_one()
                if status != "running":
                    break
                time.sleep(0.02)
            assert status == "succeeded", f"job {job_id} {status}"
    finally:
        worker.terminate()
        worker.wait(60)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT j.id, j.started_at, j.finished_at, min(e.at) FILTER (WHERE e.type = 'deferred') AS queued, "
            "min(e.at) FILTER (WHERE e.type = 'started') AS started "
            "FROM scoring_jobs j JOIN bench_queue_events e ON e.job_id = j.queue_job_id "
            "WHERE j.id = ANY(:ids) GROUP BY j.id")
            , {"ids": ids}).all()
    engine.dispose()
    to_start = [(r.started - r.queued).total_seconds() for r in rows]
    to_finish = [(r.finished_at - r.queued).total_seconds() for r in rows]
    running = [(r.finished_at - r.started).total_seconds() for r in rows]
    print(f"{len(rows)} rescoring jobs of {open_leads:,} open leads, one job worker (queue 'scoring')")
    print(f"queued -> started by the worker: {figures(to_start)}")
    print(f"queued -> finished:              {figures(to_finish)}")
    print(f"rescoring itself: {figures(running)} ({open_leads / statistics.median(running):,.0f} open leads/s)")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
    admin.dispose()


if __name__ == "__main__":
    main()
