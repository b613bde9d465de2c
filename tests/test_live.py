"""Live updates: a worker's listener hears every committed lead change, by owner, and nothing that
was rolled back (crm_app/live.py and the trigger of migration 0010)."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import text

from crm_app import live
from tests.conftest import NOW, run_async


async def _until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return False


def test_the_listener_hears_committed_changes_by_owner_and_not_rolled_back_ones(engine):
    async def scenario():
        listener = asyncio.create_task(live.listen_for_changes())
        try:
            assert await _until(lambda: live._listening_since > 0)
            with engine.begin() as conn:
                owner = conn.execute(text("INSERT INTO users (email, name, role, is_active) VALUES "
                                          "('live-owner@test.crm', 'Live Owner', 'rep', TRUE) RETURNING id")).scalar_one()
            mark = time.time()
            await asyncio.sleep(0.2)
            # A change that is rolled back is never announced.
            with engine.connect() as conn:
                tx = conn.begin()
                conn.execute(text("INSERT INTO leads (name, source, owner_id, tier) VALUES ('Ghost', 'website', :o, 'cold')"),
                             {"o": owner})
                tx.rollback()
            await asyncio.sleep(0.5)
            assert not live.changed_since(mark, [str(owner)])
            # A committed one is, for its owner (and for a manager, who watches everyone), not for others.
            with engine.begin() as conn:
                lead_id = conn.execute(text("INSERT INTO leads (name, source, owner_id, tier, created_at) "
                                            "VALUES ('Live', 'website', :o, 'cold', :now) RETURNING id"),
                                       {"o": owner, "now": NOW}).scalar_one()
            assert await _until(lambda: live.changed_since(mark, [str(owner)]))
            assert live.changed_since(mark, None)
            assert not live.changed_since(mark, [str(owner + 1000)])
            # Back to the pool: both the old owner and the pool hear it.
            mark = time.time()
            await asyncio.sleep(0.05)
            with engine.begin() as conn:
                conn.execute(text("UPDATE leads SET owner_id = NULL WHERE id = :id"), {"id": lead_id})
            assert await _until(lambda: live.changed_since(mark, [live.POOL]))
            assert live.changed_since(mark, [str(owner)])
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM leads WHERE id = :id"), {"id": lead_id})
                conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": owner})
        finally:
            listener.cancel()
        # Stopped, it no longer answers for what changes: callers must look again.
        assert await _until(lambda: live.listening_since() == 0.0)

    run_async(scenario(), timeout=60)
