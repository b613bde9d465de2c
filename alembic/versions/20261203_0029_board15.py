"""board totals kept by the database, and indexes for the board's and Today's counts at a million leads

The pipeline board's headers (deals, value, weighted value per stage) and Today's pipeline health
(the same per open stage, and the split by tier) were aggregates over every lead the viewer sees:
at 100,000 leads a rep's board load read 17,000 heap pages (0.4-0.6 s) and a move redrew them all;
at a million, seconds per move.

- `board_totals`: deals, sum(deal_value) and sum(deal_value x score) per owner x stage x tier, kept by
  statement-level triggers on `leads` (insert, update, delete, truncate) in the writer's own
  transaction, from the statement's transition tables, so a bulk rescore of 1,000 leads adds one
  grouped insert, not 1,000 trigger calls. The table holds *deltas*: a trigger only inserts (grouped
  per statement), never updates a shared row, so concurrent moves never wait on each other's totals
  and a long import cannot block the board. Readers sum the rows of their owner(s) (one index range);
  `crm_compact_board_totals()` (the periodic sweep) folds the deltas back into one row per key.
  Owned and written by the tables' owner (SECURITY DEFINER triggers); the app role reads it under the
  leads policy's rule over the row's owner, so a rep sees their own and the pool's totals, a manager
  the team's.
- What depends on the clock stays a query, made index-only: stagnating deals per stage
  (`ix_leads_owner_stage_entered`, and `ix_leads_stage_entered` again with the owner and tier
  included, for the team), and new leads per week (`ix_leads_owner_created`).
- `ix_leads_open_queue`: the open leads' columns the action queue reads for every lead in view
  (Today), so it reads them from a partial index (open stages only) instead of the heap: at 100,000
  leads the team's queue read 17,500 heap pages, and with the index about 900 index pages.
- `crm_lead_ids_matching` (search; migrations 0013, 0016) is planned for the pattern it is given
  (PL/pgSQL EXECUTE) instead of once for any pattern: a two-letter search ("ma") has no trigrams to
  look up, and the generic plan scanned the whole trigram index for it (3.6 s at 100,000 leads)
  where reading the table is cheaper (1.1 s). Same rule of who may match.
- `ix_follow_ups_open_lead`: a deal's earliest open follow-up (each board card's activity status) in
  one index probe; before, the planner ANDed the lead index with the index of every open follow-up.

Revision ID: 0029_board15
Revises: 0028_forecast16c
Create Date: 2026-12-03
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0029_board15"
down_revision: Union[str, None] = "0028_forecast16c"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"
FIXED_PATH = "pg_catalog, public, pg_temp"
# The leads policy (migration 0014) over the row's owner.
VISIBLE = ("(SELECT crm_acting_user()) IS NOT NULL AND (owner_id IS NULL OR owner_id = (SELECT crm_acting_user()) "
           "OR (SELECT crm_sees_team()))")

# Who may match a search (migration 0016's rule, unchanged).
VISIBLE_TO_MATCH = (
    "CASE WHEN (SELECT crm_acting_user()) IS NULL THEN (SELECT crm_session_bypasses_rls()) "
    "ELSE owner_id IS NULL OR owner_id = (SELECT crm_acting_user()) OR (SELECT crm_sees_team()) END"
)
OPEN_STAGES = "'new', 'contacted', 'qualified', 'meeting', 'proposal', 'negotiation'"
# What the action queue reads of every open lead in view (services/queue.py, in_view).
QUEUE_COLUMNS = ("id, score, deal_value, risk_points, tier, risk_level, stage_entered_at, snoozed_until, "
                 "last_contacted_at, last_activity_at")

_ROWS = "owner_id, stage, tier, {sign}1 AS deals, {sign}deal_value AS value, {sign}(deal_value * score) AS value_score"
DELTA_FUNCTION = f"""
CREATE FUNCTION crm_board_totals_delta() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = {FIXED_PATH} AS $fn$
BEGIN
  -- Only the groups whose sums changed (a rescore that left scores alone writes nothing).
  IF TG_OP = 'INSERT' THEN
    INSERT INTO public.board_totals (owner_id, stage, tier, deals, value, value_score)
    SELECT owner_id, stage, tier, sum(deals), sum(value), sum(value_score)
      FROM (SELECT {_ROWS.format(sign='')} FROM new_rows) c
     GROUP BY 1, 2, 3;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO public.board_totals (owner_id, stage, tier, deals, value, value_score)
    SELECT owner_id, stage, tier, sum(deals), sum(value), sum(value_score)
      FROM (SELECT {_ROWS.format(sign='-')} FROM old_rows) c
     GROUP BY 1, 2, 3;
  ELSE
    INSERT INTO public.board_totals (owner_id, stage, tier, deals, value, value_score)
    SELECT owner_id, stage, tier, sum(deals), sum(value), sum(value_score)
      FROM (SELECT {_ROWS.format(sign='')} FROM new_rows
            UNION ALL
            SELECT {_ROWS.format(sign='-')} FROM old_rows) c
     GROUP BY 1, 2, 3
    HAVING sum(deals) <> 0 OR sum(value) <> 0 OR sum(value_score) <> 0;
  END IF;
  RETURN NULL;
END $fn$
"""
TRUNCATE_FUNCTION = f"""
CREATE FUNCTION crm_board_totals_truncate() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = {FIXED_PATH} AS $fn$
BEGIN
  DELETE FROM public.board_totals;
  RETURN NULL;
END $fn$
"""
# One row per key from all its deltas; keys whose sums are all zero go. Rows inserted meanwhile by
# other transactions are not in this statement's snapshot: they stay, as deltas, and still count.
COMPACT_FUNCTION = f"""
CREATE FUNCTION crm_compact_board_totals() RETURNS integer
  LANGUAGE sql SET search_path = {FIXED_PATH} AS $fn$
  WITH gone AS (DELETE FROM public.board_totals RETURNING *),
  kept AS (
    INSERT INTO public.board_totals (owner_id, stage, tier, deals, value, value_score)
    SELECT owner_id, stage, tier, sum(deals), sum(value), sum(value_score) FROM gone
     GROUP BY 1, 2, 3
    HAVING sum(deals) <> 0 OR sum(value) <> 0 OR sum(value_score) <> 0
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM gone)::integer - (SELECT count(*) FROM kept)::integer
$fn$
"""


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE board_totals (
          owner_id integer,            -- NULL: the unassigned pool
          stage varchar(16) NOT NULL,
          tier varchar(8) NOT NULL,
          deals bigint NOT NULL,
          value numeric NOT NULL,      -- sum(deal_value)
          value_score numeric NOT NULL -- sum(deal_value * score): the model's weighted value x 100
        )
        """
    )
    op.execute("CREATE INDEX ix_board_totals_owner_stage ON board_totals (owner_id, stage)")
    op.execute(DELTA_FUNCTION)
    op.execute(TRUNCATE_FUNCTION)
    op.execute(COMPACT_FUNCTION)
    for function in ("crm_board_totals_delta()", "crm_board_totals_truncate()", "crm_compact_board_totals()"):
        op.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
    # The table is filled and its triggers created while leads is locked against writers, so no write
    # falls between the two.
    op.execute("LOCK TABLE leads IN SHARE ROW EXCLUSIVE MODE")
    op.execute(
        """
        INSERT INTO board_totals (owner_id, stage, tier, deals, value, value_score)
        SELECT owner_id, stage, tier, count(*), sum(deal_value), sum(deal_value * score)
          FROM leads GROUP BY 1, 2, 3
        """
    )
    op.execute("CREATE TRIGGER leads_board_totals_insert AFTER INSERT ON leads REFERENCING NEW TABLE AS new_rows "
               "FOR EACH STATEMENT EXECUTE FUNCTION crm_board_totals_delta()")
    op.execute("CREATE TRIGGER leads_board_totals_update AFTER UPDATE ON leads "
               "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
               "FOR EACH STATEMENT EXECUTE FUNCTION crm_board_totals_delta()")
    op.execute("CREATE TRIGGER leads_board_totals_delete AFTER DELETE ON leads REFERENCING OLD TABLE AS old_rows "
               "FOR EACH STATEMENT EXECUTE FUNCTION crm_board_totals_delta()")
    op.execute("CREATE TRIGGER leads_board_totals_truncate AFTER TRUNCATE ON leads "
               "FOR EACH STATEMENT EXECUTE FUNCTION crm_board_totals_truncate()")
    op.execute("ALTER TABLE board_totals ENABLE ROW LEVEL SECURITY")
    op.execute(f"GRANT SELECT ON board_totals TO {APP_ROLE}")
    op.execute(f"CREATE POLICY board_totals_visible ON board_totals FOR SELECT TO {APP_ROLE} USING ({VISIBLE})")

    # Stagnating deals per stage, index-only: a rep's, and the team's (the policy reads owner_id).
    op.execute("CREATE INDEX ix_leads_owner_stage_entered ON leads (owner_id, stage, stage_entered_at) INCLUDE (tier)")
    op.execute("DROP INDEX ix_leads_stage_entered")
    op.execute("CREATE INDEX ix_leads_stage_entered ON leads (stage, stage_entered_at) INCLUDE (owner_id, tier)")
    # New leads per week for one rep (Today's chart).
    op.execute("CREATE INDEX ix_leads_owner_created ON leads (owner_id, created_at) INCLUDE (dates_known)")
    op.execute("CREATE INDEX ix_follow_ups_open_lead ON follow_ups (lead_id, due_at) WHERE done_at IS NULL")
    op.execute(f"CREATE INDEX ix_leads_open_queue ON leads (owner_id, stage) INCLUDE ({QUEUE_COLUMNS}) "
               f"WHERE stage IN ({OPEN_STAGES})")
    _matching("plpgsql", "BEGIN RETURN QUERY EXECUTE 'SELECT id FROM leads WHERE (name ILIKE $1 OR company ILIKE $1 "
              f"OR email ILIKE $1) AND {VISIBLE_TO_MATCH.replace(chr(39), chr(39) * 2)}' USING pattern; END")
    op.execute("ANALYZE board_totals, stage_rules")


def _matching(language: str, body: str) -> None:
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION crm_lead_ids_matching(pattern text) RETURNS SETOF integer
          LANGUAGE {language} STABLE SECURITY DEFINER SET search_path = public, pg_temp ROWS 500 AS $$
            {body}
        $$
        """
    )


def downgrade() -> None:
    _matching("sql", "SELECT id FROM leads WHERE (name ILIKE pattern OR company ILIKE pattern OR email ILIKE pattern) "
              f"AND {VISIBLE_TO_MATCH}")
    op.execute("DROP INDEX ix_leads_open_queue")
    op.execute("DROP INDEX ix_follow_ups_open_lead")
    op.execute("DROP INDEX ix_leads_owner_created")
    op.execute("DROP INDEX ix_leads_stage_entered")
    op.execute("CREATE INDEX ix_leads_stage_entered ON leads (stage, stage_entered_at)")
    op.execute("DROP INDEX ix_leads_owner_stage_entered")
    for event in ("insert", "update", "delete", "truncate"):
        op.execute(f"DROP TRIGGER leads_board_totals_{event} ON leads")
    op.execute("DROP TABLE board_totals")
    for function in ("crm_board_totals_delta()", "crm_board_totals_truncate()", "crm_compact_board_totals()"):
        op.execute(f"DROP FUNCTION {function}")
