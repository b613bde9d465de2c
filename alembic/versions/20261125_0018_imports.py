"""imports: each import and, per lead, the import and file row it came from; undated leads marked

- `imports`: one row per import that stored something: the user's own file name (never the random
  name it was kept under), who and when, its rows and how many gave a date, how its dates were read
  (`date_format`: auto, day_first, month_first, iso or a strptime format) and, for a file without
  dates, the order its rows are listed in as the manager said (`row_order`: newest_first,
  oldest_first or unknown; NULL when the file has dates).
- `leads.import_id`, `leads.import_row`: the import that created the lead and its data row in that
  file (row 1 is the first under the header). With `imports.row_order` this orders undated history
  from oldest to newest (oldest_first: ascending import_row; newest_first: descending), or says the
  order is unknown. Set when the lead is created, never changed by later imports.
- `leads.dates_known`: false for a lead imported from a row without a created or closed date. Its
  created_at (and closed_at, and its one stage change) are then the import moment, standing in,
  so whatever is about dates (weekly counts, the funnel's stages, days to close) leaves it out.

Row-level security: managers and admins read and add imports (as themselves); nobody changes or
deletes one through the app's role.

Revision ID: 0018_imports
Revises: 0017_hot_since
Create Date: 2026-11-25
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0018_imports"
down_revision: Union[str, None] = "0017_hot_since"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"


def upgrade() -> None:
    op.create_table(
        "imports",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("dated_rows", sa.Integer(), nullable=False),
        sa.Column("date_format", sa.String(64), nullable=False),
        sa.Column("row_order", sa.String(16), nullable=True),
        sa.CheckConstraint("row_order IN ('newest_first', 'oldest_first', 'unknown')",
                           name="ck_imports_row_order"),
        sa.CheckConstraint("row_count >= 0 AND dated_rows BETWEEN 0 AND row_count", name="ck_imports_rows"),
        sa.CheckConstraint("length(btrim(file_name)) > 0", name="ck_imports_file_name"),
    )
    imports = sa.ForeignKey("imports.id", ondelete="SET NULL", name="fk_leads_import_id")
    op.add_column("leads", sa.Column("import_id", sa.Integer(), imports, nullable=True))
    op.add_column("leads", sa.Column("import_row", sa.Integer(), nullable=True))
    op.add_column("leads", sa.Column("dates_known", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.create_check_constraint("ck_leads_import_row", "leads", "import_row IS NULL OR import_row >= 1")
    op.create_index("ix_leads_import_row", "leads", ["import_id", "import_row"],
                    postgresql_where=sa.text("import_id IS NOT NULL"))

    op.execute("ALTER TABLE imports ENABLE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY imports_read ON imports FOR SELECT TO {APP_ROLE} "
               "USING ((SELECT crm_sees_team()))")
    op.execute(f"CREATE POLICY imports_add ON imports FOR INSERT TO {APP_ROLE} "
               "WITH CHECK ((SELECT crm_sees_team()) AND actor_id = (SELECT crm_acting_user()))")
    op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON imports FROM {APP_ROLE}")
    # The app role may insert into leads' columns by table privilege; nothing more to grant there.


def downgrade() -> None:
    op.drop_index("ix_leads_import_row", table_name="leads")
    op.drop_constraint("ck_leads_import_row", "leads", type_="check")
    op.drop_column("leads", "dates_known")
    op.drop_column("leads", "import_row")
    op.drop_column("leads", "import_id")
    op.drop_table("imports")
