"""rest api: API keys, idempotency keys, rate-limit windows, and "leads changed" notifications

- `api_keys`: an admin creates a key that acts as one user (under that user's row-level security)
  with a scope, read or write. Only the SHA-256 of the secret is stored (the secret has 256 bits of
  randomness, so a fast hash is enough; the first characters are kept to tell keys apart).
  Revoking keeps the row, so the audit trail and past idempotency records still name it.
- `api_idempotency`: the response to a POST sent with an `Idempotency-Key`, written in the same
  transaction as the change it describes, so a retried request is answered from here and never
  applied twice.
- `api_rate_windows`: requests per key per minute, counted in PostgreSQL so every worker process
  shares one limit.
- A trigger on `leads` sends `NOTIFY crm_leads, '<owner id or pool>'` for every changed lead. Each
  app worker LISTENs and open pages refresh what changed without a reload. PostgreSQL delivers a
  notification only when its transaction commits, and sends one per distinct owner per transaction.

Revision ID: 0010_rest_api
Revises: 0009_row_security
Create Date: 2026-11-25
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0010_rest_api"
down_revision: Union[str, None] = "0009_row_security"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created_at", TS, nullable=False, server_default=sa.text("now()")),
        sa.Column("last_used_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("revoked_by", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("rate_per_minute", sa.Integer(), nullable=False, server_default="600"),
        sa.CheckConstraint("scope IN ('read', 'write')", name="ck_api_keys_scope"),
        sa.CheckConstraint("length(btrim(name)) > 0", name="ck_api_keys_name_not_blank"),
        sa.CheckConstraint("rate_per_minute > 0", name="ck_api_keys_rate"),
    )
    op.create_index("uq_api_keys_secret", "api_keys", ["secret_hash"], unique=True)

    op.create_table(
        "api_idempotency",
        sa.Column("api_key_id", sa.Integer(), sa.ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),  # the JSON body as sent, byte for byte
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_api_idempotency_created", "api_idempotency", ["created_at"])

    op.create_table(
        "api_rate_windows",
        sa.Column("api_key_id", sa.Integer(), sa.ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("window_start", TS, primary_key=True),
        sa.Column("requests", sa.Integer(), nullable=False),
    )

    op.execute(
        """
        CREATE FUNCTION crm_notify_lead_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP <> 'INSERT' AND OLD.owner_id IS DISTINCT FROM NEW.owner_id THEN
            PERFORM pg_notify('crm_leads', coalesce(OLD.owner_id::text, 'pool'));
          END IF;
          PERFORM pg_notify('crm_leads', coalesce(NEW.owner_id::text, 'pool'));
          RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER leads_notify_change AFTER INSERT OR UPDATE ON leads
          FOR EACH ROW EXECUTE FUNCTION crm_notify_lead_change()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS leads_notify_change ON leads")
    op.execute("DROP FUNCTION IF EXISTS crm_notify_lead_change()")
    op.drop_table("api_rate_windows")
    op.drop_table("api_idempotency")
    op.drop_table("api_keys")
