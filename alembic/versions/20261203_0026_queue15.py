"""job queue: procrastinate's tables, and a way for the web app's login to hand a scoring job to it

Slow work (training, bulk rescoring, the score/risk sweeps, play statistics, purges) runs in job
worker processes (`python -m crm_app.worker`) that take jobs from procrastinate's tables in this
database. This migration applies procrastinate's own schema (the pinned version's schema.sql, as
`procrastinate schema --apply` would); a later procrastinate with schema changes ships SQL migrations
that a later Alembic revision applies the same way.

Least privilege: the web app's role (crm_app_user) gets no rights on the queue's tables (the default
privileges of migration 0009 granted them; they are revoked). It defers a scoring job only through
`crm_defer_scoring_job(job_id)`, a SECURITY DEFINER function that queues the task belonging to a
running `scoring_jobs` row not queued yet, for an acting user (migration 0016's proof), and records
the queue job on the row (`scoring_jobs.queue_job_id`) in the same transaction as the row. A job
still waiting for a worker beats no heartbeat; `crm_scoring_job_waiting(queue_job_id)` tells the
model page it is waiting, not interrupted. The job worker connects as the tables' owner (as the jobs
did inside the web process), so it needs no grant.

Revision ID: 0026_queue15
Revises: 0025_scale15
Create Date: 2026-12-03
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0026_queue15"
down_revision: Union[str, None] = "0025_scale15"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"
QUEUE_TABLES = ("procrastinate_jobs", "procrastinate_events", "procrastinate_periodic_defers",
                "procrastinate_workers")
# The task each kind of scoring job runs (crm_app/tasks.py) and its queue.
DEFER_FUNCTION = """
CREATE FUNCTION crm_defer_scoring_job(scoring_job bigint, extra jsonb DEFAULT '{}'::jsonb)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    job record;
    queued bigint;
BEGIN
    IF crm_acting_user() IS NULL AND session_user <> current_user THEN
        RAISE EXCEPTION 'a scoring job is queued for a signed-in user';
    END IF;
    SELECT id, kind FROM scoring_jobs WHERE id = scoring_job AND status = 'running'
        AND queue_job_id IS NULL INTO job;
    IF job.id IS NULL THEN
        RAISE EXCEPTION 'no running scoring job % waits to be queued', scoring_job;
    END IF;
    SELECT (procrastinate_defer_jobs_v1(ARRAY[ROW(
        'scoring',
        CASE job.kind WHEN 'train' THEN 'crm.train' ELSE 'crm.rescore' END,
        0,
        'crm-scoring-' || job.kind,  -- one job of a kind at a time, across every worker
        NULL,
        jsonb_build_object('job_id', job.id) || (extra - 'job_id'),
        NULL
    )::procrastinate_job_to_defer_v1]))[1] INTO queued;
    UPDATE scoring_jobs SET queue_job_id = queued WHERE id = job.id;
    RETURN queued;
END;
$$;
"""
WAITING_FUNCTION = """
CREATE FUNCTION crm_scoring_job_waiting(queue_job bigint) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE id = queue_job AND status = 'todo')
$$;
"""


def upgrade() -> None:
    from procrastinate.schema import SchemaManager

    # procrastinate's schema as it ships (PL/pgSQL bodies contain '%', so not through a parameterised
    # execute).
    op.get_bind().connection.driver_connection.cursor().execute(SchemaManager.get_schema())
    for table in QUEUE_TABLES:
        op.execute(f"REVOKE ALL ON {table} FROM {APP_ROLE}")
    op.execute(f"""
        DO $$ DECLARE s record; BEGIN
          FOR s IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE c.relkind = 'S' AND n.nspname = 'public' AND c.relname LIKE 'procrastinate%'
          LOOP EXECUTE format('REVOKE ALL ON SEQUENCE %I FROM {APP_ROLE}', s.relname); END LOOP;
        END $$""")
    op.add_column("scoring_jobs", sa.Column("queue_job_id", sa.BigInteger(), nullable=True))
    op.execute(DEFER_FUNCTION)
    op.execute(WAITING_FUNCTION)
    for function in ("crm_defer_scoring_job(bigint, jsonb)", "crm_scoring_job_waiting(bigint)"):
        op.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {function} TO {APP_ROLE}")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS crm_scoring_job_waiting(bigint)")
    op.execute("DROP FUNCTION IF EXISTS crm_defer_scoring_job(bigint, jsonb)")
    op.drop_column("scoring_jobs", "queue_job_id")
    op.execute("""
        DO $$ DECLARE o record; BEGIN
          FOR o IN SELECT p.oid::regprocedure AS f FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname = 'public' AND p.proname LIKE 'procrastinate%'
          LOOP EXECUTE 'DROP FUNCTION IF EXISTS ' || o.f || ' CASCADE'; END LOOP;
        END $$""")
    for table in QUEUE_TABLES:
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    op.execute("DROP TYPE IF EXISTS procrastinate_job_to_defer_v1, procrastinate_job_status, "
               "procrastinate_job_event_type CASCADE")
