"""the analytics rollup's update trigger pairs the old and new rows once, and a new score is one fact

A full rules rescore rewrites most leads' scores, range by range (50,000 leads a statement). The update
trigger of the rollup (0037) found the rows whose inputs moved with six anti-joins of the transition
tables (new against old and old against new, for three sets of columns): twelve scans of two 50,000-row
tuplestores of whole lead rows, six hash tables, then four facts for a lead whose score alone moved
(kinds 1 and 2, both sides), 200,000 facts grouped per range, to move each group's score sum. Then
a fifth join of the two tables found the leads whose creation moved (for their stage history).

Now the old and new rows are joined once (a full join by id: a row whose id changed matches nothing
and counts on its side, as before), each kind's inputs compared on the pair:

- kind 1 (source x detail x open/won/lost: count, score sum, value, days to win): when only the score
  moved, one fact for the new row's group, score sum += new - old, n += 0; when anything else it reads
  moved, the new row's facts added and the old row's taken away, as before;
- kind 2 (tier counts) only for the leads whose tier, stage, creation, dates or owner moved (a rescore
  that keeps the tier moves none of its counts);
- kinds 3-6 only for the leads whose inputs of that kind moved (kinds 4-6 read the history summary,
  read once by id for those leads alone: none for a rescore);
- the leads whose creation moved come out of the same statement, for crm_analytics_history.

The sums are the same facts' sums (tests/test_analytics_rollup.py compares the figures with scans after
every kind of write, tests/test_rollup_bulk_updates.py the rollup table with a rebuild from scratch
after random bulk updates of every column the rollup reads, alone and together).

Measured (PAIRS on the same copies, the machine's load 6-10 on 2 shared cores):
- 1M copy, rules rescore of the first 200,000 leads (4 ranges; ~109,000 rows written, scores and
  some tiers moving): the trigger 20.1 s and 19.2 s -> 8.2 s and 9.7 s (track_functions); the rescore
  116 s and 132 s -> 77 s and 109 s (a second pair, load 9-10: 12.5 s and 19.8 s -> 11.9 s and 8.9 s);
- 100k copy with the leads' own indexes dropped (so the trigger is most of the work), the backend's
  CPU for one 50,000-lead UPDATE: score alone 2.9/2.6 -> 2.1/1.7 s, score and tier 3.1/2.8 -> 2.4/2.2 s,
  stage and value (as an import's matched update) 2.4/2.1 -> 1.9/1.8 s.
What is left is the upsert: a range's leads sit in ~26,000-37,000 rollup rows (day x owner x source x
detail), each moved by ON CONFLICT. (A fillfactor of 75 on analytics_rollup made 29% of them HOT in a
test and no measurable difference; not done.)

And the statement triggers of `leads`, `stage_changes` and `activities` plan with JIT off: their
transition tables' joins are estimated at millions of rows, so a session with PostgreSQL's default
(psql, a script, the generator; the app's engines already turn it off) compiled each query for
0.9-2.8 s per 50,000-row statement (the Hot/assigned/at-risk notices trigger: 2.75 s of JIT to find
no row). CREATE OR REPLACE of these functions in a later migration drops the setting (as with work_mem).

Revision ID: 0043_trig18
Revises: 0042_idx18
Create Date: 2026-12-06
"""
import importlib.util
from pathlib import Path
from typing import Sequence, Union

from alembic import op

revision: str = "0043_trig18"
down_revision: Union[str, None] = "0042_idx18"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

FIXED_PATH = "pg_catalog, public, pg_temp"
SEPARATOR = "\n    UNION ALL\n    "  # between the kinds of migration 0031's facts()

# The statement triggers' functions (and what they call) that JIT would compile for their guesses.
NO_JIT = (
    "crm_rollup_leads_inserted()", "crm_rollup_leads_updated()", "crm_rollup_leads_deleted()",
    "crm_analytics_history(integer[])",
    "crm_history_inserted()", "crm_history_updated()", "crm_history_deleted()",
    "crm_segments_leads_inserted()", "crm_segments_leads_updated()", "crm_segments_leads_deleted()",
    "crm_segments_activities_inserted()", "crm_segments_activities_updated()", "crm_segments_activities_deleted()",
    "crm_companies_inserted()", "crm_companies_updated()", "crm_companies_deleted()",
    "crm_board_totals_delta()",
    "crm_notify_leads_inserted()", "crm_notify_leads_updated()", "crm_notify_leads_news()",
)

# What migration 0031's facts() reads of a lead row, kind by kind, besides where and whose the lead is
# (created_at, dates_known, owner_id: every kind's key). Kinds 4-6 also read the history summary, the
# same table on both sides of a statement on `leads` (its own changes move the rollup where they are
# written, in crm_analytics_history).
WHERE_AND_WHOSE = ("created_at", "dates_known", "owner_id")
KIND_COLUMNS = {
    1: ("source", "custom_fields->>'source_detail'", "stage", "score", "deal_value", "closed_at"),
    2: ("tier", "stage"),
    3: ("score_at_close", "stage"),
    4: ("stage",),
    5: (),
    6: ("source", "lost_reason", "stage"),
}
# The columns the facts read (the pairs carry only these, not the wide score reasons).
READ_COLUMNS = ("id", "created_at", "dates_known", "owner_id", "source", "custom_fields", "stage", "score",
                "deal_value", "closed_at", "tier", "score_at_close", "lost_reason")


def _module(file: str, name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(file))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rollup15():
    return _module("20261203_0031_rollup15.py", "rollup15_for_trig18")


def _imp16():
    return _module("20261204_0037_imp16.py", "imp16_for_trig18")


def _differ(columns) -> str:
    if not columns:
        return "false"
    return f"({', '.join('n.' + c for c in columns)}) IS DISTINCT FROM ({', '.join('o.' + c for c in columns)})"


def _score_only(rollup15) -> str:
    """Kind 1's fact for a lead whose score alone moved: its group (0031's kind-1 key, from the new row,
    the same as the old row's), the score's change and nothing else."""
    first = rollup15.facts("new_score_only", "hist").split(SEPARATOR)[0]
    key, measures = first.split("(1)::bigint AS n, ", 1)
    assert key.startswith("SELECT ") and "1::smallint AS kind" in key and measures.endswith("FROM new_score_only l")
    return (f"{key}(0)::bigint AS n, (l.score - l.old_score)::bigint AS score_sum, (0)::numeric AS value_sum, "
            "(0)::numeric AS days_sum, (0)::bigint AS days_n FROM new_score_only l")


def _updated(rollup15, imp16) -> str:
    """0037's delta from one full join of the transition tables; then the history of the leads whose
    creation moved, as 0035 did it (HISTORY_OF_CREATION), with their ids from the same statement."""
    base = _differ(WHERE_AND_WHOSE)
    moved = {k: f"{base} OR {_differ(columns)}" if columns else base for k, columns in KIND_COLUMNS.items()}
    # Kind 1 with everything but the score the same: one fact (the new row's), not one a side.
    all_but_score = tuple(c for c in KIND_COLUMNS[1] if c != "score")
    moved[1] = f"{base} OR {_differ(all_but_score)}"
    # A lone row (its id changed, so it has no partner) counts on its side for every kind, as before.
    lone = "n.id IS NULL OR o.id IS NULL"
    flags = [f"({lone} OR {moved[k]}) AS k{k}" for k in KIND_COLUMNS]
    flags.append(f"(NOT ({lone}) AND NOT ({moved[1]}) AND n.score <> o.score) AS score_only")
    flags.append(f"(NOT ({lone}) AND n.created_at <> o.created_at) AS created_moved")
    # One row a pair, both sides' columns (n_..., o_...): each side's relations below take theirs.
    sides = ", ".join(f"{x}.{c} AS {x}_{c}" for x in "no" for c in READ_COLUMNS)
    pairs = f"""pairs AS MATERIALIZED (
        SELECT {sides}, f.*
          FROM new_leads n FULL JOIN old_leads o ON o.id = n.id
         CROSS JOIN LATERAL (SELECT {', '.join(flags)}) f
         WHERE {' OR '.join(f'f.k{k}' for k in KIND_COLUMNS)} OR f.score_only
    )"""

    def side(x: str, source: str, where: str, extra: str = "") -> str:
        return (f"(SELECT {', '.join(f'p.{x}_{c} AS {c}' for c in READ_COLUMNS)}{extra} "
                f"FROM {source} p WHERE p.{x}_id IS NOT NULL AND {where})")

    # Kinds 3-6 move only with a lead's stage, close, loss or place (none in a rescore): their six
    # relations read this small set, not every pair again.
    ctes = [pairs, "others AS MATERIALIZED (SELECT * FROM pairs WHERE k3 OR k4 OR k5 OR k6)"]
    for name, x in (("new", "n"), ("old", "o")):
        for k in KIND_COLUMNS:
            ctes.append(f"{name}_k{k} AS {side(x, 'pairs' if k <= 2 else 'others', f'p.k{k}')}")
    ctes.append(f"new_score_only AS {side('n', 'pairs', 'p.score_only', ', p.o_score AS old_score')}")
    ctes.append("hist AS MATERIALIZED (SELECT h.* FROM public.lead_stage_summaries h WHERE h.lead_id = ANY(ARRAY("
                "SELECT unnest(ARRAY[p.n_id, p.o_id]) FROM others p WHERE p.k4 OR p.k5 OR p.k6)))")

    def side_facts(side: str) -> str:
        branches = [rollup15.facts(f"{side}_k{k}", "hist").split(SEPARATOR)[k - 1] for k in KIND_COLUMNS]
        assert len(branches) == 6, "migration 0031's facts() has six kinds"
        return SEPARATOR.join(branches)

    parts = (f"SELECT 1 AS sign, f.* FROM ({side_facts('new')}) f "
             f"UNION ALL SELECT -1 AS sign, f.* FROM ({side_facts('old')}) f "
             f"UNION ALL SELECT 1 AS sign, f.* FROM ({_score_only(rollup15)}) f")
    upsert = imp16._upsert(rollup15, parts, tuple(ctes)).strip()
    # 0037's upsert as a data-modifying CTE of the statement that also reads the leads whose creation moved.
    assert upsert.startswith("WITH ") and upsert.count("INSERT INTO public.analytics_rollup") == 1
    with_part, insert = upsert.split("INSERT INTO public.analytics_rollup", 1)
    return f"""
    {with_part.rstrip()},
    written AS (INSERT INTO public.analytics_rollup{insert})
    SELECT ARRAY(SELECT n_id FROM pairs WHERE created_moved) INTO moved_creation;
    -- The first stay of a lead whose arrival was not recorded starts at its creation.
    PERFORM public.crm_analytics_history(moved_creation);
    RETURN NULL;"""


def _updated_function(body: str, declare: str = "") -> None:
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION crm_rollup_leads_updated() RETURNS trigger
          LANGUAGE plpgsql SECURITY DEFINER SET search_path = {FIXED_PATH} SET work_mem = '64MB' AS $fn${declare}
        BEGIN
        {body}
        END $fn$
        """
    )


def upgrade() -> None:
    _updated_function(_updated(_rollup15(), _imp16()), "\n        DECLARE moved_creation integer[];")
    for function in NO_JIT:
        op.execute(f"ALTER FUNCTION {function} SET jit = off")


def downgrade() -> None:
    for function in NO_JIT:
        op.execute(f"ALTER FUNCTION {function} RESET jit")
    # As 0037 defined it.
    imp16 = _imp16()
    _updated_function(imp16._updated(_rollup15(), imp16._train15b()) + ";" + imp16._train15b().HISTORY_OF_CREATION)
