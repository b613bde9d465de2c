"""import jobs and a matchable email key: imports as fast under row security as from the command line,
and an import cut off mid-way seen as such

- `leads.email_key`: `lower(email)`, stored (a generated column) with its own index. An import matches
  the file's rows to stored leads by email. Under row-level security PostgreSQL may not use the
  expression index `uq_leads_email` (`lower(email)`) for a join, because `lower()` is not marked
  leakproof and the policy must be applied first: a nested-loop plan then scanned every visible lead
  once per file row (5,000 rows x 19,000 leads: about a minute, and longer as the table grows),
  while the owner (the command line) looked each email up in the index. `email_key = email_key` is
  a plain text comparison (leakproof), which the planner may push into an index scan under the
  policy too. `uq_leads_email` still keeps emails unique.
- `import_jobs`: one row per import run by the web app (the CLI runs in the user's terminal): who,
  which file (the user's own name), its status (running, succeeded, failed, cancelled, interrupted),
  the step it is at (the progress label), a heartbeat the running process moves every few seconds,
  the process running it (host, pid and start time: on the same machine a dead process is seen at
  once), the PostgreSQL backend running its transaction (so a dead job's query can be ended), a cancel
  request, and whether its user has been told that it was interrupted. Written by the web app's
  owner login (as the scoring jobs' heartbeats are); managers read them through the app role.

Revision ID: 0027_import20
Revises: 0026_queue15
Create Date: 2026-12-03
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0027_import20"
down_revision: Union[str, None] = "0026_queue15"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"


def upgrade() -> None:
    op.execute("ALTER TABLE leads ADD COLUMN email_key text GENERATED ALWAYS AS (lower(email)) STORED")
    op.create_index("ix_leads_email_key", "leads", ["email_key"])
    op.execute(f"GRANT SELECT (email_key) ON leads TO {APP_ROLE}")

    op.create_table(
        "import_jobs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("actor_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(12), nullable=False, server_default="running"),
        sa.Column("step", sa.String(200), nullable=False, server_default=""),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("backend_pid", sa.Integer(), nullable=True),
        # The process running it: on the same machine a dead one is seen at once, not after a stale beat.
        sa.Column("worker_host", sa.String(255), nullable=True),
        sa.Column("worker_pid", sa.Integer(), nullable=True),
        sa.Column("worker_started", sa.Float(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("noticed", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.CheckConstraint("status IN ('running', 'succeeded', 'failed', 'cancelled', 'interrupted')",
                           name="ck_import_jobs_status"),
        sa.CheckConstraint("(status = 'running') = (finished_at IS NULL)", name="ck_import_jobs_finished"),
    )
    op.create_index("ix_import_jobs_actor_started", "import_jobs", ["actor_id", sa.text("started_at DESC")])
    op.create_index("ix_import_jobs_running", "import_jobs", ["status"],
                    postgresql_where=sa.text("status = 'running'"))
    op.execute("ALTER TABLE import_jobs ENABLE ROW LEVEL SECURITY")
    op.execute(f"GRANT SELECT ON import_jobs TO {APP_ROLE}")
    op.execute(f"CREATE POLICY import_jobs_read ON import_jobs FOR SELECT TO {APP_ROLE} "
               "USING ((SELECT crm_sees_team()))")


def downgrade() -> None:
    op.drop_table("import_jobs")
    op.drop_index("ix_leads_email_key", table_name="leads")
    op.execute("ALTER TABLE leads DROP COLUMN email_key")
