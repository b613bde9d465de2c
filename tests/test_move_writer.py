"""A drag-and-drop move's write (crm_app/move_writer.py), in the web worker's thread or in a writer
process of its own: what is stored, what comes back to the tab, and what is refused."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from crm_app import move_writer
from crm_app.db.models import User
from tests.conftest import NOW, run_async
from tests.factories import make_lead


@pytest.fixture(params=[0, 2], ids=["in-thread", "writer-processes"])
def writers(request, monkeypatch, web_engine):
    monkeypatch.setenv("CRM_MOVE_WRITERS", str(request.param))
    yield request.param
    move_writer.stop_writers()


def test_a_move_is_stored_once_and_a_second_from_the_same_version_or_an_ended_session_is_refused(
        engine: Engine, writers) -> None:
    with Session(engine) as setup:  # committed: the writer works in connections of its own
        rep = User(email=f"writer{writers}@move.test", name="Wren Writer", role="rep")
        setup.add(rep)
        setup.commit()
        lead = make_lead(setup, "Moving Lead", now=NOW, owner=rep)
        lead_id, seen, rep_id = lead.id, lead.version, rep.id
    move = {"lead_id": lead_id, "name": "Moving Lead", "from": "new", "to": "contacted", "user_id": rep_id,
            "version": seen, "started": 1.0}
    try:
        checked, card, reason = run_async(move_writer.write(move, "", False, NOW))
        assert (checked, reason) == ((), None)
        assert (card.id, card.stage, card.version) == (lead_id, "contacted", seen + 1)

        # The same drop again, from the version the tab saw before: someone (here, itself) moved it.
        _, card, reason = run_async(move_writer.write({**move, "to": "qualified"}, "", False, NOW))
        assert card is None and reason.startswith("Moving Lead was changed by someone else")
        # A session that is not (or no longer) signed in writes nothing.
        checked, card, reason = run_async(move_writer.write({**move, "version": seen + 1, "to": "qualified"},
                                                            "no-such-session", True, NOW))
        assert (checked, card, reason) == ((None,), None, move_writer.SESSION_ENDED)

        with Session(engine) as check:
            stage = check.execute(text("SELECT stage FROM leads WHERE id = :id"), {"id": lead_id}).scalar_one()
            changes = check.execute(text("SELECT to_stage FROM stage_changes WHERE lead_id = :id "
                                         "AND from_stage IS NOT NULL"), {"id": lead_id}).scalars().all()
        assert (stage, changes) == ("contacted", ["contacted"])
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_log WHERE lead_id = :id"), {"id": lead_id})
            conn.execute(text("DELETE FROM leads WHERE id = :id"), {"id": lead_id})
            conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": rep_id})
