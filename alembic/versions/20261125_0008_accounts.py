"""accounts: passwords, sign-in sessions, sign-in attempts, audit log

Passwords are stored only as argon2id hashes (users.password_hash; NULL = cannot sign in yet).
A sign-in session is a random token the browser keeps in a cookie; the database keeps only its
SHA-256, so a stolen copy of the table signs nobody in. Failed sign-ins are counted per email to
throttle password guessing. The audit log keeps who changed what, with old and new values.

Revision ID: 0008_accounts
Revises: 0007_model_ui
Create Date: 2026-11-25
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0008_accounts"
down_revision: Union[str, None] = "0007_model_ui"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("users", sa.Column("password_hash", sa.Text(), nullable=True))
    op.add_column("users", sa.Column("password_changed_at", TS, nullable=True))

    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.text("now()")),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.CheckConstraint("expires_at > created_at", name="ck_auth_sessions_expiry"),
    )
    op.create_index("uq_auth_sessions_token", "auth_sessions", ["token_hash"], unique=True)
    op.create_index("ix_auth_sessions_user", "auth_sessions", ["user_id"])

    op.create_table(
        "sign_in_attempts",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("attempted_at", TS, nullable=False),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_sign_in_attempts_email", "sign_in_attempts", [sa.text("lower(email)"), "attempted_at"])

    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("action", sa.String(48), nullable=False),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=True),
        # Set for changes to a lead, its activities or its stage: the lead's timeline shows them.
        sa.Column("lead_id", sa.Integer(), sa.ForeignKey("leads.id", ondelete="SET NULL"), nullable=True),
        sa.Column("old", JSONB(), nullable=True),
        sa.Column("new", JSONB(), nullable=True),
    )
    op.create_index("ix_audit_log_lead", "audit_log", ["lead_id", sa.text("id DESC")])
    op.create_index("ix_audit_log_actor", "audit_log", ["actor_id", sa.text("id DESC")])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("sign_in_attempts")
    op.drop_table("auth_sessions")
    op.drop_column("users", "password_changed_at")
    op.drop_column("users", "password_hash")
