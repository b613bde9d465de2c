"""Closing a deal from any page: a move to Lost asks why (the team's list and free text), a move to
Won confirms the close value and date. The page that asked (kanban drag, lead page, leads table,
bulk move) redraws once the move is saved; nothing moves until the dialog is confirmed."""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from decimal import Decimal, InvalidOperation

import reflex as rx
from sqlalchemy import func, select

from crm_app.db.models import Lead
from crm_app.domain import Stage
from crm_app.services.errors import InvalidInput, ServiceError
from crm_app.services.lead_actions import move_leads_to_stage
from crm_app.services.leads import move_lead_to_stage
from crm_app.services.lost_reasons import reason_labels
from crm_app.state.base import AppState, now_utc, picked, typed_text, whole_number
from crm_app.state.next_step import origin_event

OTHER = "__other__"  # the reason select's "Other (say below)"
ORIGINS = {
    "lead": ("crm_app.state.lead_detail", "LeadDetailState", "after_close"),
    "pipeline": ("crm_app.state.pipeline", "PipelineState", "after_close"),
    "leads": ("crm_app.state.leads", "LeadsState", "after_close"),
}


class CloseDealState(AppState):
    open: bool = False
    stage: str = ""  # won | lost
    lead_ids: list[int] = []
    title: str = ""  # "Ada Lovelace" or "3 leads"
    bulk: bool = False  # several leads: each keeps its own value, one close date for all
    bulk_value: str = ""  # "$84,000 in all": what a bulk Won adds to the month's won revenue
    reasons: list[str] = []
    reason: str = ""
    note: str = ""
    value: str = ""
    closed_on: str = ""  # YYYY-MM-DD
    errors: dict[str, str] = {}
    saving: bool = False
    _origin: str = "lead"
    _version: int = 0
    _from_stage: str = ""

    @rx.event
    async def ask(self, lead_ids: list[int], to_stage: str, origin: str):
        """Open the dialog for a move of these leads (one, or a bulk selection) to Won or Lost."""
        ids = [i for i in (whole_number(x) for x in (lead_ids if isinstance(lead_ids, list) else [])[:500]) if i]
        if not ids or to_stage not in (Stage.WON.value, Stage.LOST.value) or not isinstance(origin, str) \
                or origin not in ORIGINS:
            return
        reasons = await self._db(reason_labels)
        first = await self._db(lambda s: s.execute(
            select(Lead.name, Lead.deal_value, Lead.version, Lead.stage).where(Lead.id == ids[0])).first())
        if first is None:
            return rx.toast.error("That lead is no longer visible to you.")
        self.lead_ids, self.stage, self._origin = ids, to_stage, origin
        self.title = first.name if len(ids) == 1 else f"{len(ids)} leads"
        self.bulk, self.bulk_value = len(ids) > 1, ""
        if self.bulk:
            total = await self._db(lambda s: s.execute(
                select(func.count(), func.coalesce(func.sum(Lead.deal_value), 0)).where(Lead.id.in_(ids))).one())
            self.bulk_value = f"{total[0]} of them visible to you, ${total[1]:,.0f} in all"
        self._version, self._from_stage = (first.version, first.stage) if len(ids) == 1 else (0, "")
        self.reasons, self.reason, self.note = reasons, "", ""
        self.value = f"{first.deal_value:.2f}".rstrip("0").rstrip(".") if first.deal_value is not None else ""
        self.closed_on = now_utc().date().isoformat()
        self.errors, self.open = {}, True

    @rx.event
    def set_open(self, value: bool):
        self.open = value is True

    @rx.event
    def set_reason(self, value: str):
        self.reason = picked(value, {*self.reasons, OTHER}, self.reason)
        self.errors = {k: v for k, v in self.errors.items() if k != "lost_reason"}

    @rx.event
    def set_note(self, value: str):
        self.note = typed_text(value, 500)
        self.errors = {k: v for k, v in self.errors.items() if k not in ("lost_note", "lost_reason")}

    @rx.event
    def set_value(self, value: str):
        self.value = typed_text(value, 20)
        self.errors = {k: v for k, v in self.errors.items() if k != "won_value"}

    @rx.event
    def set_closed_on(self, value: str):
        self.closed_on = typed_text(value, 10)
        self.errors = {k: v for k, v in self.errors.items() if k != "closed_at"}

    def _checked(self) -> dict:
        """What the move records besides the stage; every field's error at once otherwise."""
        errors, details = {}, {}
        if self.stage == Stage.LOST.value:
            if self.reason == "":
                errors["lost_reason"] = "Choose why the deal was lost."
            elif self.reason == OTHER and not self.note.strip():
                errors["lost_reason"] = "Say why below, or choose a reason."
            details["lost_reason"] = self.note.strip()[:120] if self.reason == OTHER else self.reason
            details["lost_note"] = None if self.reason == OTHER else self.note
        else:
            if not self.bulk:  # a bulk Won: each deal keeps its own value
                try:
                    value = Decimal(self.value.replace(",", "").replace("$", "").strip() or "x")
                    if not value.is_finite():
                        raise InvalidOperation
                    details["won_value"] = value
                except InvalidOperation:
                    errors["won_value"] = "Enter the deal's value as a number, e.g. 12500."
            try:
                day = date.fromisoformat(self.closed_on)
                details["closed_at"] = min(datetime.combine(day, time(12, 0), tzinfo=timezone.utc), now_utc())
                if day > now_utc().date():
                    errors["closed_at"] = "The close date cannot be in the future."
            except ValueError:
                errors["closed_at"] = "Enter the close date."
        if errors:
            raise _Refused(errors)
        return details

    @rx.event
    async def confirm(self):
        if self.saving:
            return
        try:
            details = self._checked()
        except _Refused as refused:
            self.errors = refused.errors
            return
        ids, stage, version, now = list(self.lead_ids), self.stage, self._version, now_utc()
        self.saving = True
        yield
        try:
            if len(ids) == 1:
                await self._db(lambda s: move_lead_to_stage(s, lead_id=ids[0], to_stage=stage, now=now,
                                                            expected_version=version or None, **details))
                summary = f"{self.title} moved to {Stage(stage).label}"
            else:
                outcome = await self._db(lambda s: move_leads_to_stage(
                    s, lead_ids=ids, to_stage=stage, now=now, lost_reason=details.get("lost_reason"),
                    lost_note=details.get("lost_note"), closed_at=details.get("closed_at")))
                summary = outcome.summary(f"Moved to {Stage(stage).label}:")
        except InvalidInput as error:
            self.errors = {error.field or "form": str(error)}
            return
        except ServiceError as error:
            self.errors = {"form": str(error)}
            return
        finally:
            self.saving = False
        self.open = False
        yield rx.toast.success(summary)
        yield origin_event(ORIGINS, self._origin)


class _Refused(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("refused")
        self.errors = errors
