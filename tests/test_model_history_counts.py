"""The model page's history counts (won and lost deals to learn from) are reused between views only while
the closed deals' kept totals stay the same: a close, a reopen, a deletion or a new value shows at the
next view, and the count equals a fresh count of the closed deals every time."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text
from sqlmodel import Session

from crm_app.db.models import Lead
from crm_app.services.leads import move_lead_to_stage
from crm_app.services.model_training import _closed_counts, history_counts
from tests.conftest import NOW
from tests.factories import acting, make_user


def _counts(session: Session) -> tuple[int, int]:
    got = history_counts(session, now=NOW)
    assert (got.won, got.lost) == _closed_counts(session, NOW)
    return got.won, got.lost


def test_history_counts_follow_every_close_reopen_deletion_and_viewer(session: Session) -> None:
    manager = make_user(session, "Mo Counts", role="manager")
    rep = make_user(session, "Ray Counts")
    leads = []
    for i in range(12):
        lead = Lead(name=f"Deal {i}", source="website", stage="won" if i < 4 else "lost" if i < 7 else "proposal",
                    tier="cold", deal_value=1000 + i, owner_id=rep.id if i % 2 else None,
                    created_at=NOW - timedelta(days=90), closed_at=NOW - timedelta(days=9) if i < 7 else None)
        session.add(lead)
        leads.append(lead)
    session.commit()
    assert _counts(session) == (4, 3)
    assert _counts(session) == (4, 3)  # reused
    move_lead_to_stage(session, lead_id=leads[8].id, to_stage="won", now=NOW - timedelta(hours=1))
    assert _counts(session) == (5, 3)
    move_lead_to_stage(session, lead_id=leads[0].id, to_stage="proposal", now=NOW - timedelta(hours=1))
    assert _counts(session) == (4, 3)
    session.execute(text("DELETE FROM leads WHERE id = :id"), {"id": leads[5].id})
    assert _counts(session) == (4, 2)
    # Another viewer under row-level security: a rep counts their own and the pool's, a manager all.
    with acting(session, rep) as db:
        assert _counts(db) == (4, 2)
    session.execute(text("UPDATE leads SET owner_id = :m WHERE id = :id"), {"m": manager.id, "id": leads[1].id})
    with acting(session, rep) as db:
        assert _counts(db) == (3, 2)
    with acting(session, manager) as db:
        assert _counts(db) == (4, 2)
