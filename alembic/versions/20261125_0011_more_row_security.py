"""more row-level security: follow-ups go with their lead; the audit trail is append-only

Migration 0009 protects leads, activities and stage_changes for the app role `crm_app_user`; this
one closes what a role-matrix review found open (issue #6):

- `follow_ups`: like activities, a follow-up is visible and writable only through a lead the acting
  user may see (a rep cannot read, complete, postpone or delete another rep's follow-up, nor attach
  one to a lead they cannot see, even with its id).
- `audit_log`: services add entries inside the acting user's own transaction (services/audit.record),
  so the app role may INSERT, but only entries naming the acting user as the actor (no forging an
  entry as someone else, and none as "System": system work runs as the tables' owner), and only
  about a lead that user may see. Only managers and admins (crm_sees_team) may read it: the /audit
  page and the manager's lead timeline. Nobody under the app role may change or delete an entry:
  no UPDATE or DELETE policy, and the privileges are revoked too (append-only).
  Because a rep may not read what they insert, an INSERT ... RETURNING by a rep would be refused
  (PostgreSQL checks returned rows against the SELECT policy): the model fetches the id from the
  sequence first (crm_app/db/models.py AuditEntry, implicit_returning=False).

The tables' owner (migrations, the demo seeder, the background sweep, the command line) is still not
subject to the policies (no FORCE).

Revision ID: 0011_more_row_security
Revises: 0010_rest_api
Create Date: 2026-11-25
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0011_more_row_security"
down_revision: Union[str, None] = "0010_rest_api"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"


def upgrade() -> None:
    _follow_ups()
    _audit_log()


def _follow_ups() -> None:
    op.execute("ALTER TABLE follow_ups ENABLE ROW LEVEL SECURITY")
    # The subquery on leads is itself filtered by the leads policy (migration 0009).
    op.execute(
        f"""
        CREATE POLICY follow_ups_visible ON follow_ups TO {APP_ROLE}
          USING (EXISTS (SELECT 1 FROM leads l WHERE l.id = lead_id))
          WITH CHECK (EXISTS (SELECT 1 FROM leads l WHERE l.id = lead_id))
        """
    )


def _audit_log() -> None:
    op.execute("ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY audit_log_read ON audit_log FOR SELECT TO {APP_ROLE} USING (crm_sees_team())")
    op.execute(
        f"""
        CREATE POLICY audit_log_append ON audit_log FOR INSERT TO {APP_ROLE}
          WITH CHECK (actor_id = crm_acting_user()
                      AND (lead_id IS NULL OR EXISTS (SELECT 1 FROM leads l WHERE l.id = lead_id)))
        """
    )
    op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM {APP_ROLE}")


def downgrade() -> None:
    op.execute(f"GRANT UPDATE, DELETE ON audit_log TO {APP_ROLE}")
    op.execute("DROP POLICY IF EXISTS audit_log_append ON audit_log")
    op.execute("DROP POLICY IF EXISTS audit_log_read ON audit_log")
    op.execute("ALTER TABLE audit_log DISABLE ROW LEVEL SECURITY")
    op.execute("DROP POLICY IF EXISTS follow_ups_visible ON follow_ups")
    op.execute("ALTER TABLE follow_ups DISABLE ROW LEVEL SECURITY")
