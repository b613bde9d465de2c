"""the analytics triggers read only the rows of the leads a write touched, whatever the planner guesses

An import of 5,000 rows into 1,000,000 leads spent ~9 s of ~20 s in two triggers (issue #20):

- `crm_rollup_leads_updated` (0031, 0035) joins the moved rows to `lead_stage_summaries` once per
  kind that reads the history (and per side). With a few thousand moved rows the planner hashed the
  whole summaries table each time (four sequential scans of 1M rows for a 5,000-row import): the
  summaries of the moved leads are now read once, by their ids (`= ANY` on the primary key), into a
  small CTE that every kind joins. The insert and delete triggers read them the same way.
- `crm_analytics_history` (0031, 0034) recomputes the stays of the leads whose stage history changed.
  It read those leads, their stage changes and their old summaries through joins with the target ids,
  and wrote the stays back through a join of the stays with `stage_changes`; for 4,400 leads the
  planner chose to hash all of `leads`, all of `stage_changes` (twice: 3.8M rows at 1M) and all of
  `lead_stage_summaries`. Now each is read by the ids (`= ANY(ids)` on an index), and only the stage
  changes whose stored stay differs are written back, looked up by their ids. The function plans each
  call for its own ids (EXECUTE ... USING): a cached generic plan estimates an id array at 10
  elements and would join a 100,000-lead import's CTEs in nested loops.

And they sum fewer facts for the same deltas:

- every rollup delta is summed per day first, then each day's sums under its day and its month
  (before, each fact was doubled, then all sorted: 1.7M rows sorted on disk for a 100,000-row import
  whose facts had 115,000 keys);
- the update trigger takes the completed stays (kind 5) apart: they read only the lead's creation,
  dates and owner, so a move (a new stage) no longer counts every stay of the lead on both sides
  (about three facts a side for each moved lead, all cancelling);
- the history's delta counts kinds 4 and 6 only for leads whose furthest stage or stage lost from
  changed, and kind 5 as each stage's change in stays and days (one row for the stay a move adds,
  not every stay twice).

The numbers are the same (tests/test_analytics_rollup.py compares the rollup with the queries over the
leads after every kind of write, tests/test_import_rollup.py with a rebuild from scratch after imports;
both fail if the stays' days or the stage lost from are left out of the deltas).

Revision ID: 0037_imp16
Revises: 0036_pages15c
Create Date: 2026-12-04
"""
import importlib.util
from pathlib import Path
from typing import Sequence, Union

from alembic import op

revision: str = "0037_imp16"
down_revision: Union[str, None] = "0036_pages15c"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

FIXED_PATH = "pg_catalog, public, pg_temp"
SUMMARIES = "public.lead_stage_summaries"
SEPARATOR = "\n    UNION ALL\n    "  # between the kinds of migration 0031's facts()
# The summaries of the leads `rows` holds, by their ids: the rows a join with the table would match.
HIST = "{name} AS MATERIALIZED (SELECT h.* FROM public.lead_stage_summaries h WHERE h.lead_id = ANY(ARRAY({ids})))"


def _module(file: str, name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(file))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rollup15():
    return _module("20261203_0031_rollup15.py", "rollup15_for_imp16")


def _train15b():
    return _module("20261203_0035_train15b.py", "train15b_for_imp16")


def _function(name: str, body: str, *, args: str = "", returns: str = "trigger", settings: str = "") -> None:
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION {name}({args}) RETURNS {returns}
          LANGUAGE plpgsql SECURITY DEFINER SET search_path = {FIXED_PATH} SET work_mem = '64MB' {settings} AS $fn$
        BEGIN
        {body}
        END $fn$
        """
    )


def _upsert(rollup15, parts: str, ctes: tuple[str, ...] = ()) -> str:
    """Migration 0031's rollup_delta over signed facts `parts` (a query with a sign column first), summed
    in two steps: per day first, then each day's sums under its day and its month. Before, every fact
    was doubled (day and month) and the doubles sorted: 1.7M rows sorted on disk for a 100,000-row
    import whose facts had 115,000 distinct keys. Same sums (exact: integers and numerics)."""
    key, measures = rollup15.KEY, rollup15.MEASURES
    dims = "kind, day, dates_known, owner_id, k1, k2, k3"
    daily = (f"daily AS (SELECT {dims}, {', '.join(f'sum(sign * {m}) AS {m}' for m in measures)} "
             f"FROM ({parts}) f GROUP BY {dims} "
             f"HAVING {' OR '.join(f'coalesce(sum(sign * {m}), 0) <> 0' for m in measures)})")
    sums = ", ".join(f"coalesce(sum({m}), 0)" for m in measures)
    nonzero = " OR ".join(f"coalesce(sum({m}), 0) <> 0" for m in measures)
    updates = ", ".join(f"{m} = r.{m} + EXCLUDED.{m}" for m in measures)
    return f"""
    WITH {(',' + chr(10) + '    ').join((*ctes, daily))}
    INSERT INTO public.analytics_rollup AS r ({key}, {', '.join(measures)})
    SELECT {key}, {sums}
      FROM (SELECT x.kind, g.monthly, CASE WHEN g.monthly THEN date_trunc('month', x.day::timestamp)::date ELSE x.day END
                   AS day, x.dates_known, x.owner_id, x.k1, x.k2, x.k3, {', '.join('x.' + m for m in measures)}
              FROM daily x CROSS JOIN (VALUES (false), (true)) AS g(monthly)) d
     GROUP BY {key} HAVING {nonzero}
     ORDER BY {key}
    ON CONFLICT ({key}) DO UPDATE SET {updates}
    """


# --- The leads' statement triggers ---------------------------------------------------------------


def _inserted_or_deleted(rollup15, sign: int, rows: str) -> str:
    hist = HIST.format(name="hist", ids=f"SELECT id FROM {rows}")
    return _upsert(rollup15, f"SELECT {sign} AS sign, f.* FROM ({rollup15.facts(rows, 'hist')}) f", (hist,))


# What each kind of facts() reads of a lead row (0035 had kinds 1-2 and 3-6 as two sets). The completed
# stays (kind 5) read only where and whose the lead is; the history summary they count is the same on
# both sides of an UPDATE of leads. A move changes the stage, which kinds 3, 4 and 6 read, but not the
# stays: their facts (about three a lead, counted on both sides and for day and month) cancelled.
STAYS_COLUMNS = ("created_at", "dates_known", "owner_id")


def _updated(rollup15, train15b) -> str:
    """0035's delta (on each side, only the rows whose inputs of a kind moved), with the stays apart,
    the history read once by id."""
    sets = (("first", train15b.COLUMNS_OF_FIRST_KINDS), ("other", train15b.COLUMNS_OF_OTHER_KINDS),
            ("stays", STAYS_COLUMNS))
    moved = [
        f"{side}_{kinds} AS MATERIALIZED {train15b._moved(f'{side}_leads', f'{other}_leads', columns)}"
        for side, other in (("new", "old"), ("old", "new")) for kinds, columns in sets
    ]
    with_history = " UNION ".join(f"SELECT id FROM {side}_{kinds}" for side in ("new", "old") for kinds in ("other", "stays"))
    moved.append(HIST.format(name="hist", ids=with_history))

    def side_facts(side: str) -> str:
        kinds = {name: rollup15.facts(f"{side}_{name}", "hist").split(SEPARATOR) for name, _ in sets}
        assert all(len(k) == 6 for k in kinds.values()), "migration 0031's facts() has six kinds"
        first, other, stays = kinds["first"], kinds["other"], kinds["stays"]
        return SEPARATOR.join(first[:2] + other[2:4] + stays[4:5] + other[5:])

    parts = (f"SELECT 1 AS sign, f.* FROM ({side_facts('new')}) f "
             f"UNION ALL SELECT -1 AS sign, f.* FROM ({side_facts('old')}) f")
    return _upsert(rollup15, parts, tuple(moved))


# --- The stage history ---------------------------------------------------------------------------


def _history_delta(rollup15) -> str:
    """The facts by which the rollup moves when the history summaries of `changed_leads` go from
    `old_summaries` to `new_summaries` (kinds 4-6 of 0031's facts(), the ones that read a summary; the
    lead row is the same on both sides), signed: for kinds 4 and 6 only the leads whose furthest stage
    or stage lost from changed (the others' facts cancel), and for kind 5 each stage's change in its
    completed stays and their days (0031 counted every stay of the lead on both sides, about three
    rows a side, to move the rollup by the one stay a move adds)."""
    branches = {side: rollup15.facts(f"moved_{side}", f"{side}_summaries").split(SEPARATOR) for side in ("new", "old")}
    stays_now = rollup15._branch(
        5, f"({rollup15._array(rollup15.STAGES)})[s.i]", "NULL", "NULL", ("s.n", "0", "NULL", "s.d", "s.n"),
        "FROM changed_leads l LEFT JOIN new_summaries n ON n.lead_id = l.id LEFT JOIN old_summaries o ON o.lead_id = l.id "
        "CROSS JOIN LATERAL (SELECT u.i, coalesce(u.nn, 0) - coalesce(u.oo, 0) AS n, coalesce(u.nd, 0) - coalesce(u.od, 0) AS d "
        "FROM unnest(n.stay_counts, n.stay_days, o.stay_counts, o.stay_days) WITH ORDINALITY AS u(nn, nd, oo, od, i)) s "
        "WHERE l.dates_known AND (s.n <> 0 OR s.d <> 0)")
    return " UNION ALL ".join(
        [f"SELECT {sign} AS sign, f.* FROM ({branches[side][3]}{SEPARATOR}{branches[side][5]}) f"
         for sign, side in ((1, "new"), (-1, "old"))] + [f"SELECT 1 AS sign, f.* FROM ({stays_now}) f"])


# The changed leads whose furthest stage or stage lost from moved (kinds 4 and 6), each side alike.
MOVED_HISTORY = """
    moved_new AS (SELECT l.* FROM changed_leads l LEFT JOIN new_summaries n ON n.lead_id = l.id
                    LEFT JOIN old_summaries o ON o.lead_id = l.id
                   WHERE (n.furthest, n.lost_from_stage) IS DISTINCT FROM (o.furthest, o.lost_from_stage)),
    moved_old AS (SELECT * FROM moved_new),"""


def _history(rollup15) -> str:
    """Migration 0031's history(ids) (maintained, the rollup moved through the kinds that read the
    summary, as 0034 made it), every table read by the ids: the leads and their old summaries by
    primary key, their stage changes by ix_stage_changes_lead_changed, and only the stage changes
    whose stored stay differs written back, by primary key."""
    array, funnel, stages = rollup15._array, rollup15.FUNNEL, rollup15.STAGES

    read = ", ".join(f"x.{c}" for c in _train15b().READ_COLUMNS)
    delta = _upsert(rollup15, _history_delta(rollup15))
    return f"""
    WITH l AS MATERIALIZED (SELECT x.id, x.stage, x.created_at FROM public.leads x WHERE x.id = ANY($1)),
    sc AS MATERIALIZED (
        SELECT s.id, s.lead_id, s.from_stage, s.to_stage, s.changed_at, s.previous_stage, s.days_in_previous_stage
          FROM public.stage_changes s
         WHERE s.lead_id = ANY($1) AND s.lead_id IN (SELECT id FROM l)
    ),
    -- Per lead, in one pass: the furthest funnel stage, whether its arrival was recorded, the stage
    -- its first change left, and the stage its latest move to Lost left.
    per_lead AS (
        SELECT lead_id, max(array_position({array(funnel)}, to_stage::text)) - 1 AS furthest,
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
               ARRAY[{", ".join(f"count(*) FILTER (WHERE stay_stage = '{st}')" for st in stages)}]::integer[] AS counts,
               ARRAY[{", ".join(f"coalesce(sum(stay_days) FILTER (WHERE stay_stage = '{st}'), 0)" for st in stages)}]
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
                        FROM public.lead_stage_summaries h
                       WHERE h.lead_id = ANY($1) AND h.lead_id IN (SELECT id FROM l)),
    changed AS (
        SELECT coalesce(n.lead_id, o.lead_id) AS lead_id
          FROM new_summaries n FULL JOIN old_summaries o ON o.lead_id = n.lead_id
         WHERE (n.*) IS DISTINCT FROM (o.*)
    ),
    changed_leads AS MATERIALIZED (SELECT {read} FROM public.leads x WHERE x.id = ANY(ARRAY(SELECT lead_id FROM changed))),{MOVED_HISTORY}
    rollup_written AS ({delta}),
    summaries_dropped AS (
        DELETE FROM public.lead_stage_summaries h
         WHERE h.lead_id = ANY(ARRAY(SELECT c.lead_id FROM changed c
                                      WHERE NOT EXISTS (SELECT 1 FROM new_summaries n WHERE n.lead_id = c.lead_id)))
    ),
    summaries_written AS (
        INSERT INTO public.lead_stage_summaries ({rollup15.SUMMARY})
        SELECT n.* FROM new_summaries n JOIN changed c ON c.lead_id = n.lead_id
        ON CONFLICT (lead_id) DO UPDATE SET furthest = EXCLUDED.furthest, lost_from_stage = EXCLUDED.lost_from_stage,
               stay_counts = EXCLUDED.stay_counts, stay_days = EXCLUDED.stay_days
    ),
    -- The stays that differ from what their stage change stores (an import's new changes, a move's).
    fixes AS MATERIALIZED (
        SELECT st.change_id, st.stay_stage, st.stay_days FROM stays st JOIN sc ON sc.id = st.change_id
         WHERE sc.previous_stage IS DISTINCT FROM st.stay_stage OR sc.days_in_previous_stage IS DISTINCT FROM st.stay_days
    )
    UPDATE public.stage_changes s SET previous_stage = f.stay_stage, days_in_previous_stage = f.stay_days
      FROM fixes f
     WHERE s.id = ANY(ARRAY(SELECT change_id FROM fixes)) AND f.change_id = s.id
       AND (s.previous_stage IS DISTINCT FROM f.stay_stage OR s.days_in_previous_stage IS DISTINCT FROM f.stay_days)
    """


def upgrade() -> None:
    rollup15, train15b = _rollup15(), _train15b()
    _function("crm_rollup_leads_inserted", _inserted_or_deleted(rollup15, 1, "new_leads") + "; RETURN NULL;")
    _function("crm_rollup_leads_deleted", _inserted_or_deleted(rollup15, -1, "old_leads") + """;
        -- Their stage changes went first (ON DELETE CASCADE), leaving the summaries to be taken away here.
        DELETE FROM public.lead_stage_summaries h USING old_leads o WHERE h.lead_id = o.id;
        RETURN NULL;""")
    _function("crm_rollup_leads_updated", _updated(rollup15, train15b) + ";" + train15b.HISTORY_OF_CREATION)
    # Statement triggers fire for statements that touched no row, and this one writes stage_changes:
    # nothing to do must do nothing, or it would call itself for ever.
    # Planned for each call's ids (EXECUTE): a cached generic plan guesses 10 ids, and a setting such as
    # plan_cache_mode on the function would also hold for the foreign-key checks its UPDATE fires,
    # which then planned their query for every row.
    _function("crm_analytics_history", "IF coalesce(cardinality(ids), 0) = 0 THEN RETURN; END IF;\n"
              f"EXECUTE $q$ {_history(rollup15)} $q$ USING ids;", args="ids integer[]", returns="void")


def downgrade() -> None:
    rollup15, train15b = _rollup15(), _train15b()
    summaries = SUMMARIES
    _function("crm_rollup_leads_inserted", rollup15.rollup_delta((1, "new_leads", summaries)) + "; RETURN NULL;")
    _function("crm_rollup_leads_deleted", rollup15.rollup_delta((-1, "old_leads", summaries)) + """;
        -- Their stage changes went first (ON DELETE CASCADE), leaving the summaries to be taken away here.
        DELETE FROM public.lead_stage_summaries h USING old_leads o WHERE h.lead_id = o.id;
        RETURN NULL;""")
    _function("crm_rollup_leads_updated", train15b._delta(rollup15) + ";" + train15b.HISTORY_OF_CREATION)
    # As 0034 left it: its definition (CREATE OR REPLACE drops this one's settings), then its work_mem.
    _module("20261203_0034_import20c.py", "import20c_for_imp16")._history_function(only_kinds_of_history=True)
    op.execute("ALTER FUNCTION crm_analytics_history(integer[]) SET work_mem = '64MB'")
