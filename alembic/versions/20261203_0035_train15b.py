"""the analytics rollup moves only by the leads whose figures an update changed

Migration 0031's update trigger on `leads` added the facts of every new row and took away those of
every old row, and let the sums cancel (HAVING ... <> 0). A statement that changes no figure of most
of its rows still paid for all of them: six kinds of facts per row, twice (daily and monthly), with the
history summary joined in. A rescore writing 5,000 leads spent 4.0 of its 10.5 s in that trigger, and
the benchmark's `UPDATE leads SET score_reasons = '[]'` of 100,000 leads ran for over six minutes,
spilling the grouped rows to disk, to move the rollup by nothing.

Now the trigger takes, on each side, only the rows whose rollup inputs differ between old and new
(`FACT_COLUMNS`: what `facts()` of migration 0031 reads from a lead row; the history summary is the
same table on both sides of one statement, and its own changes move the rollup where they are
written, in crm_analytics_history). A row whose inputs are all unchanged adds and takes away the same
facts, so leaving it out changes no sum: the rollup is identical (tests/test_analytics_rollup.py
compares it with the queries over `leads` after every kind of write). Pairs are matched by id; a row
whose id changed matches nothing and is counted on both sides, as before.

(Written beside migration 0034, which made the live-update notices statement triggers too; this one
keeps 0034's work_mem for the function it replaces.)

Revision ID: 0035_train15b
Revises: 0034_import20c
Create Date: 2026-12-03
"""
import importlib.util
from pathlib import Path
from typing import Sequence, Union

from alembic import op

revision: str = "0035_train15b"
down_revision: Union[str, None] = "0034_import20c"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

FIXED_PATH = "pg_catalog, public, pg_temp"
# The columns of `leads` that migration 0031's facts() reads, for its kinds 1-2 (source, tier now) and
# for its kinds 3-6 (tier at close, furthest stage, stays, lost deals; these also read the history
# summary). A rescore changes only the first set.
FIRST_KINDS = 2
COLUMNS_OF_FIRST_KINDS = ("created_at", "dates_known", "owner_id", "source", "custom_fields->>'source_detail'",
                          "stage", "score", "deal_value", "closed_at", "tier")
COLUMNS_OF_OTHER_KINDS = ("created_at", "dates_known", "owner_id", "source", "stage", "score_at_close",
                          "lost_reason")
# What facts() reads of a row (the moved rows carry only these, not the wide score reasons).
READ_COLUMNS = ("id", "created_at", "dates_known", "owner_id", "source", "custom_fields", "stage", "score",
                "deal_value", "closed_at", "tier", "score_at_close", "lost_reason")
SUMMARIES = "public.lead_stage_summaries"
SEPARATOR = "\n    UNION ALL\n    "  # between facts()'s kinds
HISTORY_OF_CREATION = """
        -- The first stay of a lead whose arrival was not recorded starts at its creation.
        PERFORM public.crm_analytics_history(ARRAY(
            SELECT n.id FROM new_leads n JOIN old_leads o ON o.id = n.id WHERE n.created_at <> o.created_at));
        RETURN NULL;"""


def _rollup15():
    """Migration 0031's module, for its SQL of the rollup's facts (one definition of what is counted)."""
    path = Path(__file__).with_name("20261203_0031_rollup15.py")
    spec = importlib.util.spec_from_file_location("rollup15_migration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _moved(rows: str, others: str, columns: tuple[str, ...]) -> str:
    """The rows of transition table `rows` whose `columns` differ from their row (same id) in `others`."""
    mine = ", ".join(f"r.{c}" for c in columns)
    theirs = ", ".join(f"x.{c}" for c in columns)
    read = ", ".join(f"r.{c}" for c in READ_COLUMNS)
    return (f"(SELECT {read} FROM {rows} r WHERE NOT EXISTS (SELECT 1 FROM {others} x "
            f"WHERE x.id = r.id AND ({theirs}) IS NOT DISTINCT FROM ({mine})))")


def _moved_facts(rollup15, side: str) -> str:
    """facts() of migration 0031 kind by kind, each over the rows of `side` ("new" or "old") whose
    inputs of that kind moved (the CTEs of `_delta`)."""
    first = rollup15.facts(f"{side}_first", SUMMARIES).split(SEPARATOR)
    other = rollup15.facts(f"{side}_other", SUMMARIES).split(SEPARATOR)
    assert len(first) == len(other) == 6, "migration 0031's facts() has six kinds"
    return SEPARATOR.join(first[:FIRST_KINDS] + other[FIRST_KINDS:])


def _delta(rollup15) -> str:
    """Migration 0031's rollup_delta (facts of the new rows added, of the old taken away) over the rows
    whose inputs moved."""
    key, measures = rollup15.KEY, rollup15.MEASURES
    moved = ",\n    ".join(
        f"{side}_{kinds} AS MATERIALIZED {_moved(f'{side}_leads', f'{other}_leads', columns)}"
        for side, other in (("new", "old"), ("old", "new"))
        for kinds, columns in (("first", COLUMNS_OF_FIRST_KINDS), ("other", COLUMNS_OF_OTHER_KINDS))
    )
    parts = (f"SELECT 1 AS sign, f.* FROM ({_moved_facts(rollup15, 'new')}) f "
             f"UNION ALL SELECT -1 AS sign, f.* FROM ({_moved_facts(rollup15, 'old')}) f")
    sums = ", ".join(f"coalesce(sum(sign * {m}), 0)" for m in measures)
    nonzero = " OR ".join(f"coalesce(sum(sign * {m}), 0) <> 0" for m in measures)
    updates = ", ".join(f"{m} = r.{m} + EXCLUDED.{m}" for m in measures)
    return f"""
    WITH {moved}
    INSERT INTO public.analytics_rollup AS r ({key}, {', '.join(measures)})
    SELECT {key}, {sums} FROM ({rollup15.by_grain(parts)}) d
     GROUP BY {key} HAVING {nonzero}
     ORDER BY {key}
    ON CONFLICT ({key}) DO UPDATE SET {updates}
    """


def _updated_function(body: str) -> None:
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION crm_rollup_leads_updated() RETURNS trigger
          LANGUAGE plpgsql SECURITY DEFINER SET search_path = {FIXED_PATH} SET work_mem = '64MB' AS $fn$
        BEGIN
        {body}
        END $fn$
        """
    )


def upgrade() -> None:
    rollup15 = _rollup15()
    _updated_function(_delta(rollup15) + ";" + HISTORY_OF_CREATION)


def downgrade() -> None:
    rollup15 = _rollup15()
    _updated_function(rollup15.rollup_delta((1, "new_leads", SUMMARIES), (-1, "old_leads", SUMMARIES))
                      + ";" + HISTORY_OF_CREATION)
