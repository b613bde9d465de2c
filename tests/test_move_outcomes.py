"""A written move's outcome waits in the web worker for its tab's `move_written` event; one that no tab
claims (the tab closed, or its events went to another worker) must not stay for the worker's life."""

from __future__ import annotations

import time

from crm_app.state import pipeline


def test_outcomes_no_tab_claimed_leave_after_the_tab_forgot_the_move_and_young_ones_stay(monkeypatch):
    monkeypatch.setattr(pipeline, "_written", {})
    now = time.monotonic()
    ages = [pipeline.LOST_MOVE_SECONDS + 30, pipeline.LOST_MOVE_SECONDS + 1, 5.0, 0.0]
    for i, age in enumerate(ages):
        pipeline._written[f"k{i}"] = ("tab", {"lead_id": i}, None, None, (), now - age)

    assert pipeline._forget_unclaimed(now) == 2
    assert list(pipeline._written) == ["k2", "k3"]
    # Later, the young ones age out too; nothing claimed stays.
    assert pipeline._forget_unclaimed(now + pipeline.LOST_MOVE_SECONDS + 1) == 2
    assert pipeline._written == {}
