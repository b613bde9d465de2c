"""undo of a logged activity: the acting user may retract an activity they logged themselves

The app role has no DELETE on activities (migration 0016: nothing a page does removes history). The
Undo a toast offers for a few seconds after "log" is the one exception, and it goes through this
SECURITY DEFINER function, which removes only an activity the acting user logged themselves (a call,
email, meeting, note or reply: what the app's forms log), on a lead they may see. The service that
calls it records the removal, with what was removed, in the audit log in the same transaction
(crm_app/services/undo.py), so it is never a silent delete. Nobody acting (the tables' owner) gets NULL.

Revision ID: 0024_ux14
Revises: 0023_followups14
Create Date: 2026-12-03
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0024_ux14"
down_revision: Union[str, None] = "0023_followups14"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"
REP_LOGGED = "('call', 'email_sent', 'meeting', 'note', 'email_received')"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE FUNCTION crm_retract_own_activity(activity_id integer) RETURNS integer
          LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            DELETE FROM activities a
             WHERE a.id = activity_id
               AND a.user_id = (SELECT crm_acting_user())
               AND a.kind IN {REP_LOGGED}
               AND EXISTS (SELECT 1 FROM leads l WHERE l.id = a.lead_id AND (
                     l.owner_id IS NULL OR l.owner_id = (SELECT crm_acting_user()) OR (SELECT crm_sees_team())))
            RETURNING a.lead_id
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION crm_retract_own_activity(integer) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION crm_retract_own_activity(integer) TO {APP_ROLE}")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS crm_retract_own_activity(integer)")
