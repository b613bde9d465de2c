"""Server time of the Pipeline board, the Today page and search on an existing database, for a rep and
a manager under row-level security, as the pages' event handlers run them.

    python scripts/benchmark_board.py --database-url postgresql://postgres@127.0.0.1:5432/crm_copy [--runs 30]

Prints p50/p95 per figure. The database is used as it is (no generation): point it at a copy of a
demo database. Moves are real (they are written, as a user's drag and drop would be), between open
stages. Each call runs in a fresh session acting as the user, as `AppState._db` does.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402
from sqlmodel import Session  # noqa: E402

from crm_app.db.engine import make_engine, normalize_url  # noqa: E402
from crm_app.db.queries import LeadFilter, ranked_leads  # noqa: E402
from crm_app.db.security import act_as  # noqa: E402
from crm_app.services.lead_detail import lead_detail  # noqa: E402
from crm_app.services.leads import move_lead_to_stage  # noqa: E402
from crm_app.services.notifications import bell  # noqa: E402
from crm_app.services.pipeline import PAGE, BoardFilter, board_columns, column_cards, deal_card  # noqa: E402
from crm_app.services.pipeline_health import pipeline_health  # noqa: E402
from crm_app.services.queue import action_queue  # noqa: E402
from crm_app.services.search import search_everywhere  # noqa: E402

ONLY: list[str] = []  # --only: the figures to run, by the start of their label
OPEN_MOVES = ("new", "contacted", "qualified", "meeting", "proposal", "negotiation")


def percentile(values: list[float], share: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(share * len(values)))]


def timed(label: str, runs: int, engine, users: list[int], call: Callable[..., object],
          prepare: Callable[[Session, int], object] | None = None) -> None:
    """p50/p95 of `call(session, user[, prepared])` after two warm-ups; `prepare` runs untimed first."""
    if ONLY and not any(label.startswith(prefix) for prefix in ONLY):
        return
    rng = random.Random(7)
    timings = []
    for run in range(runs + 2):
        user = rng.choice(users)
        with act_as(Session(engine, expire_on_commit=False), user) as session:
            args = (session, user)
            if prepare is not None:
                args = (*args, prepare(session, user))
                session.commit()
            started = time.perf_counter()
            call(*args)
            session.commit()
            if run >= 2:
                timings.append((time.perf_counter() - started) * 1000)
    print(f"{label}: p50 {percentile(timings, 0.5):.1f} ms, p95 {percentile(timings, 0.95):.1f} ms "
          f"({len(timings)} runs)  load {os.getloadavg()[0]:.1f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--only", default="", help="comma-separated figure prefixes to run")
    args = parser.parse_args(argv)
    engine = make_engine(normalize_url(args.database_url))
    with engine.connect() as connection:
        reps = connection.execute(text(
            "SELECT DISTINCT owner_id FROM leads WHERE owner_id IS NOT NULL ORDER BY 1")).scalars().all()
        manager = connection.execute(text(
            "SELECT id FROM users WHERE role = 'manager' AND is_active ORDER BY id LIMIT 1")).scalar_one()
        queue_now = connection.execute(text("SELECT max(occurred_at) FROM activities")).scalar_one()
        leads_total = connection.execute(text("SELECT count(*) FROM leads")).scalar_one()
    now = datetime.now(timezone.utc)
    print(f"database: {leads_total:,} leads, {len(reps)} reps", flush=True)
    ONLY[:] = [p for p in args.only.split(",") if p]
    rng = random.Random(11)

    def want(label: str) -> bool:
        return not ONLY or any(p.startswith(label) or label.startswith(p) for p in ONLY)

    for scope, users, owner in (("rep", reps, lambda u: u), ("manager", [manager], lambda u: None)):
        if want("pipeline load"):
            timed(f"pipeline load ({scope})", args.runs, engine, users,
                  lambda s, u: board_columns(s, flt=BoardFilter(owner_id=owner(u)), now=now, limit=PAGE))
        if want("pipeline load more"):
            def last_card(s, u):
                columns = board_columns(s, flt=BoardFilter(owner_id=owner(u)), now=now, limit=PAGE)
                column = max(columns, key=lambda c: len(c.cards))
                return column.stage, column.cards[-1]
            timed(f"pipeline load more ({scope})", args.runs, engine, users, lambda s, u, p: column_cards(
                s, stage=p[0], flt=BoardFilter(owner_id=owner(u)), now=now, after=(p[1].score, p[1].id)),
                prepare=last_card)
        if want("pipeline move"):
            def pick(s, u):
                return s.execute(text(
                    "SELECT id, stage, version FROM leads WHERE stage = ANY(:open) AND owner_id = :o "
                    "ORDER BY id LIMIT 1 OFFSET :k"),
                    {"open": list(OPEN_MOVES), "o": u if owner(u) else rng.choice(reps),
                     "k": rng.randrange(500)}).one()

            def move(s, u, lead):
                flt = BoardFilter(owner_id=owner(u))
                to = rng.choice([x for x in OPEN_MOVES if x != lead.stage])
                move_lead_to_stage(s, lead_id=lead.id, to_stage=to, now=now, expected_version=lead.version)
                # What PipelineState._move redraws afterwards.
                board_columns(s, flt=flt, now=now, limits={lead.stage: PAGE + 1, to: PAGE + 1},
                              stages=[lead.stage, to])
                deal_card(s, lead_id=lead.id, now=now)
            timed(f"pipeline move + redraw ({scope})", args.runs, engine, users, move, prepare=pick)
        if want("today"):
            timed(f"today load ({scope})", args.runs, engine, users, lambda s, u: (
                action_queue(s, owner_id=owner(u), now=queue_now, limit=25),
                pipeline_health(s, owner_id=owner(u), now=queue_now),
                bell(s, user_id=u, now=queue_now)))
        if want("leads page"):
            timed(f"leads page ({scope})", args.runs, engine, users,
                  lambda s, u: ranked_leads(s, LeadFilter(owner_id=owner(u)), limit=25))
        if want("leads search"):
            timed(f"leads search 'smith' ({scope})", args.runs, engine, users,
                  lambda s, u: ranked_leads(s, LeadFilter(owner_id=owner(u), search="smith"), limit=25))
        if want("ctrl-k"):
            timed(f"ctrl-k search 'smith' ({scope})", args.runs, engine, users,
                  lambda s, u: search_everywhere(s, "smith"))
            timed(f"ctrl-k search 'ma' ({scope})", args.runs, engine, users,
                  lambda s, u: search_everywhere(s, "ma"))
        if want("lead detail"):
            timed(f"lead detail ({scope})", args.runs, engine, users, lambda s, u, lead_id: lead_detail(s, lead_id, now),
                  prepare=lambda s, u: s.execute(text("SELECT id FROM leads WHERE owner_id = :o ORDER BY id LIMIT 1 "
                                                      "OFFSET :k"), {"o": u if owner(u) else rng.choice(reps),
                                                                     "k": rng.randrange(2000)}).scalar_one())


if __name__ == "__main__":
    main()
