"""segment insights from a rollup: per-lead activity counts and closed leads per source x trait x day x owner

The analytics page's segment insights (services/segments.py) counted every closed lead's activities on
each load: a scan of the closed leads in scope and a GROUP BY over their activities (~5M of 10.5M at
1M leads), 3-18 s. Now:

- `lead_activity_counts`, a row per lead with counted activity: what the segment traits read of it
  (interactions, each play a rep used, each content play read). Kept by statement triggers on
  `activities` (insert, delete, and updates of lead, kind or play), one grouped upsert per statement.
  Activities that leave with their lead (ON DELETE CASCADE) leave the counts alone: the lead's own
  delete trigger takes its facts out of the rollup with the counts they went in with, then its row.
- `segment_rollup`: per day the lead was created (UTC; and again per month, `monthly`), dates known,
  owner, source and trait, how many closed leads and how many of them won. A trait NULL row counts each
  closed lead once (the source totals). Traits as services/segments.py names them: size band, each short
  custom field value, each play used, 1+/2+ reads of each content play, 5+/10+ interactions.
  `segment_facts` is the same rows computed from `leads` (a view under the caller's row security) for
  the part days at the ends of a period, as `analytics_facts` is for `analytics_rollup`.
- Kept by statement triggers of their own on `leads` (insert, delete, update of a figure the facts
  read: stage, source, company size, custom fields, owner, creation time, dates known) and `activities`;
  the triggers of migration 0031 are not touched. The kinds below are the scoring rules' engagement
  kinds and domain.CONTACT_KINDS / CONTENT_READ_KINDS; a change there needs a migration that rebuilds
  these tables (tests/test_segments_rollup.py compares the rollup with the scan on generated data).

Ctrl-K's companies (`crm_companies_matching`, migration 0033) counted the viewer's leads of every
matching company on each search: for "smith" at 1M leads ~29,000 leads read one by one. Now
`company_lead_counts` keeps the leads per company x owner (statement triggers on `leads`: insert,
delete, a new company or owner, truncate), the function sums the matching companies' rows the viewer
may see (same rule of who may match), found through a trigram index on the company.

Revision ID: 0039_pages16
Revises: 0038_rescore16
Create Date: 2026-12-04
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0039_pages16"
down_revision: Union[str, None] = "0038_rescore16"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"
FIXED_PATH = "pg_catalog, public, pg_temp"
ENGAGEMENT_KINDS = ("demo_request", "email_clicked", "email_opened", "email_received", "form_submission",
                    "meeting", "page_visit", "pricing_page_visit", "pricing_request")
REP_KINDS = ("call", "email_sent", "meeting")
READ_KINDS = ("page_visit", "email_clicked")
PLAYS = ("case_study", "whitepaper", "pricing_call", "demo", "nurture_sequence", "breakup_email")
CONTENT_PLAYS = ("case_study", "whitepaper")
READ_THRESHOLDS = (1, 2)
ENGAGEMENT_THRESHOLDS = (5, 10)
MAX_FIELD_VALUE = 60
SIZE_BAND = ("(CASE WHEN l.company_size IS NULL THEN 'unknown' WHEN l.company_size <= 50 THEN '1-50' "
             "WHEN l.company_size <= 200 THEN '51-200' WHEN l.company_size <= 1000 THEN '201-1000' ELSE '1000+' END)")
# What a fact of a closed lead depends on (besides its activity counts).
FACT_COLUMNS = ("stage", "source", "company_size", "custom_fields", "owner_id", "created_at", "dates_known")
KEY = "monthly, day, dates_known, owner_id, source, trait"
VISIBLE = ("(SELECT crm_sees_team()) OR ((SELECT crm_acting_user()) IS NOT NULL "
           "AND (owner_id IS NULL OR owner_id = (SELECT crm_acting_user())))")


def _in(values) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


# (column, condition on an activity a) of lead_activity_counts.
COUNTS = (
    [("engagements", f"a.kind IN {_in(ENGAGEMENT_KINDS)}")]
    + [(f"played_{p}", f"a.play = '{p}' AND a.kind IN {_in(REP_KINDS)}") for p in PLAYS]
    + [(f"read_{p}", f"a.play = '{p}' AND a.kind IN {_in(READ_KINDS)}") for p in CONTENT_PLAYS]
)
NAMES = [name for name, _ in COUNTS]


def _traits() -> str:
    """The lateral rows of a closed lead `l` with counts `c`: NULL (the lead itself) and each trait."""
    rows = ["SELECT NULL::text", f"SELECT 'size:' || {SIZE_BAND}"]
    rows += [f"SELECT 'play:{p}' WHERE c.played_{p} > 0" for p in PLAYS]
    rows += [f"SELECT 'read:{p}:{n}' WHERE c.read_{p} >= {n}" for p in CONTENT_PLAYS for n in READ_THRESHOLDS]
    rows += [f"SELECT 'engaged:{n}' WHERE c.engagements >= {n}" for n in ENGAGEMENT_THRESHOLDS]
    rows.append("SELECT 'field:' || f.key || ':' || f.value FROM jsonb_each_text(CASE WHEN "
                "jsonb_typeof(l.custom_fields) = 'object' THEN l.custom_fields END) AS f(key, value) "
                f"WHERE length(f.value) BETWEEN 1 AND {MAX_FIELD_VALUE}")
    return " UNION ALL ".join(rows)


def facts(rows: str, counts: str = "public.lead_activity_counts") -> str:
    """Rows (day, created_at, dates_known, owner_id, source, trait, closed, won) of each closed lead of
    `rows` (leads' columns) with its activity counts from `counts` (lead_activity_counts' columns)."""
    return f"""
    SELECT (l.created_at AT TIME ZONE 'UTC')::date AS day, l.created_at, l.dates_known, l.owner_id,
           l.source::text AS source, t.trait, 1::bigint AS closed, (l.stage = 'won')::int::bigint AS won
      FROM {rows} l
      LEFT JOIN {counts} c0 ON c0.lead_id = l.id
     CROSS JOIN LATERAL (SELECT {', '.join(f'coalesce(c0.{n}, 0) AS {n}' for n in NAMES)}) c
     CROSS JOIN LATERAL ({_traits()}) AS t(trait)
     WHERE l.stage IN ('won', 'lost')
    """


def rollup_delta(*signed: tuple[int, str, str]) -> str:
    """INSERT ... ON CONFLICT adding sign x facts(rows, counts) of each (sign, rows, counts), each fact
    under its day and its month, in key order; keys whose sums do not move are not written."""
    parts = " UNION ALL ".join(f"SELECT {sign} AS sign, f.* FROM ({facts(rows, counts)}) f"
                               for sign, rows, counts in signed)
    return f"""
    INSERT INTO public.segment_rollup AS r ({KEY}, closed, won)
    SELECT g.monthly, CASE WHEN g.monthly THEN date_trunc('month', x.day::timestamp)::date ELSE x.day END,
           x.dates_known, x.owner_id, x.source, x.trait, sum(x.sign * x.closed), sum(x.sign * x.won)
      FROM ({parts}) x CROSS JOIN (VALUES (false), (true)) AS g(monthly)
     GROUP BY 1, 2, 3, 4, 5, 6
    HAVING sum(x.sign * x.closed) <> 0 OR sum(x.sign * x.won) <> 0
     ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT ({KEY}) DO UPDATE SET closed = r.closed + EXCLUDED.closed, won = r.won + EXCLUDED.won
    """


def activity_delta(new: str | None, old: str | None) -> str:
    """The counts of the activities' leads move by (new rows) - (old rows), and the rollup by the
    facts of those of them that are closed, in one statement. Leads already gone are left alone."""
    sides = ([f"SELECT 1 AS sign, lead_id, kind, play FROM {new} x"] if new else []) + (
        [f"SELECT -1 AS sign, lead_id, kind, play FROM {old} x"] if old else [])
    sums = ", ".join(f"sum(a.sign) FILTER (WHERE {cond}) AS {name}" for name, cond in COUNTS)
    nonzero = " OR ".join(f"coalesce(sum(a.sign) FILTER (WHERE {cond}), 0) <> 0" for _, cond in COUNTS)
    return f"""
    WITH delta AS (
        SELECT a.lead_id, {sums}
          FROM ({' UNION ALL '.join(sides)}) a
         WHERE EXISTS (SELECT 1 FROM public.leads l WHERE l.id = a.lead_id)
         GROUP BY a.lead_id HAVING {nonzero}
    ),
    old_counts AS (SELECT c.* FROM public.lead_activity_counts c JOIN delta d ON d.lead_id = c.lead_id),
    new_counts AS (
        SELECT d.lead_id, {', '.join(f'coalesce(o.{n}, 0) + coalesce(d.{n}, 0) AS {n}' for n in NAMES)}
          FROM delta d LEFT JOIN old_counts o ON o.lead_id = d.lead_id
    ),
    closed_leads AS (
        SELECT l.* FROM public.leads l JOIN delta d ON d.lead_id = l.id WHERE l.stage IN ('won', 'lost')
    ),
    rollup_written AS ({rollup_delta((1, "closed_leads", "new_counts"), (-1, "closed_leads", "old_counts"))})
    INSERT INTO public.lead_activity_counts (lead_id, {', '.join(NAMES)})
    SELECT * FROM new_counts ORDER BY lead_id
    ON CONFLICT (lead_id) DO UPDATE SET {', '.join(f'{n} = EXCLUDED.{n}' for n in NAMES)}
    """


def _function(name: str, body: str, declare: str = "") -> None:
    op.execute(
        f"""
        CREATE FUNCTION {name}() RETURNS trigger
          LANGUAGE plpgsql SECURITY DEFINER SET search_path = {FIXED_PATH} AS $fn$
        {f"DECLARE {declare}" if declare else ""}
        BEGIN
        {body}
        END $fn$
        """
    )
    op.execute(f"REVOKE ALL ON FUNCTION {name}() FROM PUBLIC")


def _backfill() -> str:
    return f"""
    INSERT INTO public.segment_rollup ({KEY}, closed, won)
    SELECT g.monthly, CASE WHEN g.monthly THEN date_trunc('month', x.day::timestamp)::date ELSE x.day END,
           x.dates_known, x.owner_id, x.source, x.trait, sum(x.closed), sum(x.won)
      FROM ({facts('public.leads')}) x CROSS JOIN (VALUES (false), (true)) AS g(monthly)
     GROUP BY 1, 2, 3, 4, 5, 6
    """


# Who may match a search (migrations 0016, 0029, 0033; unchanged).
VISIBLE_TO_MATCH = (
    "CASE WHEN (SELECT crm_acting_user()) IS NULL THEN (SELECT crm_session_bypasses_rls()) "
    "ELSE owner_id IS NULL OR owner_id = (SELECT crm_acting_user()) OR (SELECT crm_sees_team()) END"
)
COMPANIES_BEFORE = ("SELECT company::text, count(*) FROM public.leads WHERE company ILIKE $1 AND "
                    f"{VISIBLE_TO_MATCH} GROUP BY company ORDER BY count(*) DESC, company LIMIT $2")
COMPANIES_NOW = ("SELECT company, sum(leads)::bigint FROM public.company_lead_counts WHERE company ILIKE $1 AND "
                 f"{VISIBLE_TO_MATCH} GROUP BY company HAVING sum(leads) > 0 ORDER BY 2 DESC, company LIMIT $2")


def _companies_function(body: str) -> None:
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION crm_companies_matching(pattern text, max_rows integer)
          RETURNS TABLE (company text, leads bigint)
          LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = {FIXED_PATH} ROWS 200 AS $$
          BEGIN
            RETURN QUERY EXECUTE '{body.replace(chr(39), chr(39) * 2)}' USING pattern, max_rows;
          END
        $$
        """
    )


def company_delta(*signed: tuple[int, str]) -> str:
    parts = " UNION ALL ".join(f"SELECT {sign} AS sign, company::text AS company, owner_id FROM {rows} "
                               "WHERE company IS NOT NULL" for sign, rows in signed)
    return f"""
    INSERT INTO public.company_lead_counts AS c (company, owner_id, leads)
    SELECT company, owner_id, sum(sign) FROM ({parts}) x
     GROUP BY company, owner_id HAVING sum(sign) <> 0 ORDER BY company, owner_id
    ON CONFLICT (company, owner_id) DO UPDATE SET leads = c.leads + EXCLUDED.leads
    """


FUNCTIONS = ("crm_segments_leads_inserted", "crm_segments_leads_updated", "crm_segments_leads_deleted",
             "crm_segments_activities_inserted", "crm_segments_activities_updated",
             "crm_segments_activities_deleted", "crm_segments_rebuilt", "crm_companies_inserted",
             "crm_companies_updated", "crm_companies_deleted", "crm_companies_truncated")


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE lead_activity_counts (
            lead_id integer PRIMARY KEY,
            {', '.join(f'{n} integer NOT NULL DEFAULT 0' for n in NAMES)}
        )
        """
    )
    op.execute("COMMENT ON TABLE lead_activity_counts IS 'Per lead, the activity counts segment insights read "
               "(migration 0037): interactions, plays used, content read; kept by triggers on activities'")
    op.execute(
        """
        CREATE TABLE segment_rollup (
            monthly boolean NOT NULL,
            day date NOT NULL,
            dates_known boolean NOT NULL,
            owner_id integer,
            source text,
            trait text,
            closed bigint NOT NULL DEFAULT 0,
            won bigint NOT NULL DEFAULT 0
        )
        """
    )
    op.execute("COMMENT ON TABLE segment_rollup IS 'Closed and won leads per day (and month) created x owner x "
               "source x trait (NULL: every closed lead) for segment insights (migration 0037); kept by triggers'")

    op.execute("SET LOCAL work_mem = '256MB'")
    op.execute(
        f"""
        INSERT INTO lead_activity_counts (lead_id, {', '.join(NAMES)})
        SELECT a.lead_id, {', '.join(f'count(*) FILTER (WHERE {cond})' for _, cond in COUNTS)}
          FROM activities a
         WHERE a.kind IN {_in(sorted(set(ENGAGEMENT_KINDS) | set(REP_KINDS) | set(READ_KINDS)))}
         GROUP BY a.lead_id
        """
    )
    op.execute(_backfill())
    op.execute(f"CREATE UNIQUE INDEX uq_segment_rollup_key ON segment_rollup ({KEY}) NULLS NOT DISTINCT")
    op.execute("CREATE INDEX ix_segment_rollup_owner ON segment_rollup (owner_id, monthly, day)")
    op.execute("ANALYZE lead_activity_counts, segment_rollup")
    op.execute(f"CREATE VIEW segment_facts WITH (security_invoker = true) AS {facts('public.leads')}")

    _function("crm_segments_leads_inserted", rollup_delta((1, "new_leads", "public.lead_activity_counts"))
              + "; RETURN NULL;")
    changed = " OR ".join(f"n.{c} IS DISTINCT FROM o.{c}" for c in FACT_COLUMNS)
    _function(
        "crm_segments_leads_updated",
        f"""
        -- Most updates (a new score, a new last activity) change nothing the facts read. (Found by a
        -- hashed join: an EXISTS was planned as a nested loop of the two transition tables for its first
        -- row, 5,000 x 5,000 comparisons in a rescoring batch.)
        changed := ARRAY(SELECT n.id FROM new_leads n JOIN old_leads o ON o.id = n.id
                          WHERE (n.stage IN ('won', 'lost') OR o.stage IN ('won', 'lost')) AND ({changed}));
        IF cardinality(changed) = 0 THEN
            RETURN NULL;
        END IF;
        WITH ids AS (SELECT DISTINCT unnest(changed) AS id),
             changed_new AS (SELECT n.* FROM new_leads n JOIN ids c ON c.id = n.id),
             changed_old AS (SELECT o.* FROM old_leads o JOIN ids c ON c.id = o.id)
        {rollup_delta((1, "changed_new", "public.lead_activity_counts"),
                      (-1, "changed_old", "public.lead_activity_counts"))};
        RETURN NULL;""",
        "changed integer[];",
    )
    _function(
        "crm_segments_leads_deleted",
        rollup_delta((-1, "old_leads", "public.lead_activity_counts")) + """;
        DELETE FROM public.lead_activity_counts c USING old_leads o WHERE c.lead_id = o.id;
        RETURN NULL;""",
    )
    _function("crm_segments_activities_inserted", activity_delta("new_acts", None) + "; RETURN NULL;")
    _function("crm_segments_activities_deleted", activity_delta(None, "old_acts") + "; RETURN NULL;")
    _function(
        "crm_segments_activities_updated",
        """
        -- A reassignment rewrites every activity's owner: nothing the counts read. (Found by a hashed
        -- join: an EXISTS was planned as a nested loop of the two transition tables for its first row.)
        changed := ARRAY(SELECT n.id FROM new_acts n JOIN old_acts o ON o.id = n.id
                          WHERE (n.lead_id, n.kind, n.play) IS DISTINCT FROM (o.lead_id, o.kind, o.play));
        IF cardinality(changed) = 0 THEN
            RETURN NULL;
        END IF;
        """ + activity_delta("(SELECT n.* FROM new_acts n JOIN (SELECT DISTINCT unnest(changed) AS id) c ON c.id = n.id)",
                             "(SELECT o.* FROM old_acts o JOIN (SELECT DISTINCT unnest(changed) AS id) c ON c.id = o.id)")
        + "; RETURN NULL;",
        "changed integer[];",
    )
    # A TRUNCATE (of leads, or of activities alone) rebuilds both from what is left.
    _function("crm_segments_rebuilt", "DELETE FROM public.lead_activity_counts; DELETE FROM public.segment_rollup; "
              f"IF EXISTS (SELECT 1 FROM public.leads) THEN {_backfill()}; END IF; RETURN NULL;")

    for event, name, tables in (
        ("INSERT", "crm_segments_leads_inserted", "NEW TABLE AS new_leads"),
        ("UPDATE", "crm_segments_leads_updated", "NEW TABLE AS new_leads OLD TABLE AS old_leads"),
        ("DELETE", "crm_segments_leads_deleted", "OLD TABLE AS old_leads"),
    ):
        op.execute(f"CREATE TRIGGER leads_segments_{event.lower()} AFTER {event} ON leads REFERENCING {tables} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()")
    for event, name, tables in (
        ("INSERT", "crm_segments_activities_inserted", "NEW TABLE AS new_acts"),
        ("UPDATE", "crm_segments_activities_updated", "NEW TABLE AS new_acts OLD TABLE AS old_acts"),
        ("DELETE", "crm_segments_activities_deleted", "OLD TABLE AS old_acts"),
    ):
        op.execute(f"CREATE TRIGGER activities_segments_{event.lower()} AFTER {event} ON activities "
                   f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION {name}()")
    for table in ("leads", "activities"):
        op.execute(f"CREATE TRIGGER {table}_segments_truncate AFTER TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION crm_segments_rebuilt()")

    # Ctrl-K's companies.
    op.execute("CREATE TABLE company_lead_counts (company text NOT NULL, owner_id integer, leads bigint NOT NULL)")
    op.execute("COMMENT ON TABLE company_lead_counts IS 'Leads per company x owner for search (migration 0037); "
               "kept by triggers on leads, read by crm_companies_matching'")
    op.execute("INSERT INTO company_lead_counts SELECT company, owner_id, count(*) FROM leads "
               "WHERE company IS NOT NULL GROUP BY company, owner_id")
    op.execute("CREATE UNIQUE INDEX uq_company_lead_counts ON company_lead_counts (company, owner_id) NULLS NOT DISTINCT")
    op.execute("CREATE INDEX ix_company_lead_counts_trgm ON company_lead_counts USING gin (company gin_trgm_ops)")
    op.execute("ANALYZE company_lead_counts")
    _function("crm_companies_inserted", company_delta((1, "new_leads")) + "; RETURN NULL;")
    _function("crm_companies_deleted", company_delta((-1, "old_leads")) + "; RETURN NULL;")
    _function(
        "crm_companies_updated",
        """
        changed := ARRAY(SELECT n.id FROM new_leads n JOIN old_leads o ON o.id = n.id
                          WHERE (n.company, n.owner_id) IS DISTINCT FROM (o.company, o.owner_id));
        IF cardinality(changed) = 0 THEN
            RETURN NULL;
        END IF;
        WITH ids AS (SELECT DISTINCT unnest(changed) AS id),
             changed_new AS (SELECT n.* FROM new_leads n JOIN ids c ON c.id = n.id),
             changed_old AS (SELECT o.* FROM old_leads o JOIN ids c ON c.id = o.id)
        """ + company_delta((1, "changed_new"), (-1, "changed_old")) + "; RETURN NULL;",
        "changed integer[];",
    )
    _function("crm_companies_truncated", "DELETE FROM public.company_lead_counts; RETURN NULL;")
    for event, name, tables in (
        ("INSERT", "crm_companies_inserted", "NEW TABLE AS new_leads"),
        ("UPDATE", "crm_companies_updated", "NEW TABLE AS new_leads OLD TABLE AS old_leads"),
        ("DELETE", "crm_companies_deleted", "OLD TABLE AS old_leads"),
    ):
        op.execute(f"CREATE TRIGGER leads_companies_{event.lower()} AFTER {event} ON leads REFERENCING {tables} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()")
    op.execute("CREATE TRIGGER leads_companies_truncate AFTER TRUNCATE ON leads "
               "FOR EACH STATEMENT EXECUTE FUNCTION crm_companies_truncated()")
    op.execute(f"REVOKE ALL ON company_lead_counts FROM {APP_ROLE}")
    _companies_function(COMPANIES_NOW)

    for table in ("segment_rollup", "lead_activity_counts"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"REVOKE ALL ON {table} FROM {APP_ROLE}")
        op.execute(f"GRANT SELECT ON {table} TO {APP_ROLE}")
    op.execute(f"GRANT SELECT ON segment_facts TO {APP_ROLE}")
    op.execute(f"CREATE POLICY segment_rollup_visible ON segment_rollup FOR SELECT TO {APP_ROLE} USING ({VISIBLE})")
    op.execute(f"CREATE POLICY lead_activity_counts_visible ON lead_activity_counts FOR SELECT TO {APP_ROLE} "
               "USING ((SELECT crm_sees_team()) OR EXISTS (SELECT 1 FROM leads l WHERE l.id = lead_id))")


def downgrade() -> None:
    _companies_function(COMPANIES_BEFORE)
    for event in ("insert", "update", "delete", "truncate"):
        op.execute(f"DROP TRIGGER leads_companies_{event} ON leads")
        op.execute(f"DROP TRIGGER leads_segments_{event} ON leads")
        op.execute(f"DROP TRIGGER activities_segments_{event} ON activities")
    for name in FUNCTIONS:
        op.execute(f"DROP FUNCTION {name}()")
    op.execute("DROP VIEW segment_facts")
    op.execute("DROP TABLE segment_rollup")
    op.execute("DROP TABLE lead_activity_counts")
    op.execute("DROP TABLE company_lead_counts")
