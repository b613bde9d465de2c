"""cheaper writes of many leads: live-update notices per statement, row triggers that skip rows they
leave alone, one email index instead of two

An import writes tens of thousands of leads in a few statements; every lead written paid for a run of
each row trigger on `leads` and an entry in each of its indexes. Measured on a copy of the 100,000-lead
demo, updating 3,334 leads took 1.5-2 ms a lead (see README, Importing at scale).

- `leads_notify_change` (migration 0010) and `leads_notify_news` (0023) were row triggers: a PL/pgSQL
  call per lead written. They are now statement triggers over the statement's transition tables (which
  the board totals and the rollup already have PostgreSQL keep), with the same outcome: `NOTIFY
  crm_leads` once per owner (old and new) of the leads a statement inserted or updated, and the same
  notifications (turned Hot, assigned to you, went At risk) for the same leads and people, through
  `crm_notify_user` as before. A statement trigger with transition tables may not name columns, so the
  news trigger runs after every UPDATE of leads and compares the old and new rows itself.
- The BEFORE row triggers that keep `hot_since` (0017) and forget a lost reason (0023) are only called
  for the rows they would change (a WHEN clause, evaluated without calling PL/pgSQL): a lead that is
  not Hot and has no hot_since, a lead not in Lost with no reason or note, is left alone anyway.
- The owner copy on activities and stage changes (0025) was set again on every UPDATE of a child row;
  the analytics history (0031) updates `previous_stage` on every stage change of each lead it
  recomputes, each paying an owner lookup. An update now sets it only when the row's lead or owner
  changes; inserts look the owner up as before (the demo generator turns that trigger off by name for
  its COPY, so the insert trigger keeps its name).
- `uq_leads_email` (`lower(email)`) and `ix_leads_email_key` (`email_key`, migration 0027: the stored
  `lower(email)`) held the same keys. One unique index on `email_key` keeps emails unique under the
  same name (the services match its name in the database's error) and serves the import's matching;
  `crm_lead_ids_by_email` looks emails up through it.
- The rollup's trigger functions (0031) sort with 64 MB of work memory instead of 4 MB: a 5,000-row
  import's facts (~90,000 rows) were sorted on disk.
- The analytics history (0031) moves the rollup by a changed summary through the kinds that read the
  summary only; the other kinds cancelled out (see _history_function).

Revision ID: 0034_import20c
Revises: 0033_today15b
Create Date: 2026-12-03
"""
import importlib.util
from pathlib import Path
from typing import Sequence, Union

from alembic import op

revision: str = "0034_import20c"
down_revision: Union[str, None] = "0033_today15b"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

FIXED_PATH = "pg_catalog, public, pg_temp"
CHILDREN = ("activities", "stage_changes")
# Who may match by email (migration 0016's rule, unchanged).
VISIBLE_TO_MATCH = (
    "CASE WHEN (SELECT crm_acting_user()) IS NULL THEN (SELECT crm_session_bypasses_rls()) "
    "ELSE owner_id IS NULL OR owner_id = (SELECT crm_acting_user()) OR (SELECT crm_sees_team()) END"
)

# Once per owner, old and new (the row trigger told the old owner only when the owner changed, and the
# new one always: the same set, as an unchanged owner is both).
CHANGE_INSERTED = """
CREATE FUNCTION crm_notify_leads_inserted() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM pg_notify('crm_leads', o) FROM (SELECT DISTINCT coalesce(owner_id::text, 'pool') AS o FROM new_rows) x;
  RETURN NULL;
END $fn$
"""
CHANGE_UPDATED = """
CREATE FUNCTION crm_notify_leads_updated() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM pg_notify('crm_leads', o)
     FROM (SELECT coalesce(owner_id::text, 'pool') AS o FROM new_rows
           UNION SELECT coalesce(owner_id::text, 'pool') FROM old_rows) x;
  RETURN NULL;
END $fn$
"""
# The row trigger's three rules, for every lead of the statement at once, in lead order. The old and
# new rows are paired once (a CTE read by each rule), keeping only the leads some rule may concern.
HOT = "n.tier = 'hot' AND n.old_tier <> 'hot' AND n.owner_id IS NOT NULL AND n.last_activity_at > now() - interval '1 day'"
ASSIGNED = "n.owner_id IS NOT NULL AND n.owner_id IS DISTINCT FROM n.old_owner_id"
AT_RISK = ("n.risk_level = 'high' AND n.old_risk_level IS DISTINCT FROM 'high' AND n.owner_id IS NOT NULL "
           "AND n.stage NOT IN ('won', 'lost')")
WHO = "n.name || coalesce(' (' || nullif(n.company, '') || ')', '')"
NEWS = f"""
CREATE FUNCTION crm_notify_leads_news() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = {FIXED_PATH} AS $fn$
DECLARE
  told bigint;  -- notifications sent (each through crm_notify_user, as the row trigger did)
BEGIN
  WITH n AS (
    SELECT n.id, n.name, n.company, n.score, n.tier, n.owner_id, n.risk_level, n.stage, n.last_activity_at,
           o.tier AS old_tier, o.owner_id AS old_owner_id, o.risk_level AS old_risk_level
      FROM new_rows n JOIN old_rows o ON o.id = n.id
     WHERE ({HOT.replace("n.old_", "o.")}) OR ({ASSIGNED.replace("n.old_", "o.")}) OR ({AT_RISK.replace("n.old_", "o.")})
  )
  SELECT count(public.crm_notify_user(x.target, x.lead, x.kind, x.words)) INTO STRICT told
    FROM (
      SELECT n.owner_id AS target, n.id AS lead, 'hot' AS kind, 1 AS rule, NULL::integer AS manager,
             {WHO} || ' turned Hot (score ' || n.score || ')' AS words
        FROM n WHERE {HOT}
      UNION ALL
      SELECT n.owner_id, n.id, 'assigned', 2, NULL, {WHO} || ' was assigned to you'
        FROM n WHERE {ASSIGNED} AND n.owner_id IS DISTINCT FROM public.crm_acting_user()
      UNION ALL
      SELECT u.id, n.id, 'at_risk', 3, u.id, {WHO} || ' went At risk'
        FROM n JOIN public.users u ON u.role IN ('manager', 'admin') AND u.is_active AND u.id <> n.owner_id
       WHERE {AT_RISK}
      ORDER BY lead, rule, manager
    ) x;
  RETURN NULL;
END $fn$
"""
BRANCHES = "\n    UNION ALL\n    "  # between the kinds in migration 0031's facts()
SORTING_TRIGGERS = ("crm_rollup_leads_inserted()", "crm_rollup_leads_updated()", "crm_rollup_leads_deleted()",
                    "crm_analytics_history(integer[])")
# Only the rows the function would change (see the functions of migrations 0017 and 0023).
HOT_SINCE_WHEN = "NEW.tier = 'hot' OR NEW.hot_since IS NOT NULL"
LOST_REASON_WHEN = "NEW.stage <> 'lost' AND (NEW.lost_reason IS NOT NULL OR NEW.lost_note IS NOT NULL)"


def _rollup15():
    """Migration 0031's module: its SQL builders make the history function."""
    spec = importlib.util.spec_from_file_location("rollup15", Path(__file__).with_name("20261203_0031_rollup15.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _history_function(only_kinds_of_history: bool) -> None:
    """(Re)create crm_analytics_history as migration 0031 made it; with `only_kinds_of_history`, its
    rollup delta (the lead's facts over its new summary minus over its old one) covers only the kinds
    that read the summary (4 furthest stage, 5 stays, 6 lost from). Kinds 1-3 read only the lead's
    own row, the same on both sides, so they always summed to zero and were dropped by the delta's
    HAVING; computing them was half of the work (100,000 rows into 100,000 leads: 47 s of the
    history's 82 s sorted 1.8M facts to write 23,000 sums)."""
    rollup15 = _rollup15()
    if only_kinds_of_history:
        every_kind = rollup15.facts

        def facts_with_history(rows: str, summaries: str = "public.lead_stage_summaries") -> str:
            branches = every_kind(rows, summaries).split(BRANCHES)
            assert len(branches) == 6, "migration 0031's facts changed: revisit this one"
            return BRANCHES.join(branches[3:])

        rollup15.facts = facts_with_history
    body = ("IF coalesce(cardinality(ids), 0) = 0 THEN RETURN; END IF;\n"
            + rollup15.history("SELECT DISTINCT unnest(ids) AS id") + ";")
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION crm_analytics_history(ids integer[]) RETURNS void
          LANGUAGE plpgsql SECURITY DEFINER SET search_path = {FIXED_PATH} AS $fn$
        BEGIN
        {body}
        END $fn$
        """
    )


def _lead_ids_by_email(column: str) -> None:
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION crm_lead_ids_by_email(lower_emails text[]) RETURNS SETOF integer
          LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp ROWS 10 AS $$
            SELECT id FROM leads WHERE {column} = ANY(lower_emails) AND {VISIBLE_TO_MATCH}
        $$
        """
    )


def upgrade() -> None:
    op.execute("DROP TRIGGER leads_notify_change ON leads")
    op.execute("DROP TRIGGER leads_notify_news ON leads")
    for function in (CHANGE_INSERTED, CHANGE_UPDATED, NEWS):
        op.execute(function)
    op.execute("REVOKE ALL ON FUNCTION crm_notify_leads_news() FROM PUBLIC")
    op.execute("CREATE TRIGGER leads_notify_change_insert AFTER INSERT ON leads REFERENCING NEW TABLE AS new_rows "
               "FOR EACH STATEMENT EXECUTE FUNCTION crm_notify_leads_inserted()")
    op.execute("CREATE TRIGGER leads_notify_change_update AFTER UPDATE ON leads "
               "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
               "FOR EACH STATEMENT EXECUTE FUNCTION crm_notify_leads_updated()")
    op.execute("CREATE TRIGGER leads_notify_news AFTER UPDATE ON leads "
               "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
               "FOR EACH STATEMENT EXECUTE FUNCTION crm_notify_leads_news()")

    op.execute("DROP TRIGGER leads_keep_hot_since ON leads")
    op.execute("CREATE TRIGGER leads_keep_hot_since BEFORE INSERT OR UPDATE OF tier ON leads FOR EACH ROW "
               f"WHEN ({HOT_SINCE_WHEN}) EXECUTE FUNCTION crm_keep_hot_since()")
    op.execute("DROP TRIGGER leads_forget_lost_reason ON leads")
    op.execute("CREATE TRIGGER leads_forget_lost_reason BEFORE INSERT OR UPDATE OF stage, lost_reason, lost_note "
               f"ON leads FOR EACH ROW WHEN ({LOST_REASON_WHEN}) EXECUTE FUNCTION crm_forget_lost_reason()")

    for table in CHILDREN:
        op.execute(f"DROP TRIGGER {table}_owner_from_lead ON {table}")
        op.execute(f"CREATE TRIGGER {table}_owner_from_lead BEFORE INSERT ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION crm_owner_from_lead()")
        op.execute(f"CREATE TRIGGER {table}_owner_from_lead_on_update BEFORE UPDATE ON {table} FOR EACH ROW "
                   "WHEN (NEW.lead_id IS DISTINCT FROM OLD.lead_id OR NEW.owner_id IS DISTINCT FROM OLD.owner_id) "
                   "EXECUTE FUNCTION crm_owner_from_lead()")

    op.execute("DROP INDEX ix_leads_email_key")
    op.execute("DROP INDEX uq_leads_email")
    op.execute("CREATE UNIQUE INDEX uq_leads_email ON leads (email_key)")
    _lead_ids_by_email("email_key")

    _history_function(only_kinds_of_history=True)
    # The rollup's statement triggers sort a bulk write's facts (~25 a lead): with the default 4 MB an
    # import of 5,000 rows sorted on disk.
    for function in SORTING_TRIGGERS:
        op.execute(f"ALTER FUNCTION {function} SET work_mem = '64MB'")


def downgrade() -> None:
    for function in SORTING_TRIGGERS:
        op.execute(f"ALTER FUNCTION {function} RESET work_mem")
    _history_function(only_kinds_of_history=False)
    _lead_ids_by_email("lower(email)")
    op.execute("DROP INDEX uq_leads_email")
    op.execute("CREATE UNIQUE INDEX uq_leads_email ON leads (lower(email))")
    op.execute("CREATE INDEX ix_leads_email_key ON leads (email_key)")

    for table in CHILDREN:
        op.execute(f"DROP TRIGGER {table}_owner_from_lead_on_update ON {table}")
        op.execute(f"DROP TRIGGER {table}_owner_from_lead ON {table}")
        op.execute(f"CREATE TRIGGER {table}_owner_from_lead BEFORE INSERT OR UPDATE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION crm_owner_from_lead()")

    op.execute("DROP TRIGGER leads_forget_lost_reason ON leads")
    op.execute("CREATE TRIGGER leads_forget_lost_reason BEFORE INSERT OR UPDATE OF stage, lost_reason, lost_note "
               "ON leads FOR EACH ROW EXECUTE FUNCTION crm_forget_lost_reason()")
    op.execute("DROP TRIGGER leads_keep_hot_since ON leads")
    op.execute("CREATE TRIGGER leads_keep_hot_since BEFORE INSERT OR UPDATE OF tier ON leads "
               "FOR EACH ROW EXECUTE FUNCTION crm_keep_hot_since()")

    op.execute("DROP TRIGGER leads_notify_news ON leads")
    op.execute("DROP TRIGGER leads_notify_change_update ON leads")
    op.execute("DROP TRIGGER leads_notify_change_insert ON leads")
    for function in ("crm_notify_leads_news()", "crm_notify_leads_updated()", "crm_notify_leads_inserted()"):
        op.execute(f"DROP FUNCTION {function}")
    op.execute("CREATE TRIGGER leads_notify_change AFTER INSERT OR UPDATE ON leads "
               "FOR EACH ROW EXECUTE FUNCTION crm_notify_lead_change()")
    op.execute("CREATE TRIGGER leads_notify_news AFTER UPDATE OF tier, owner_id, risk_level ON leads "
               "FOR EACH ROW EXECUTE FUNCTION crm_notify_lead_news()")
