"""throttles per client address, and the sign-in hand-off behind the HttpOnly session cookie

- `sign_in_attempts.source`: the client address a sign-in came from. Failures are counted per
  address and email (5 in 15 minutes pause that address for that email, not the user everywhere)
  and per address (a password spray across accounts from one address stops), and an address that
  signed in to an email before is not paused by failures from elsewhere (issue #17, item 9).
- `api_rate_sources`: API requests without a valid key, per client address and minute, so 401s
  and garbage cost the sender their own budget (issue #17, item 7).
- `sign_in_handoffs`: the sign-in form's one-time ticket (its SHA-256; 60 seconds) that a backend
  route swaps for the session cookie, which it sets HttpOnly: the page's JavaScript never sees the
  session token (issue #17, item 10).

All three are the tables' owner's alone, like `api_rate_windows`: row-level security on and no
policy for the app role (new tables inherit the app role's default grants, revoked here).

Revision ID: 0019_source_throttles
Revises: 0018_imports
Create Date: 2026-12-03
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0019_source_throttles"
down_revision: Union[str, None] = "0018_imports"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("sign_in_attempts", sa.Column("source", sa.String(64), nullable=True))
    op.create_index("ix_sign_in_attempts_source", "sign_in_attempts", ["source", "attempted_at"])

    op.create_table(
        "api_rate_sources",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("window_start", TS, primary_key=True),
        sa.Column("requests", sa.Integer(), nullable=False),
    )
    op.create_table(
        "sign_in_handoffs",
        sa.Column("ticket_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    for table in ("api_rate_sources", "sign_in_handoffs"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")  # and no policy: no row
        op.execute(f"REVOKE ALL ON {table} FROM {APP_ROLE}")


def downgrade() -> None:
    op.drop_table("sign_in_handoffs")
    op.drop_table("api_rate_sources")
    op.drop_index("ix_sign_in_attempts_source", table_name="sign_in_attempts")
    op.drop_column("sign_in_attempts", "source")
