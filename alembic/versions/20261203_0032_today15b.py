"""Today at a million leads: the action queue reads each group's candidates, not every lead in view

The queue (services/queue.py) counted and ranked by reading every open lead in view once: at 1M leads
4.6 s for a rep and 11.6 s for a manager. It now reads each group from its own candidates, counts a
group only up to a cap ("99+") and pages a long group by walking an index in the group's order. This
migration gives it what those reads need:

- `crm_follow_ups_due(owner, from, before)`: the open follow-ups due in a window (of one user, or
  everyone's), with their lead. Under row-level security a rep's read of `follow_ups` checks the
  policy's `EXISTS (lead visible)` per row, and PostgreSQL plans that as a hash of every lead the rep
  may see (all of a rep's and the pool's leads, hundreds of thousands at 1M) to probe a few hundred
  follow-ups. The function applies the same rule itself (the follow-ups policy: a manager sees all,
  anyone else a follow-up whose lead they may see, i.e. theirs or the pool's; nobody acting: nothing,
  unless the session's login is exempt from row-level security anyway), one lead lookup per follow-up,
  and the queue still reads each lead and its follow-up under the policies. Planned per call
  (PL/pgSQL EXECUTE): a rep's window goes through (owner_id, due_at), the team's through due_at.
- `ix_leads_queue_risk`: the team's High-risk deals in risk order (a rep's are in ix_leads_owner_risk).
- `ix_leads_owner_last_activity`: a rep's leads by last engagement, newest first (new signals; the
  team's go through ix_leads_last_activity).
- `ix_leads_open_queue` is dropped: it existed for the whole-book read this replaces.

Revision ID: 0032_today15b
Revises: 0031_rollup15
Create Date: 2026-12-03
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0032_today15b"
down_revision: Union[str, None] = "0031_rollup15"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"
FIXED_PATH = "pg_catalog, public, pg_temp"
OPEN_STAGES = "'new', 'contacted', 'qualified', 'meeting', 'proposal', 'negotiation'"
QUEUE_COLUMNS = ("id, score, deal_value, risk_points, tier, risk_level, stage_entered_at, snoozed_until, "
                 "last_contacted_at, last_activity_at")
# The follow-ups policy (migrations 0011, 0014) with the lead's rule (0014) written out, and nobody acting
# answered as crm_lead_ids_matching does (0016). The lead is looked up by a scalar subquery, one probe
# per follow-up: an EXISTS may be planned as a hash of every lead.
VISIBLE_FOLLOW_UP = (
    "CASE WHEN (SELECT crm_acting_user()) IS NULL THEN (SELECT crm_session_bypasses_rls()) "
    "ELSE (SELECT crm_sees_team()) OR coalesce((SELECT l.owner_id IS NULL OR l.owner_id = (SELECT crm_acting_user()) "
    "FROM public.leads l WHERE l.id = f.lead_id), false) END"
)


def upgrade() -> None:
    body = ("SELECT f.id, f.lead_id FROM public.follow_ups f "
            "WHERE f.done_at IS NULL AND f.due_at >= $2 AND f.due_at < $3 AND ($1 IS NULL OR f.owner_id = $1) "
            f"AND {VISIBLE_FOLLOW_UP}")
    op.execute(
        f"""
        CREATE FUNCTION crm_follow_ups_due(owner integer, due_from timestamptz, due_before timestamptz)
          RETURNS TABLE (id integer, lead_id integer)
          LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = {FIXED_PATH} ROWS 200 AS $$
          BEGIN
            RETURN QUERY EXECUTE '{body.replace(chr(39), chr(39) * 2)}' USING owner, due_from, due_before;
          END
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION crm_follow_ups_due(integer, timestamptz, timestamptz) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION crm_follow_ups_due(integer, timestamptz, timestamptz) TO {APP_ROLE}")
    op.execute("CREATE INDEX ix_leads_queue_risk ON leads (risk_points DESC, id DESC) WHERE risk_level = 'high'")
    op.execute("CREATE INDEX ix_leads_owner_last_activity ON leads (owner_id, last_activity_at)")
    op.execute("DROP INDEX ix_leads_open_queue")


def downgrade() -> None:
    op.execute(f"CREATE INDEX ix_leads_open_queue ON leads (owner_id, stage) INCLUDE ({QUEUE_COLUMNS}) "
               f"WHERE stage IN ({OPEN_STAGES})")
    op.execute("DROP INDEX ix_leads_owner_last_activity")
    op.execute("DROP INDEX ix_leads_queue_risk")
    op.execute("DROP FUNCTION crm_follow_ups_due(integer, timestamptz, timestamptz)")
