"""The settings page: source costs and stage limits as typed, with a message per field."""

from __future__ import annotations

import reflex as rx

from crm_app.services.errors import InvalidInput, ServiceError
from crm_app.services.lost_reasons import add_reason, reason_labels, remove_reason
from crm_app.services.settings import (
    SourceCostRow,
    StageRuleRow,
    set_source_cost,
    set_stagnation_days,
    source_costs,
    stage_rules,
)
from crm_app.services.scoring_settings import engine_status
from crm_app.state.base import AppState, now_utc, typed_text


# The longest cost and day count the inputs take (and the state keeps).
COST_LENGTH, DAYS_LENGTH = 20, 6


class SettingsState(AppState):
    costs: list[SourceCostRow] = []
    rules: list[StageRuleRow] = []
    # What is in each input (by source / stage), and the message under it.
    cost_drafts: dict[str, str] = {}
    day_drafts: dict[str, str] = {}
    errors: dict[str, str] = {}
    saved: dict[str, bool] = {}
    # Which engine scores the leads (chosen on the model page).
    engine_label: str = ""
    engine_note: str = ""
    # The team's lost reasons (the Lost dialog offers them), and the one being added.
    lost_reasons: list[str] = []
    new_reason: str = ""
    reason_error: str = ""

    async def _refresh(self) -> None:
        now = now_utc()
        self.costs, self.rules, status, self.lost_reasons = await self._db(
            lambda s: (source_costs(s), stage_rules(s), engine_status(s, now=now), reason_labels(s))
        )
        self.engine_label, self.engine_note = status.effective_label, status.note
        self.cost_drafts = {r.source: r.cost for r in self.costs}
        self.day_drafts = {r.stage: r.days for r in self.rules}
        self.errors, self.saved = {}, {}

    @rx.event
    async def load(self):
        if not await self._load_team():
            return self._sign_in_redirect()
        await self._refresh()

    @rx.event
    def type_cost(self, source: str, value: str):
        if not isinstance(source, str) or source not in self.cost_drafts:  # only a row the page shows
            return
        self.cost_drafts[source] = typed_text(value, COST_LENGTH)
        self.saved[source] = False

    @rx.event
    def type_days(self, stage: str, value: str):
        if not isinstance(stage, str) or stage not in self.day_drafts:
            return
        self.day_drafts[stage] = typed_text(value, DAYS_LENGTH)
        self.saved[stage] = False

    @rx.event
    async def save_cost(self, source: str):
        if not isinstance(source, str) or source not in self.cost_drafts:
            return
        if not self.viewer_is_manager:
            self.errors[source] = "Only a manager can change costs."
            return
        typed, now, actor = self.cost_drafts.get(source, ""), now_utc(), await self._actor()
        try:
            row = await self._db(lambda s: set_source_cost(s, source=source, typed=typed, now=now, actor=actor))
        except InvalidInput as error:
            self.errors[source] = str(error)
            self.saved[source] = False
            return
        self.costs = [row if r.source == source else r for r in self.costs]
        self.cost_drafts[source] = row.cost
        self.errors[source] = ""
        self.saved[source] = True

    @rx.event
    async def save_days(self, stage: str):
        if not isinstance(stage, str) or stage not in self.day_drafts:
            return
        if not self.viewer_is_manager:
            self.errors[stage] = "Only a manager can change stage limits."
            return
        typed, actor = self.day_drafts.get(stage, ""), await self._actor()
        try:
            row = await self._db(lambda s: set_stagnation_days(s, stage=stage, typed=typed, actor=actor))
        except InvalidInput as error:
            self.errors[stage] = str(error)
            self.saved[stage] = False
            return
        self.rules = [row if r.stage == stage else r for r in self.rules]
        self.day_drafts[stage] = row.days
        self.errors[stage] = ""
        self.saved[stage] = True

    @rx.event
    def type_reason(self, value: str):
        self.new_reason, self.reason_error = typed_text(value, 120), ""

    @rx.event
    async def add_lost_reason(self):
        label, actor = self.new_reason, await self._actor()
        try:
            await self._db(lambda s: add_reason(s, label=label, actor=actor))
        except ServiceError as error:
            self.reason_error = str(error)
            return
        self.lost_reasons, self.new_reason, self.reason_error = await self._db(reason_labels), "", ""

    @rx.event
    async def remove_lost_reason(self, label: str):
        if not isinstance(label, str) or label not in self.lost_reasons:
            return
        actor = await self._actor()
        try:
            await self._db(lambda s: remove_reason(s, label=label, actor=actor))
        except ServiceError as error:
            self.reason_error = str(error)
            return
        self.lost_reasons, self.reason_error = await self._db(reason_labels), ""
