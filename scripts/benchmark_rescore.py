"""Full rules rescore and bulk risk on a copy of a database, with the load beside each figure.

    python scripts/benchmark_rescore.py --database rescore16_100k [--what rescore,risk] [--workers N]

Writes into the database it is given (use a copy). Cases: rescore_all with every lead's stored reasons
wiped (every lead rewritten, as after a change of the rubric; the wipe is not timed), then again with
nothing changed; risk: every lead's stored risk wiped (not timed), reassess_all_risk, then again.
WAL is the server's position before and after: on a shared server it includes other work.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlmodel import Session  # noqa: E402


def load() -> str:
    return "load %.1f" % os.getloadavg()[0]


def figure(label: str, value: str) -> None:
    print(f"{label:<55} {value}  ({load()})", flush=True)


def wal(session) -> int:
    return session.execute(text("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")).scalar_one()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", required=True)
    parser.add_argument("--what", default="rescore,risk")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--now", default=None, help="ISO moment to score at (default: the newest activity)")
    args = parser.parse_args()
    engine = create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:5432/{args.database}",
                           connect_args={"options": "-c timezone=UTC"})
    with Session(engine) as session:
        now = (datetime.fromisoformat(args.now) if args.now else
               session.execute(text("SELECT max(occurred_at) FROM activities")).scalar_one())
        leads = session.execute(text("SELECT count(*) FROM leads")).scalar_one()
        figure("leads", f"{leads:,}, now = {now.isoformat()}")
    what = args.what.split(",")
    if "rescore" in what:
        from crm_app.services.rules_sql import rescore_rules_where
        with Session(engine) as session:
            session.execute(text("UPDATE leads SET score_reasons = '[]'::jsonb"))
            session.commit()
            session.execute(text("CHECKPOINT"))
            for label in ("rescore_all, every lead rewritten", "rescore_all, nothing changed"):
                before = wal(session)
                started = time.perf_counter()
                count = rescore_rules_where(session, now, workers=args.workers)
                seconds = time.perf_counter() - started
                written = session.execute(text("SELECT count(*) FROM leads WHERE scored_at = :now"),
                                          {"now": now}).scalar_one()
                figure(label, f"{leads:,} leads in {seconds:.1f} s ({written:,} hold this pass's scored_at), "
                       f"WAL {(wal(session) - before) / 2**20:,.0f} MB")
    if "risk" in what:
        from crm_app.services.risk import reassess_all_risk
        with Session(engine) as session:
            session.execute(text("UPDATE leads SET risk_level = NULL, risk_points = NULL, risk_reasons = '[]', "
                                 "risk_valid_until = NULL, last_reply_at = NULL, last_reply_sentiment = NULL"))
            session.commit()
            session.execute(text("CHECKPOINT"))
            for label in ("reassess_all_risk, every lead", "reassess_all_risk, nothing changed"):
                before = wal(session)
                started = time.perf_counter()
                count = reassess_all_risk(session, now)
                seconds = time.perf_counter() - started
                figure(label, f"{count:,} written of {leads:,} in {seconds:.1f} s, "
                       f"WAL {(wal(session) - before) / 2**20:,.0f} MB")


if __name__ == "__main__":
    main()
