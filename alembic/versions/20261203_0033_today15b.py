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
- Search (the leads list and Ctrl-K): a word found in tens of thousands of leads ("smith") was read
  whole under row-level security to rank and count it (`LIKE` is not leakproof, so only
  crm_lead_ids_matching may use the trigram indexes, and it returned every match). Now
  `crm_lead_ids_matching(pattern, owner, tier, stage, source, max_rows)` returns at most `max_rows`
  matches of the list's filters: the list counts up to a cap ("1,000+ leads") and ranks a rarer word's
  matches; a commoner one is ranked by walking the sort's index, which finds a page within the first
  few hundred leads. `crm_companies_matching(pattern, n)`: Ctrl-K's companies with their lead counts
  from the company index alone. Both apply crm_lead_ids_matching's rule of who may match.
- `ix_leads_owner_last_activity`: a rep's leads by last engagement, newest first (new signals; the
  team's go through ix_leads_last_activity).
- A smaller book (up to 100,000 open leads: a rep's at 1M) is still read in one pass, from
  ix_leads_open_queue: cheaper there than six grouped reads.

Revision ID: 0033_today15b
Revises: 0032_forecast16e
Create Date: 2026-12-03
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0033_today15b"
down_revision: Union[str, None] = "0032_forecast16e"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"
FIXED_PATH = "pg_catalog, public, pg_temp"
# The follow-ups policy (migrations 0011, 0014) with the lead's rule (0014) written out, and nobody acting
# answered as crm_lead_ids_matching does (0016). The lead is looked up by a scalar subquery, one probe
# per follow-up: an EXISTS may be planned as a hash of every lead.
VISIBLE_FOLLOW_UP = (
    "CASE WHEN (SELECT crm_acting_user()) IS NULL THEN (SELECT crm_session_bypasses_rls()) "
    "ELSE (SELECT crm_sees_team()) OR coalesce((SELECT l.owner_id IS NULL OR l.owner_id = (SELECT crm_acting_user()) "
    "FROM public.leads l WHERE l.id = f.lead_id), false) END"
)


# Who may match a search (migrations 0016, 0029; unchanged).
VISIBLE_TO_MATCH = (
    "CASE WHEN (SELECT crm_acting_user()) IS NULL THEN (SELECT crm_session_bypasses_rls()) "
    "ELSE owner_id IS NULL OR owner_id = (SELECT crm_acting_user()) OR (SELECT crm_sees_team()) END"
)
# The leads list's filters (db.queries.LeadFilter): owner (NULL everyone, 0 the pool), tier, stage, source.
LIST_FILTER = ("($2 IS NULL OR ($2 = 0 AND owner_id IS NULL) OR owner_id = $2) AND ($3 IS NULL OR tier = $3) "
               "AND ($4 IS NULL OR stage = $4) AND ($5 IS NULL OR source = $5)")
MATCHES = "(name ILIKE $1 OR company ILIKE $1 OR email ILIKE $1)"


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


def upgrade() -> None:
    # Search: at most `max_rows` of the leads matching a pattern and the list's filters (a count up to a
    # cap, or the few leads of a rare word to rank), and the companies matching it with how many leads
    # each has. Same rule of who may match as crm_lead_ids_matching.
    _function("crm_lead_ids_matching(pattern text, owner integer, tier text, stage text, source text, "
              "max_rows integer)", "SETOF integer",
              f"SELECT id FROM public.leads WHERE {MATCHES} AND {LIST_FILTER} AND {VISIBLE_TO_MATCH} LIMIT $6",
              "pattern, owner, tier, stage, source, max_rows")
    _function("crm_companies_matching(pattern text, max_rows integer)", "TABLE (company text, leads bigint)",
              f"SELECT company::text, count(*) FROM public.leads WHERE company ILIKE $1 AND {VISIBLE_TO_MATCH} "
              "GROUP BY company ORDER BY count(*) DESC, company LIMIT $2",
              "pattern, max_rows")
    for signature in ("crm_lead_ids_matching(text, integer, text, text, text, integer)",
                      "crm_companies_matching(text, integer)"):
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {APP_ROLE}")
    _function("crm_follow_ups_due(owner integer, due_from timestamptz, due_before timestamptz)",
              "TABLE (id integer, lead_id integer)",
              "SELECT f.id, f.lead_id FROM public.follow_ups f WHERE f.done_at IS NULL AND f.due_at >= $2 "
              f"AND f.due_at < $3 AND ($1 IS NULL OR f.owner_id = $1) AND {VISIBLE_FOLLOW_UP}",
              "owner, due_from, due_before")
    op.execute("REVOKE ALL ON FUNCTION crm_follow_ups_due(integer, timestamptz, timestamptz) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION crm_follow_ups_due(integer, timestamptz, timestamptz) TO {APP_ROLE}")
    op.execute("CREATE INDEX ix_leads_queue_risk ON leads (risk_points DESC, id DESC) WHERE risk_level = 'high'")
    op.execute("CREATE INDEX ix_leads_owner_last_activity ON leads (owner_id, last_activity_at)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_leads_owner_last_activity")
    op.execute("DROP INDEX ix_leads_queue_risk")
    op.execute("DROP FUNCTION crm_follow_ups_due(integer, timestamptz, timestamptz)")
    op.execute("DROP FUNCTION crm_companies_matching(text, integer)")
    op.execute("DROP FUNCTION crm_lead_ids_matching(text, integer, text, text, text, integer)")
