"""The periodic sweep: one worker at a time, for the whole round, even though the work commits."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from crm_app.background import _SWEEP_LOCK_KEY, exclusively


def test_a_second_worker_skips_the_round_while_one_sweeps(engine: Engine) -> None:
    attempts_during_round = []

    def work(session: Session) -> str:
        session.commit()  # the sweep commits in batches: the lock must outlive a commit
        attempts_during_round.append(exclusively(lambda other: "second worker ran"))
        return "swept"

    assert exclusively(work) == "swept"
    assert attempts_during_round == [None]
    # Released afterwards: the next round runs.
    assert exclusively(lambda session: "next round") == "next round"


def test_a_round_held_elsewhere_is_skipped(engine: Engine) -> None:
    with engine.connect() as other_worker:
        other_worker.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _SWEEP_LOCK_KEY})
        try:
            assert exclusively(lambda session: "ran") is None
        finally:
            other_worker.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _SWEEP_LOCK_KEY})
