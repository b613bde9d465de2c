"""Undo on a toast: what a page remembers for a few seconds after a move, a snooze, a "done" or a log.

The toast's Undo button sends only a random ticket; what to undo (lead, stage to go back to, version)
stays on the server in the page state's private `_undo_tickets`, so a crafted event cannot name another
lead or stage, and a ticket works once, for UNDO_SECONDS (plus a little for a slow socket).
The undo itself is a service call (crm_app/services/undo.py) that writes history of its own.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import reflex as rx
from reflex_components_sonner.toast import ToastAction

UNDO_SECONDS = 8
_GRACE_SECONDS = 4
TOO_LATE = "Too late to undo: that change is kept."


def issue_ticket(tickets: dict[str, dict[str, Any]], undo: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], str]:
    """`tickets` with a new one for `undo` (expired ones dropped), and the new ticket's token."""
    now = time.time()  # wall clock: the ticket may be taken by another machine's worker (Redis)
    token = secrets.token_urlsafe(12)
    kept = {k: v for k, v in tickets.items() if v["expires"] > now}
    return {**kept, token: {**undo, "expires": now + UNDO_SECONDS + _GRACE_SECONDS}}, token


def take_ticket(tickets: dict[str, dict[str, Any]], token: object) -> tuple[dict[str, dict[str, Any]], dict | None]:
    """`tickets` without `token`, and what it undoes (None when unknown, used or expired)."""
    if not isinstance(token, str) or token not in tickets:
        return tickets, None
    rest = {k: v for k, v in tickets.items() if k != token}
    undo = tickets[token]
    return rest, (undo if undo["expires"] > time.time() else None)


def undo_toast(message: str, on_undo, description: str | None = None):
    """A success toast with an Undo button for UNDO_SECONDS."""
    extra = {"description": description} if description else {}
    return rx.toast.success(message, duration=UNDO_SECONDS * 1000, class_name="undo-toast",
                            action=ToastAction(label="Undo", on_click=on_undo), **extra)
