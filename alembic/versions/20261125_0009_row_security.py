"""row-level security: the app's database role sees only what the acting user may see

A bug in a service must not leak another rep's leads, so PostgreSQL enforces the same visibility:

- Role `crm_app_user` (NOLOGIN, not a superuser, owns nothing, cannot bypass RLS). The app's
  connection switches to it per transaction with `SET LOCAL ROLE crm_app_user` and names the acting
  user with `set_config('crm.user_id', <id>, true)` (crm_app/db/security.py does both).
- Policies on leads, activities and stage_changes: a rep sees and writes their own leads and the
  unassigned pool; managers and admins (as stored in `users`, active) see the whole team; with no
  acting user, nothing. A rep cannot hand a lead to someone else (WITH CHECK), nor attach an activity
  or a stage change to a lead they cannot see.
- Without FORCE, the tables' owner (migrations, the demo seeder, the background sweep) is not
  subject to the policies: those paths act for the whole team by design.

The role is cluster-wide and shared by every database of the cluster; downgrade keeps it.

Revision ID: 0009_row_security
Revises: 0008_accounts
Create Date: 2026-11-25
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0009_row_security"
down_revision: Union[str, None] = "0008_accounts"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"
PROTECTED = ("leads", "activities", "stage_changes")


def upgrade() -> None:
    op.execute(
        f"""
        DO $$ BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
            CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
          END IF;
        END $$
        """
    )
    # The connecting (owner) role must be a member to SET ROLE to it; a superuser needs no grant.
    op.execute(
        f"""
        DO $$ BEGIN
          IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            EXECUTE format('GRANT {APP_ROLE} TO %I', current_user);
          END IF;
        END $$
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {APP_ROLE}")
    # The schema history is the migrations' business only.
    op.execute(f"REVOKE ALL ON alembic_version FROM {APP_ROLE}")

    op.execute(
        """
        CREATE FUNCTION crm_acting_user() RETURNS integer LANGUAGE sql STABLE AS $$
          SELECT nullif(current_setting('crm.user_id', true), '')::integer
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION crm_sees_team() RETURNS boolean LANGUAGE sql STABLE AS $$
          SELECT EXISTS (SELECT 1 FROM users
                          WHERE id = crm_acting_user() AND is_active AND role IN ('manager', 'admin'))
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION crm_may_see_owner(owner integer) RETURNS boolean LANGUAGE sql STABLE AS $$
          SELECT crm_acting_user() IS NOT NULL
             AND (owner IS NULL OR owner = crm_acting_user() OR crm_sees_team())
        $$
        """
    )
    for table in PROTECTED:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"""
        CREATE POLICY leads_visible ON leads TO {APP_ROLE}
          USING (crm_may_see_owner(owner_id)) WITH CHECK (crm_may_see_owner(owner_id))
        """
    )
    for table in ("activities", "stage_changes"):
        # The subquery on leads is itself filtered by the leads policy.
        op.execute(
            f"""
            CREATE POLICY {table}_visible ON {table} TO {APP_ROLE}
              USING (EXISTS (SELECT 1 FROM leads l WHERE l.id = lead_id))
              WITH CHECK (EXISTS (SELECT 1 FROM leads l WHERE l.id = lead_id))
            """
        )


def downgrade() -> None:
    for table in ("activities", "stage_changes"):
        op.execute(f"DROP POLICY IF EXISTS {table}_visible ON {table}")
    op.execute("DROP POLICY IF EXISTS leads_visible ON leads")
    for table in PROTECTED:
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute("DROP FUNCTION IF EXISTS crm_may_see_owner(integer)")
    op.execute("DROP FUNCTION IF EXISTS crm_sees_team()")
    op.execute("DROP FUNCTION IF EXISTS crm_acting_user()")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {APP_ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {APP_ROLE}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM {APP_ROLE}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE USAGE, SELECT ON SEQUENCES FROM {APP_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {APP_ROLE}")
