"""Two people moving the same lead at the same moment, each from the version they saw."""

from __future__ import annotations

import threading

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from crm_app.db.models import User
from crm_app.db.security import act_as
from crm_app.services.errors import StaleLead
from crm_app.services.leads import move_lead_to_stage
from tests.conftest import NOW
from tests.factories import make_lead


def test_exactly_one_of_two_simultaneous_moves_wins_and_the_history_has_both(engine: Engine) -> None:
    # Committed rows: each attempt runs in its own connection, as two browsers' events would.
    with Session(engine) as setup:
        ana = User(email="ana@race.test", name="Ana Race", role="rep")
        meg = User(email="meg@race.test", name="Meg Race", role="manager")
        setup.add_all([ana, meg])
        setup.commit()
        lead = make_lead(setup, "Racy Lead", now=NOW, owner=ana)
        lead_id, seen, users = lead.id, lead.version, {"ana": ana.id, "meg": meg.id}
    start = threading.Barrier(2)
    outcome: dict[str, str] = {}

    def attempt(who: str, stage: str) -> None:
        with act_as(Session(engine), users[who]) as session:  # each as themselves, under row security
            start.wait()
            try:
                move_lead_to_stage(session, lead_id=lead_id, to_stage=stage, now=NOW, user_id=users[who],
                                   expected_version=seen)
                outcome[who] = "moved"
            except StaleLead as refused:
                outcome[who] = str(refused)

    try:
        threads = [threading.Thread(target=attempt, args=("ana", "qualified")),
                   threading.Thread(target=attempt, args=("meg", "lost"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

        winners = [who for who, said in outcome.items() if said == "moved"]
        assert len(winners) == 1, outcome
        loser = next(who for who in outcome if who not in winners)
        assert outcome[loser].startswith("Racy Lead was changed by someone else a moment ago.")
        won_stage = {"ana": "qualified", "meg": "lost"}[winners[0]]
        lost_stage = {"ana": "qualified", "meg": "lost"}[loser]
        with Session(engine) as check:
            stage, version = check.execute(text("SELECT stage, version FROM leads WHERE id = :id"), {"id": lead_id}).one()
            assert (stage, version) == (won_stage, seen + 1)
            moves = check.execute(text(
                "SELECT from_stage, to_stage, user_id FROM stage_changes WHERE lead_id = :id AND from_stage IS NOT NULL"
            ), {"id": lead_id}).all()
            assert [tuple(m) for m in moves] == [("new", won_stage, users[winners[0]])]
            trail = check.execute(text(
                "SELECT action, actor_id, old ->> 'stage', new ->> 'stage' FROM audit_log WHERE lead_id = :id ORDER BY id"
            ), {"id": lead_id}).all()
            assert sorted(tuple(t) for t in trail) == sorted([
                ("stage_moved", users[winners[0]], "new", won_stage),
                ("stage_move_refused", users[loser], won_stage, lost_stage),
            ])
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_log WHERE lead_id = :id"), {"id": lead_id})
            conn.execute(text("DELETE FROM leads WHERE id = :id"), {"id": lead_id})
            conn.execute(text("DELETE FROM users WHERE id IN (:a, :b)"), {"a": users["ana"], "b": users["meg"]})
