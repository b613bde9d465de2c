"""analytics from rollups: counts, sums and stage stays kept per day x owner as leads and moves are written

The analytics page aggregated the leads and their whole stage history on every load (a LEAD() window
over every stage change in scope): ~1 s at 100,000 leads, ~8 s at 1M for the whole team. Now:

- `stage_changes.previous_stage` / `days_in_previous_stage`: the stay a change ended (the stage the lead
  was in and how long, in days), written with the move. "The stay a change ended" is exactly the
  analytics definition: entries are the changes plus, for a lead whose arrival was not recorded, its
  creation in the stage its first change left; ordered by time then id.
- `lead_stage_summaries`, a row per lead with a history: the furthest funnel stage it reached
  (0 = new .. 6 = won), the stage its latest move to Lost left, and its completed stays and their days
  per stage (in `Stage` order; a stay ended by the lead's creation, when an import dated its history
  before it, is counted here too). A table of its own rather than columns of `leads`: the backfill
  then writes a new narrow table instead of rewriting every lead and its twenty indexes (three of them
  trigram GIN), and a move does not rewrite the lead row twice.
- `analytics_rollup`: one row per (kind, day the lead was created (UTC), dates known, owner, up to
  three keys) with counts and sums. Kinds: 1 source (source, the file's word, open/won/lost) with
  score, won value and days to close; 2 tier now (tier, open/closed); 3 tier at close (tier, won/lost);
  4 furthest funnel stage; 5 completed stays (stage) with their days; 6 lost deals (source, reason,
  stage lost from). `analytics_facts` is the same rows computed from `leads` (a view under the caller's
  row security): the page reads it for the part days at the ends of a period.

Kept by triggers, not by the services: leads are written by moves, the REST API, imports (INSERT ...
SELECT), the demo generator (COPY), reassignment (also a user's deletion, ON DELETE SET NULL), purges
and undo; a trigger is the one place all of them pass, in the writer's own transaction. They are
statement-level with transition tables, so a bulk write (an import, a rescoring batch, a COPY) costs
one set-based aggregate per statement, not a lookup per row:

- on `leads` (insert, update, delete): the rollup moves by (facts of the new rows) - (facts of the old
  rows), one INSERT ... ON CONFLICT in key order (so concurrent writers lock rows in the same order);
  an update that changes no figure (a new last_activity_at) writes nothing. A changed created_at
  refreshes the lead's history (the first stay starts at creation). TRUNCATE empties the rollup.
- on `stage_changes` (insert, delete, and updates of lead, stages or time): the changed leads'
  history columns are recomputed from their changes in one statement (a window per lead), and that
  update of `leads` moves the rollup through the trigger above.

The functions run as the tables' owner (SECURITY DEFINER, fixed search_path), as migration 0025's do:
a rep who may move a lead must not need the right to write the team's rollup. A rep reads only rows of
their own leads and unowned ones, as on `leads` (same policy over the row's owner); a manager all.

Tier thresholds at close (70 hot, 40 warm) are scoring.engine's HOT_MIN / WARM_MIN; a change there
needs a migration that rebuilds the rollup (tests compare the rollup with the queries over leads).

Revision ID: 0031_rollup15
Revises: 0030_forecast16d
Create Date: 2026-12-03
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0031_rollup15"
down_revision: Union[str, None] = "0030_forecast16d"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"
FIXED_PATH = "pg_catalog, public, pg_temp"
HOT_MIN, WARM_MIN = 70, 40
FUNNEL = ("new", "contacted", "qualified", "meeting", "proposal", "negotiation", "won")
STAGES = (*FUNNEL, "lost")
KEY = "kind, monthly, day, dates_known, owner_id, k1, k2, k3"
MEASURES = ("n", "score_sum", "value_sum", "days_sum", "days_n")
VISIBLE = ("(SELECT crm_sees_team()) OR ((SELECT crm_acting_user()) IS NOT NULL "
           "AND (owner_id IS NULL OR owner_id = (SELECT crm_acting_user())))")


def _array(values) -> str:
    return "ARRAY[" + ", ".join(f"'{v}'" for v in values) + "]::text[]"


def _branch(kind: int, k1: str, k2: str, k3: str, measures: str, source: str) -> str:
    """One kind's rows. Every column is cast to the type the first branch gives it: PostgreSQL pushes a
    filter (kind, created_at, owner) into the branches of a UNION ALL only when their types match."""
    n, score, value, days, days_n = measures
    return (f"SELECT (l.created_at AT TIME ZONE 'UTC')::date AS day, l.created_at, l.dates_known, l.owner_id, "
            f"{kind}::smallint AS kind, ({k1})::text AS k1, ({k2})::text AS k2, ({k3})::text AS k3, "
            f"({n})::bigint AS n, ({score})::bigint AS score_sum, ({value})::numeric AS value_sum, "
            f"({days})::numeric AS days_sum, ({days_n})::bigint AS days_n {source}")


def facts(rows: str, summaries: str = "public.lead_stage_summaries") -> str:
    """The rollup's rows for each lead of `rows` (leads' columns) with its history from `summaries`
    (lead_stage_summaries' columns), one per kind that applies, before grouping. A plain scan per
    kind (UNION ALL), not a subquery per lead: the backfill groups ~7 rows per lead of 1M leads."""
    closed = "l.stage IN ('won', 'lost')"
    won_dated = "l.stage = 'won' AND l.closed_at IS NOT NULL AND l.dates_known"
    one = ("1", "0", "NULL", "NULL", "0")
    with_history = f"FROM {rows} l LEFT JOIN {summaries} h ON h.lead_id = l.id"
    return "\n    UNION ALL\n    ".join((
        _branch(1, "l.source", "nullif(l.custom_fields->>'source_detail', '')",
                f"CASE WHEN {closed} THEN l.stage::text ELSE 'open' END",
                ("1", "l.score", "CASE WHEN l.stage = 'won' THEN l.deal_value END",
                 f"CASE WHEN {won_dated} THEN extract(epoch FROM l.closed_at - l.created_at) / 86400.0 END",
                 f"CASE WHEN {won_dated} THEN 1 ELSE 0 END"), f"FROM {rows} l"),
        _branch(2, "l.tier", f"CASE WHEN {closed} THEN 'closed' ELSE 'open' END", "NULL", one, f"FROM {rows} l"),
        _branch(3, f"CASE WHEN l.score_at_close >= {HOT_MIN} THEN 'hot' WHEN l.score_at_close >= {WARM_MIN} "
                   "THEN 'warm' ELSE 'cold' END", "l.stage", "NULL", one,
                f"FROM {rows} l WHERE {closed} AND l.score_at_close IS NOT NULL"),
        _branch(4, f"greatest(coalesce(array_position({_array(FUNNEL)}, l.stage::text) - 1, 0), "
                   "coalesce(h.furthest, 0))", "NULL", "NULL", one, f"{with_history} WHERE l.dates_known"),
        _branch(5, f"({_array(STAGES)})[s.i]", "NULL", "NULL", ("s.n", "0", "NULL", "s.d", "s.n"),
                f"FROM {rows} l JOIN {summaries} h ON h.lead_id = l.id "
                "CROSS JOIN LATERAL unnest(h.stay_counts, h.stay_days) WITH ORDINALITY AS s(n, d, i) "
                "WHERE l.dates_known AND s.n > 0"),
        _branch(6, "l.source", "l.lost_reason", "coalesce(h.lost_from_stage, 'new')", one,
                f"{with_history} WHERE l.stage = 'lost'"),
    ))


def by_grain(facts_rows: str, *, signed: bool = True) -> str:
    """Each fact twice: under its day, and under its month (monthly, day = the month's first day)."""
    sign = "x.sign, " if signed else ""
    return f"""
    SELECT {sign}x.kind, g.monthly,
           CASE WHEN g.monthly THEN date_trunc('month', x.day::timestamp)::date ELSE x.day END AS day,
           x.dates_known, x.owner_id, x.k1, x.k2, x.k3, {', '.join('x.' + m for m in MEASURES)}
      FROM ({facts_rows}) x
     CROSS JOIN (VALUES (false), (true)) AS g(monthly)
    """


def rollup_delta(*signed: tuple[int, str, str]) -> str:
    """INSERT ... ON CONFLICT adding sign x facts(rows, summaries) of each (sign, rows, summaries) to
    the rollup, in key order; keys whose sums do not move are not written."""
    parts = " UNION ALL ".join(
        f"SELECT {sign} AS sign, f.* FROM ({facts(rows, summaries)}) f" for sign, rows, summaries in signed
    )
    sums = ", ".join(f"coalesce(sum(sign * {m}), 0)" for m in MEASURES)
    nonzero = " OR ".join(f"coalesce(sum(sign * {m}), 0) <> 0" for m in MEASURES)
    updates = ", ".join(f"{m} = r.{m} + EXCLUDED.{m}" for m in MEASURES)
    return f"""
    INSERT INTO public.analytics_rollup AS r ({KEY}, {', '.join(MEASURES)})
    SELECT {KEY}, {sums} FROM ({by_grain(parts)}) d
     GROUP BY {KEY} HAVING {nonzero}
     ORDER BY {KEY}
    ON CONFLICT ({KEY}) DO UPDATE SET {updates}
    """


SUMMARY = "lead_id, furthest, lost_from_stage, stay_counts, stay_days"


def history(targets: str, *, maintain: bool = True) -> str:
    """One statement recomputing, for the existing leads whose ids `targets` selects (a query with
    column id), the stay each of their changes ended (on stage_changes) and their history summary
    (lead_stage_summaries); with `maintain`, the rollup moves by the summaries' difference. Rows
    already right are not written."""
    upkeep = f"""
    changed AS (
        SELECT coalesce(n.lead_id, o.lead_id) AS lead_id
          FROM new_summaries n FULL JOIN old_summaries o ON o.lead_id = n.lead_id
         WHERE (n.*) IS DISTINCT FROM (o.*)
    ),
    changed_leads AS (SELECT x.* FROM public.leads x JOIN changed c ON c.lead_id = x.id),
    rollup_written AS ({rollup_delta((1, "changed_leads", "new_summaries"), (-1, "changed_leads", "old_summaries"))}),
    summaries_dropped AS (
        DELETE FROM public.lead_stage_summaries h USING changed c
         WHERE h.lead_id = c.lead_id AND NOT EXISTS (SELECT 1 FROM new_summaries n WHERE n.lead_id = c.lead_id)
    ),
    summaries_written AS (
        INSERT INTO public.lead_stage_summaries ({SUMMARY})
        SELECT n.* FROM new_summaries n JOIN changed c ON c.lead_id = n.lead_id
        ON CONFLICT (lead_id) DO UPDATE SET furthest = EXCLUDED.furthest, lost_from_stage = EXCLUDED.lost_from_stage,
               stay_counts = EXCLUDED.stay_counts, stay_days = EXCLUDED.stay_days
    )""" if maintain else ""
    # A data-modifying statement must be the primary one (a plpgsql function may not SELECT nothing).
    stays_written = """
        UPDATE public.stage_changes s SET previous_stage = st.stay_stage, days_in_previous_stage = st.stay_days
          FROM stays st
         WHERE st.change_id = s.id
           AND (s.previous_stage IS DISTINCT FROM st.stay_stage
                OR s.days_in_previous_stage IS DISTINCT FROM st.stay_days)
    """
    if maintain:
        last_cte, final = "", stays_written
    else:
        last_cte = f"changes_written AS ({stays_written})"
        final = f"INSERT INTO public.lead_stage_summaries ({SUMMARY}) SELECT * FROM new_summaries"
    return f"""
    WITH target AS ({targets}),
    l AS (SELECT x.id, x.stage, x.created_at FROM public.leads x JOIN target t ON t.id = x.id),
    sc AS (SELECT s.id, s.lead_id, s.from_stage, s.to_stage, s.changed_at
             FROM public.stage_changes s JOIN l ON l.id = s.lead_id),
    -- Per lead, in one pass: the furthest funnel stage, whether its arrival was recorded, the stage
    -- its first change left, and the stage its latest move to Lost left.
    per_lead AS (
        SELECT lead_id, max(array_position({_array(FUNNEL)}, to_stage::text)) - 1 AS furthest,
               bool_or(from_stage IS NULL) AS arrived,
               (array_agg(from_stage::text ORDER BY changed_at, id))[1] AS first_from,
               (array_agg(coalesce(from_stage, 'new')::text ORDER BY changed_at DESC, id DESC)
                   FILTER (WHERE to_stage = 'lost'))[1] AS lost_from
          FROM sc GROUP BY lead_id
    ),
    entries AS (
        SELECT lead_id, id AS change_id, to_stage::text AS stage, changed_at AS entered_at, id AS seq FROM sc
        UNION ALL
        -- A lead whose arrival was not recorded started, at creation, in the stage its first change
        -- left (or the one it is still in).
        SELECT l.id, NULL, coalesce(p.first_from, l.stage)::text, l.created_at, 0
          FROM l LEFT JOIN per_lead p ON p.lead_id = l.id
         WHERE p.arrived IS NOT TRUE
    ),
    stays AS (
        SELECT lead_id, change_id, lag(stage) OVER w AS stay_stage,
               extract(epoch FROM entered_at - lag(entered_at) OVER w) / 86400.0 AS stay_days
          FROM entries WINDOW w AS (PARTITION BY lead_id ORDER BY entered_at, seq)
    ),
    stay_arrays AS (
        SELECT lead_id,
               ARRAY[{", ".join(f"count(*) FILTER (WHERE stay_stage = '{st}')" for st in STAGES)}]::integer[] AS counts,
               ARRAY[{", ".join(f"coalesce(sum(stay_days) FILTER (WHERE stay_stage = '{st}'), 0)" for st in STAGES)}]
                   AS days
          FROM stays WHERE stay_stage IS NOT NULL GROUP BY lead_id
    ),
    -- A summary for every lead with a history (furthest is NULL only if it was never in the funnel).
    new_summaries AS (
        SELECT p.lead_id, p.furthest::smallint AS furthest, p.lost_from AS lost_from_stage,
               sa.counts AS stay_counts, sa.days AS stay_days
          FROM per_lead p LEFT JOIN stay_arrays sa ON sa.lead_id = p.lead_id
    ),
    old_summaries AS (SELECT h.lead_id, h.furthest, h.lost_from_stage::text, h.stay_counts, h.stay_days
                        FROM public.lead_stage_summaries h JOIN l ON l.id = h.lead_id)
    {"," if upkeep or not maintain else ""}    {upkeep}
    {last_cte}
    {final}
    """


def _function(name: str, body: str, args: str = "") -> None:
    op.execute(
        f"""
        CREATE FUNCTION {name}({args}) RETURNS {'trigger' if not args else 'void'}
          LANGUAGE plpgsql SECURITY DEFINER SET search_path = {FIXED_PATH} AS $fn$
        BEGIN
        {body}
        END $fn$
        """
    )
    op.execute(f"REVOKE ALL ON FUNCTION {name}({args.split()[1] if args else ''}) FROM PUBLIC")


def _rebuilt_indexes(table: str) -> list[str]:
    """Drop `table`'s indexes that back no constraint and return their definitions: rewriting every row
    is far faster without them, and they are built again in one pass each."""
    rows = op.get_bind().exec_driver_sql(
        f"""
        SELECT ix.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class ix ON ix.oid = i.indexrelid
         WHERE i.indrelid = 'public.{table}'::regclass AND NOT i.indisprimary
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
        """
    ).all()
    for name, _definition in rows:
        op.execute(f'DROP INDEX "{name}"')
    return [definition for _name, definition in rows]


def upgrade() -> None:
    op.execute("ALTER TABLE stage_changes ADD COLUMN previous_stage varchar(16), "
               "ADD COLUMN days_in_previous_stage numeric")
    op.execute(
        """
        CREATE TABLE lead_stage_summaries (
            lead_id integer PRIMARY KEY,
            furthest smallint,
            lost_from_stage varchar(16),
            stay_counts integer[],
            stay_days numeric[]
        )
        """
    )
    op.execute("COMMENT ON TABLE lead_stage_summaries IS 'Each lead''s stage history summed for analytics "
               "(migration 0028): furthest funnel stage (0 new .. 6 won), the stage its latest loss left, "
               "completed stays and their days per stage in Stage order. Rows go with their lead.'")
    op.execute(
        """
        CREATE TABLE analytics_rollup (
            kind smallint NOT NULL,
            monthly boolean NOT NULL,
            day date NOT NULL,
            dates_known boolean NOT NULL,
            owner_id integer,
            k1 text,
            k2 text,
            k3 text,
            n bigint NOT NULL DEFAULT 0,
            score_sum bigint NOT NULL DEFAULT 0,
            value_sum numeric NOT NULL DEFAULT 0,
            days_sum numeric NOT NULL DEFAULT 0,
            days_n bigint NOT NULL DEFAULT 0
        )
        """
    )
    op.execute("COMMENT ON TABLE analytics_rollup IS 'Analytics counts and sums per kind x day x owner x keys; "
               "kept by triggers on leads and stage_changes (migration 0028)'")

    # Backfill, set-based: every lead's history in one statement (the stays onto stage_changes, the
    # summaries into their table), then the rollup in one more. Rewriting every stage change is done
    # without its secondary indexes and without the owner trigger, which would look each lead up again
    # for an owner that is not changing.
    op.execute("SET LOCAL work_mem = '256MB'")
    op.execute("SET LOCAL maintenance_work_mem = '512MB'")
    deferred = _rebuilt_indexes("stage_changes")
    op.execute("ALTER TABLE stage_changes DISABLE TRIGGER stage_changes_owner_from_lead")
    op.execute(history("SELECT id FROM public.leads", maintain=False))
    op.execute("ALTER TABLE stage_changes ENABLE TRIGGER stage_changes_owner_from_lead")
    for definition in deferred:
        op.execute(definition)
    op.execute(
        f"""
        INSERT INTO analytics_rollup ({KEY}, {', '.join(MEASURES)})
        SELECT {KEY}, {', '.join(f'coalesce(sum({m}), 0)' for m in MEASURES)}
          FROM ({by_grain(facts('public.leads'), signed=False)}) d GROUP BY {KEY}
        """
    )
    op.execute(f"CREATE UNIQUE INDEX uq_analytics_rollup_key ON analytics_rollup ({KEY}) NULLS NOT DISTINCT")
    # A rep's reads: their own rows of one kind and grain, by day (the key's order serves a manager's).
    op.execute("CREATE INDEX ix_analytics_rollup_owner ON analytics_rollup (owner_id, kind, monthly, day)")
    op.execute("ANALYZE stage_changes, lead_stage_summaries, analytics_rollup")

    op.execute(f"CREATE VIEW analytics_facts WITH (security_invoker = true) AS {facts('public.leads')}")

    # Statement triggers fire for statements that touched no row, and this one writes stage_changes:
    # nothing to do must do nothing, or it would call itself for ever.
    _function("crm_analytics_history", "IF coalesce(cardinality(ids), 0) = 0 THEN RETURN; END IF;\n"
              + history("SELECT DISTINCT unnest(ids) AS id") + ";", "ids integer[]")
    _function("crm_rollup_leads_inserted", rollup_delta((1, "new_leads", "public.lead_stage_summaries"))
              + "; RETURN NULL;")
    _function(
        "crm_rollup_leads_deleted",
        rollup_delta((-1, "old_leads", "public.lead_stage_summaries")) + """;
        -- Their stage changes went first (ON DELETE CASCADE), leaving the summaries to be taken away here.
        DELETE FROM public.lead_stage_summaries h USING old_leads o WHERE h.lead_id = o.id;
        RETURN NULL;""",
    )
    _function(
        "crm_rollup_leads_updated",
        rollup_delta((1, "new_leads", "public.lead_stage_summaries"), (-1, "old_leads", "public.lead_stage_summaries"))
        + """;
        -- The first stay of a lead whose arrival was not recorded starts at its creation.
        PERFORM public.crm_analytics_history(ARRAY(
            SELECT n.id FROM new_leads n JOIN old_leads o ON o.id = n.id WHERE n.created_at <> o.created_at));
        RETURN NULL;""",
    )
    _function("crm_rollup_leads_truncated",
              "DELETE FROM public.analytics_rollup; DELETE FROM public.lead_stage_summaries; RETURN NULL;")
    _function("crm_history_inserted",
              "PERFORM public.crm_analytics_history(ARRAY(SELECT DISTINCT lead_id FROM new_changes)); RETURN NULL;")
    _function("crm_history_deleted",
              "PERFORM public.crm_analytics_history(ARRAY(SELECT DISTINCT lead_id FROM old_changes)); RETURN NULL;")
    _function(
        "crm_history_updated",
        """PERFORM public.crm_analytics_history(ARRAY(
            SELECT DISTINCT unnest(ARRAY[n.lead_id, o.lead_id]) FROM new_changes n JOIN old_changes o ON o.id = n.id
             WHERE (n.lead_id, n.from_stage, n.to_stage, n.changed_at)
                   IS DISTINCT FROM (o.lead_id, o.from_stage, o.to_stage, o.changed_at)));
        RETURN NULL;""",
    )
    for event, name, tables in (
        ("INSERT", "crm_rollup_leads_inserted", "NEW TABLE AS new_leads"),
        ("UPDATE", "crm_rollup_leads_updated", "NEW TABLE AS new_leads OLD TABLE AS old_leads"),
        ("DELETE", "crm_rollup_leads_deleted", "OLD TABLE AS old_leads"),
    ):
        op.execute(f"CREATE TRIGGER leads_rollup_{event.lower()} AFTER {event} ON leads REFERENCING {tables} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()")
    op.execute("CREATE TRIGGER leads_rollup_truncate AFTER TRUNCATE ON leads "
               "FOR EACH STATEMENT EXECUTE FUNCTION crm_rollup_leads_truncated()")
    for event, name, tables in (
        ("INSERT", "crm_history_inserted", "NEW TABLE AS new_changes"),
        ("UPDATE", "crm_history_updated", "NEW TABLE AS new_changes OLD TABLE AS old_changes"),
        ("DELETE", "crm_history_deleted", "OLD TABLE AS old_changes"),
    ):
        op.execute(f"CREATE TRIGGER stage_changes_history_{event.lower()} AFTER {event} ON stage_changes "
                   f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION {name}()")

    # Read through the app role: a rep sees the rows of their own and unowned leads (the leads rule), a
    # manager all; only the triggers write.
    for table in ("analytics_rollup", "lead_stage_summaries"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"REVOKE ALL ON {table} FROM {APP_ROLE}")
        op.execute(f"GRANT SELECT ON {table} TO {APP_ROLE}")
    op.execute(f"GRANT SELECT ON analytics_facts TO {APP_ROLE}")
    op.execute(f"CREATE POLICY analytics_rollup_visible ON analytics_rollup FOR SELECT TO {APP_ROLE} "
               f"USING ({VISIBLE})")
    op.execute(f"CREATE POLICY lead_stage_summaries_visible ON lead_stage_summaries FOR SELECT TO {APP_ROLE} "
               "USING ((SELECT crm_sees_team()) OR EXISTS (SELECT 1 FROM leads l WHERE l.id = lead_id))")


def downgrade() -> None:
    for event in ("insert", "update", "delete", "truncate"):
        op.execute(f"DROP TRIGGER leads_rollup_{event} ON leads")
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER stage_changes_history_{event} ON stage_changes")
    for name in ("crm_rollup_leads_inserted", "crm_rollup_leads_updated", "crm_rollup_leads_deleted",
                 "crm_rollup_leads_truncated", "crm_history_inserted", "crm_history_updated",
                 "crm_history_deleted"):
        op.execute(f"DROP FUNCTION {name}()")
    op.execute("DROP FUNCTION crm_analytics_history(integer[])")
    op.execute("DROP VIEW analytics_facts")
    op.execute("DROP TABLE analytics_rollup")
    op.execute("DROP TABLE lead_stage_summaries")
    op.execute("ALTER TABLE stage_changes DROP COLUMN previous_stage, DROP COLUMN days_in_previous_stage")
