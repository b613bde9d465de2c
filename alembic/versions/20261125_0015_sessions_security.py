"""sign-in sessions and sign-in attempts under row-level security

Signing in, checking a session and counting failed attempts run as the tables' owner (nobody is
acting yet), so the app's role needs almost nothing here. What it keeps: signing out one's own other
browsers when changing one's password, and an admin signing out a user whose role changed or who was
deactivated. So the app role may read only the columns that need (never when a session expires or
was last seen) of its own sessions (an admin: anyone's), and may only set `revoked_at`, never back to
empty. No inserts, no deletes; `sign_in_attempts` (the throttle's memory) is the owner's alone.

Revision ID: 0015_sessions_security
Revises: 0014_policies_evaluated_once
Create Date: 2026-11-25
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0015_sessions_security"
down_revision: Union[str, None] = "0014_policies_evaluated_once"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"
MINE_OR_ADMIN = "user_id = (SELECT crm_acting_user()) OR (SELECT crm_is_admin())"


def upgrade() -> None:
    op.execute("ALTER TABLE auth_sessions ENABLE ROW LEVEL SECURITY")
    op.execute(f"REVOKE ALL ON auth_sessions FROM {APP_ROLE}")
    op.execute(f"GRANT SELECT (id, user_id, token_hash, revoked_at), UPDATE (revoked_at) ON auth_sessions TO {APP_ROLE}")
    op.execute(f"CREATE POLICY auth_sessions_read ON auth_sessions FOR SELECT TO {APP_ROLE} USING ({MINE_OR_ADMIN})")
    op.execute(f"CREATE POLICY auth_sessions_revoke ON auth_sessions FOR UPDATE TO {APP_ROLE} "
               f"USING ({MINE_OR_ADMIN}) WITH CHECK (revoked_at IS NOT NULL AND ({MINE_OR_ADMIN}))")
    op.execute(f"REVOKE ALL ON sign_in_attempts FROM {APP_ROLE}")
    op.execute(f"REVOKE ALL ON SEQUENCE sign_in_attempts_id_seq FROM {APP_ROLE}")


def downgrade() -> None:
    op.execute("DROP POLICY IF EXISTS auth_sessions_revoke ON auth_sessions")
    op.execute("DROP POLICY IF EXISTS auth_sessions_read ON auth_sessions")
    op.execute("ALTER TABLE auth_sessions DISABLE ROW LEVEL SECURITY")
    op.execute(f"REVOKE ALL ON auth_sessions FROM {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON auth_sessions, sign_in_attempts TO {APP_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON SEQUENCE sign_in_attempts_id_seq TO {APP_ROLE}")
