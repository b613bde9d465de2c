""""Schedule the next step": offered after every logged activity (lead page, kanban card, Today) and
from the lead page's follow-ups; one dialog for every page, which tells the page that opened it to
redraw once the follow-up is saved."""

from __future__ import annotations

import importlib

import reflex as rx

from crm_app.services.errors import InvalidInput, ServiceError
from crm_app.services.follow_ups import DUE_CHOICES, NEXT_STEP_KINDS, due_time, schedule_next_step
from crm_app.state.base import AppState, now_utc, picked, typed_text, whole_number

# Which page opened the dialog -> (module, state, event) it calls when a next step was saved.
ORIGINS = {
    "lead": ("crm_app.state.lead_detail", "LeadDetailState", "after_next_step"),
    "pipeline": ("crm_app.state.pipeline", "PipelineState", "after_next_step"),
    "today": ("crm_app.state.dashboard", "DashboardState", "after_next_step"),
}


def origin_event(origins: dict, origin: str):
    """The page's own event (imported late: the page states import this one)."""
    module, state, event = origins[origin]
    return getattr(getattr(importlib.import_module(module), state), event)


class NextStepState(AppState):
    open: bool = False
    lead_id: int = 0
    lead_name: str = ""
    kind: str = "call"
    due: str = "tomorrow"
    note: str = ""
    error: str = ""
    error_field: str = ""
    saving: bool = False
    origin: str = ""  # which page offered it: the lead page and Today show it inline, the board a dialog

    @rx.event
    def offer(self, lead_id: int, lead_name: str, origin: str, just_logged: str = ""):
        """Open the dialog for a lead (after a call, an email, a meeting or a note was logged)."""
        picked_id = whole_number(lead_id)
        if picked_id is None or not isinstance(origin, str) or origin not in ORIGINS:
            return
        self.lead_id, self.lead_name, self.origin = picked_id, typed_text(lead_name, 200), origin
        # After a call the next step is usually an email with what was promised, and so on.
        self.kind = {"call": "email", "email_sent": "call", "meeting": "email"}.get(just_logged if isinstance(just_logged, str) else "", "call")
        self.due, self.note, self.error, self.error_field = "tomorrow", "", "", ""
        self.open = True

    @rx.event
    def set_open(self, value: bool):
        self.open = value is True

    @rx.event
    def dismiss(self):
        self.open = False

    @rx.event
    def set_kind(self, value: str):
        self.kind = picked(value, NEXT_STEP_KINDS, self.kind)

    @rx.event
    def set_due(self, value: str):
        self.due = picked(value, DUE_CHOICES, self.due)

    @rx.event
    def set_note(self, value: str):
        self.note = typed_text(value, 500)
        if self.error_field == "next_note":
            self.error = self.error_field = ""

    @rx.event
    async def schedule(self):
        if self.saving:
            return
        lead_id, kind, note, now = self.lead_id, self.kind, self.note, now_utc()
        due_at = due_time(self.due, now)
        self.saving = True
        yield
        try:
            await self._db(lambda s: schedule_next_step(s, lead_id=lead_id, kind=kind, due_at=due_at, now=now,
                                                        note=note))
        except InvalidInput as error:
            self.error, self.error_field = str(error), error.field or ""
            return
        except ServiceError as error:
            self.error, self.error_field = str(error), ""
            return
        finally:
            self.saving = False
        self.open = False
        yield rx.toast.success(f"{NEXT_STEP_KINDS[kind]} scheduled for {due_at.day} {due_at:%b %H:%M}")
        yield origin_event(ORIGINS, self.origin)
