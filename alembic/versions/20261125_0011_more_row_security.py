"""more row-level security: follow-ups go with their lead

Migration 0009 protects leads, activities and stage_changes for the app role `crm_app_user`; this
one closes what a role-matrix review found open (issue #6):

- `follow_ups`: like activities, a follow-up is visible and writable only through a lead the acting
  user may see (a rep cannot read, complete, postpone or delete another rep's follow-up, nor attach
  one to a lead they cannot see, even with its id).

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
    op.execute("ALTER TABLE follow_ups ENABLE ROW LEVEL SECURITY")
    # The subquery on leads is itself filtered by the leads policy (migration 0009).
    op.execute(
        f"""
        CREATE POLICY follow_ups_visible ON follow_ups TO {APP_ROLE}
          USING (EXISTS (SELECT 1 FROM leads l WHERE l.id = lead_id))
          WITH CHECK (EXISTS (SELECT 1 FROM leads l WHERE l.id = lead_id))
        """
    )


def downgrade() -> None:
    op.execute("DROP POLICY IF EXISTS follow_ups_visible ON follow_ups")
    op.execute("ALTER TABLE follow_ups DISABLE ROW LEVEL SECURITY")
