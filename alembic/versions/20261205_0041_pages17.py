"""Today at a million leads for one rep: the follow-ups due, read only as far as a count or page needs

A rep's Today at 1M leads read their ~84,000 open leads in one pass (services/queue.py, SMALL_BOOK):
470 ms to 1.6 s. Group by group it read fewer leads, but `crm_follow_ups_due` (migration 0033)
returned every follow-up of the window before the first one was joined (a PL/pgSQL function's rows
are all stored before the caller reads them): ~4,900 overdue and ~5,000 due later today for a rep at
1M, each checked against its lead, for a count that stops at 100.

`crm_follow_ups_due(owner, from, before, max_rows, others_only)` replaces it: the same follow-ups
under the same rule of who may see them, due first (through (owner_id, due_at) for a rep, due_at for
the team), at most `max_rows` of them (NULL: all); `others_only` keeps only those whose lead is not
the owner's (a rep's promises on pool leads; nothing for the whole team), which the queue reads whole.

Revision ID: 0041_pages17
Revises: 0040_train16
Create Date: 2026-12-05
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0041_pages17"
down_revision: Union[str, None] = "0040_train16"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"
FIXED_PATH = "pg_catalog, public, pg_temp"
# The follow-ups policy as migration 0033 wrote it out (one lead probe per follow-up).
VISIBLE_FOLLOW_UP = (
    "CASE WHEN (SELECT crm_acting_user()) IS NULL THEN (SELECT crm_session_bypasses_rls()) "
    "ELSE (SELECT crm_sees_team()) OR coalesce((SELECT l.owner_id IS NULL OR l.owner_id = (SELECT crm_acting_user()) "
    "FROM public.leads l WHERE l.id = f.lead_id), false) END"
)
# Not the owner's lead: for one owner a lead of someone else or of nobody; for everyone (NULL), none.
OTHERS = ("(NOT $5 OR ($1 IS NOT NULL AND (SELECT l.owner_id IS DISTINCT FROM $1 FROM public.leads l "
          "WHERE l.id = f.lead_id)))")


def _function(signature: str, returns: str, body: str, using: str) -> None:
    op.execute(
        f"""
        CREATE FUNCTION {signature} RETURNS {returns}
          LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = {FIXED_PATH} ROWS 200 AS $$
          BEGIN
            RETURN QUERY EXECUTE '{body.replace(chr(39), chr(39) * 2)}' USING {using};
          END
        $$
        """
    )


def _grant(signature: str) -> None:
    op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {APP_ROLE}")


def upgrade() -> None:
    _function("crm_follow_ups_due(owner integer, due_from timestamptz, due_before timestamptz, max_rows integer, "
              "others_only boolean)", "TABLE (id integer, lead_id integer)",
              "SELECT f.id, f.lead_id FROM public.follow_ups f WHERE f.done_at IS NULL AND f.due_at >= $2 "
              f"AND f.due_at < $3 AND ($1 IS NULL OR f.owner_id = $1) AND {VISIBLE_FOLLOW_UP} AND {OTHERS} "
              "ORDER BY f.due_at LIMIT $4",
              "owner, due_from, due_before, max_rows, others_only")
    _grant("crm_follow_ups_due(integer, timestamptz, timestamptz, integer, boolean)")
    op.execute("DROP FUNCTION crm_follow_ups_due(integer, timestamptz, timestamptz)")


def downgrade() -> None:
    _function("crm_follow_ups_due(owner integer, due_from timestamptz, due_before timestamptz)",
              "TABLE (id integer, lead_id integer)",
              "SELECT f.id, f.lead_id FROM public.follow_ups f WHERE f.done_at IS NULL AND f.due_at >= $2 "
              f"AND f.due_at < $3 AND ($1 IS NULL OR f.owner_id = $1) AND {VISIBLE_FOLLOW_UP}",
              "owner, due_from, due_before")
    _grant("crm_follow_ups_due(integer, timestamptz, timestamptz)")
    op.execute("DROP FUNCTION crm_follow_ups_due(integer, timestamptz, timestamptz, integer, boolean)")
