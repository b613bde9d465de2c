"""Times a tab's state keeps are wall-clock times, because the state moves between web workers, and
with Redis between machines (README, "Several web workers and machines"): time.monotonic() counts
from each machine's boot, so a session check or an Undo ticket made on one machine looked, on a
machine booted earlier, like one made in the future: never due again, never expired."""

from __future__ import annotations

import time
from types import SimpleNamespace

from crm_app.state.base import RECHECK_SECONDS, AppState
from crm_app.state.undo import UNDO_SECONDS, issue_ticket, take_ticket


def _tab(checked_at: float):
    """A tab's state as another worker left it: a user checked at `checked_at`, with this token."""
    return SimpleNamespace(_user="ria", _checked_at=checked_at, _checked_token="t0ken",
                           _session_token=lambda: "t0ken")


def test_a_session_check_another_worker_made_is_trusted_until_it_is_due():
    assert AppState._checked_user(_tab(time.time() - 5)) == "ria"
    assert AppState._checked_user(_tab(time.time() - RECHECK_SECONDS - 1)) is None
    # An hour-old check made on a machine booted long ago (its monotonic clock far ahead of this
    # one's) is due, and so is one that looks made in the future (clocks apart): checked again.
    assert AppState._checked_user(_tab(time.time() - 3600)) is None
    assert AppState._checked_user(_tab(time.time() + 3600)) is None
    # Without `fresh` (the drop's handler), the last check stands while the browser's token is the same.
    assert AppState._checked_user(_tab(time.time() - 3600), fresh=False) == "ria"


def test_an_undo_ticket_from_another_worker_expires_on_time():
    tickets, token = issue_ticket({}, {"lead_id": 7})
    assert take_ticket(tickets, token)[1] == {"lead_id": 7, "expires": tickets[token]["expires"]}
    # The same ticket, issued a minute ago on another machine.
    old = {token: {**tickets[token], "expires": time.time() - 60 + UNDO_SECONDS}}
    rest, undo = take_ticket(old, token)
    assert undo is None and rest == {}
