"""Command line: `python -m crm_app.cli <command>`.

    migrate            bring the database to the newest schema
    seed [--leads N]   fill an empty database with the demo team (deterministic)
    setup              migrate, then seed if there are no leads yet (used by scripts/start.sh)
    rescore            rescore every lead and reassess its deal risk (after a rule or engine change)
    sweep              rescore only the leads whose recency bonus has run out, and reassess the
                       risk of the deals that time has changed
    mine-plays         recompute the play statistics behind the next best action
"""

from __future__ import annotations

import argparse
import sys
import time

from sqlalchemy import text
from sqlmodel import Session

from crm_app.db.engine import database_url, get_engine
from crm_app.db.migrate import upgrade_to_head
from crm_app.db.models import utcnow


def _lead_count() -> int:
    with get_engine().connect() as conn:
        return conn.execute(text("SELECT count(*) FROM leads")).scalar_one()


def _reassess_expired_risk(session: Session) -> int:
    from crm_app.services.risk import reassess_expired_risk

    return reassess_expired_risk(session, utcnow())


def migrate(_: argparse.Namespace) -> None:
    upgrade_to_head(database_url())
    print("Database is at the newest schema.")


def seed(args: argparse.Namespace) -> None:
    from crm_app.demo.generator import generate_demo_data, reset_demo_data

    if args.reset:
        reset_demo_data(get_engine())
    summary = generate_demo_data(get_engine(), leads=args.leads, seed=args.seed, now=utcnow(), progress=print)
    print(f"Demo data: {summary.users} users, {summary.leads:,} leads, {summary.activities:,} activities, "
          f"{summary.stage_changes:,} stage changes in {summary.elapsed_seconds:.1f} s.")
    mine_plays(args)


def setup(args: argparse.Namespace) -> None:
    migrate(args)
    count = _lead_count()
    if count:
        print(f"{count:,} leads already stored; demo data left alone.")
        with Session(get_engine()) as session:
            from crm_app.services.scoring import rescore_expired

            print(f"Rescored {rescore_expired(session, utcnow()):,} leads whose recency bonus ran out.")
            print(f"Reassessed the risk of {_reassess_expired_risk(session):,} deals that time has changed.")
        return
    seed(args)


def rescore(_: argparse.Namespace) -> None:
    from crm_app.services.risk import reassess_all_risk
    from crm_app.services.scoring import rescore_all

    started = time.perf_counter()
    with Session(get_engine()) as session:
        count = rescore_all(session, utcnow(), progress=lambda n: print(f"  {n:,} rescored", end="\r"))
        print(f"Rescored {count:,} leads in {time.perf_counter() - started:.1f} s.")
        started = time.perf_counter()
        count = reassess_all_risk(session, utcnow())
    print(f"Reassessed the risk of {count:,} leads in {time.perf_counter() - started:.1f} s.")


def sweep(_: argparse.Namespace) -> None:
    from crm_app.services.scoring import rescore_expired

    with Session(get_engine()) as session:
        print(f"Rescored {rescore_expired(session, utcnow()):,} leads.")
        print(f"Reassessed the risk of {_reassess_expired_risk(session):,} deals.")


def mine_plays(_: argparse.Namespace) -> None:
    from crm_app.services.next_action import refresh_play_stats

    started = time.perf_counter()
    with Session(get_engine()) as session:
        rows = refresh_play_stats(session, utcnow())
    print(f"Play statistics: {rows:,} segment rows in {time.perf_counter() - started:.1f} s.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crm_app.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate").set_defaults(run=migrate)
    for name, run in (("seed", seed), ("setup", setup)):
        sub = commands.add_parser(name)
        sub.add_argument("--leads", type=int, default=3000, help="how many demo leads (default 3000)")
        sub.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
        sub.add_argument("--reset", action="store_true", help="delete all data first")
        sub.set_defaults(run=run)
    commands.add_parser("rescore").set_defaults(run=rescore)
    commands.add_parser("sweep").set_defaults(run=sweep)
    commands.add_parser("mine-plays").set_defaults(run=mine_plays)
    args = parser.parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
