"""Measures the narrow-score-table design for a full rules rescore (issue #15, not adopted yet).

    python scripts/prototype_score_table.py --database COPY [--workers 2]

A full rescore that rewrites most leads costs, per lead, an entry in each of the 28 indexes of
`leads` (score is in 9 of them, so no update is HOT), ~0.4 ms of CPU and up to ~15-55 kB of WAL (full-page
images). The design measured here scores every lead into a NEW narrow table (lead id, the score, tier,
reasons and expiry, plus copies of the columns the score-ordered pages sort and filter on: owner,
stage, deal value, last activity), builds its sort indexes in one sorted pass each, and would swap it
for the old one in one short transaction. Only the work, not the swap or the pages reading it, is
timed: it tells whether the design can meet the 30 s goal at 1M before the pages are rewritten to it.
Creates and drops `proto_lead_scores` in the database it is given (use a copy).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlmodel import Session  # noqa: E402

from crm_app.services import rules_sql  # noqa: E402

INDEXES = (
    "(score DESC, lead_id DESC)",
    "(tier, score DESC, lead_id DESC)",
    "(owner_id, score DESC, lead_id DESC)",
    "(owner_id, stage, score DESC, lead_id DESC)",
    "(stage, score DESC, lead_id DESC)",
    "(last_activity_at DESC, score DESC, deal_value DESC, lead_id)",
    "(owner_id, last_activity_at DESC, score DESC, deal_value DESC, lead_id)",
    "(valid_until)",
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    engine = create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:5432/{args.database}",
                           connect_args={"options": "-c timezone=UTC"}, pool_size=args.workers + 1)
    with Session(engine) as session:
        now = session.execute(text("SELECT max(occurred_at) FROM activities")).scalar_one()
        session.execute(text("DROP TABLE IF EXISTS proto_lead_scores"))
        session.execute(text(
            "CREATE TABLE proto_lead_scores (lead_id integer PRIMARY KEY, owner_id integer, stage varchar(16), "
            "deal_value numeric, last_activity_at timestamptz, score integer, tier varchar(8), reasons jsonb, "
            "valid_until timestamptz, scored_at timestamptz)"))
        session.execute(text("ALTER TABLE proto_lead_scores DROP CONSTRAINT proto_lead_scores_pkey"))
        session.commit()
        ranges = list(rules_sql._ranges(session, "TRUE", {}, rules_sql.CHUNK))  # noqa: SLF001
    insert = f"""
        INSERT INTO proto_lead_scores
        SELECT s.id, l.owner_id, l.stage, l.deal_value, l.last_activity_at, s.score, s.tier, s.reasons,
               s.valid_until, :now
          FROM ({rules_sql.scored_sql('TRUE', ':now', False, True)}) s JOIN leads l ON l.id = s.id
    """  # noqa: SLF001

    def one(lo: int, hi: int) -> None:
        with Session(engine) as own:
            own.execute(text("SET LOCAL jit = off"))
            own.execute(text("SET LOCAL work_mem = '64MB'"))
            own.execute(text("SET LOCAL synchronous_commit = off"))
            own.execute(text(insert), {"now": now, "lo": lo, "hi": hi})
            own.commit()

    def build(definition: str) -> None:
        with Session(engine) as own:
            own.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
            own.execute(text(definition))
            own.commit()

    load = lambda: "load %.1f" % os.getloadavg()[0]  # noqa: E731
    started = time.perf_counter()
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(lambda r: one(r[0], r[1]), ranges))
    scored = time.perf_counter() - started
    print(f"score every lead into a new narrow table: {scored:.1f} s ({load()})", flush=True)
    started = time.perf_counter()
    build("ALTER TABLE proto_lead_scores ADD PRIMARY KEY (lead_id)")
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(build, [f"CREATE INDEX ON proto_lead_scores {c}" for c in INDEXES]))
    built = time.perf_counter() - started
    print(f"build its key and {len(INDEXES)} sort indexes: {built:.1f} s ({load()})", flush=True)
    print(f"total: {scored + built:.1f} s", flush=True)
    with Session(engine) as session:
        count = session.execute(text("SELECT count(*) FROM proto_lead_scores")).scalar_one()
        same = session.execute(text(
            "SELECT count(*) FROM proto_lead_scores p JOIN leads l ON l.id = p.lead_id "
            "WHERE (p.score, p.tier, p.reasons, p.valid_until) IS NOT DISTINCT FROM "
            "(l.score, l.tier, l.score_reasons, l.score_valid_until)")).scalar_one()
        print(f"{count:,} rows; {same:,} equal to the scores stored in leads", flush=True)
        session.execute(text("DROP TABLE proto_lead_scores"))
        session.commit()


if __name__ == "__main__":
    main()
