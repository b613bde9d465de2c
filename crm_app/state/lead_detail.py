"""The lead page: breakdown, timeline, logging an activity, editing, moving the stage."""

from __future__ import annotations

import dataclasses

import reflex as rx

from crm_app.domain import REP_LOGGED_KINDS, Play, Stage
from crm_app.scoring.next_action import NextAction
from crm_app.services.errors import InvalidInput, NotFound, ServiceError
from crm_app.services.follow_ups import FollowUpLine, lead_follow_ups, mark_follow_up_done, postpone_follow_up
from crm_app.services.queue import SNOOZE_CHOICES
from crm_app.services.lead_actions import claim_leads, return_to_pool
from crm_app.services.lead_detail import LeadDetail, LeadEdit, lead_detail, update_lead
from crm_app.services.leads import CONVERSATION_KINDS, log_activity, move_lead_to_stage
from crm_app.services.next_action import next_action_for
from crm_app.services.undo import undo_logged_activity, undo_stage_move
from crm_app.state.base import AppState, now_utc, picked, typed_text, whole_number
from crm_app.state.close_deal import CloseDealState
from crm_app.state.next_step import NextStepState
from crm_app.state.undo import TOO_LATE, issue_ticket, take_ticket, undo_toast

EDIT_FIELDS = [f.name for f in dataclasses.fields(LeadEdit)]
NO_PLAY = "none"  # the play select's "no play" (a select item cannot have an empty value)
KINDS = tuple(k.value for k in REP_LOGGED_KINDS)  # what the activity select offers
CONVERSATIONS = tuple(k.value for k in CONVERSATION_KINDS)  # the ones that can carry a request
PLAYS = (NO_PLAY, *(p.value for p in Play))


class LeadDetailState(AppState):
    lead: LeadDetail = LeadDetail()
    missing: str = ""
    loaded: bool = False  # a lead (or "not found") has arrived: until then, placeholders

    activity_kind: str = REP_LOGGED_KINDS[0].value
    activity_play: str = NO_PLAY
    # The next best action for an open lead (NextAction().play == "" for a closed one).
    next_action: NextAction = NextAction()
    activity_subject: str = ""
    activity_body: str = ""
    activity_error: str = ""
    activity_error_field: str = ""
    score_change: str = ""
    # What the prospect asked for in the conversation being logged (services.leads.ASKABLE_KINDS).
    asked_pricing: bool = False
    asked_demo: bool = False

    # The lead's open follow-ups, the most overdue first.
    follow_ups: list[FollowUpLine] = []

    edit_open: bool = False
    edit: dict[str, str] = {}
    edit_errors: dict[str, str] = {}
    _undo_tickets: dict[str, dict] = {}
    stage_error: str = ""

    def _lead_id(self) -> int | None:
        raw = str(self.router.url.path).rstrip("/").rsplit("/", 1)[-1]
        return int(raw) if raw.isdecimal() else None

    async def _reload(self) -> None:
        lead_id, now = self._lead_id(), now_utc()
        try:
            viewer = await self._actor()
            self.lead = await self._db(lambda s: lead_detail(s, lead_id, now, viewer)) if lead_id else LeadDetail()
            self.missing = "" if lead_id else "That is not a lead address."
        except NotFound as error:
            self.lead, self.missing = LeadDetail(), str(error)
        await self._load_next_action(lead_id, now)
        await self._load_follow_ups(lead_id, now)

    async def _load_follow_ups(self, lead_id: int | None, now) -> None:
        self.follow_ups = await self._db(lambda s: lead_follow_ups(s, lead_id, now)) if lead_id and not self.missing else []

    async def _load_next_action(self, lead_id: int | None, now) -> None:
        action = await self._db(lambda s: next_action_for(s, lead_id, now)) if lead_id and not self.missing else None
        self.next_action = action or NextAction()

    @rx.event
    async def load(self):
        if not await self._load_team():
            return self._sign_in_redirect()
        self.score_change = self.activity_error = self.stage_error = ""
        self.activity_body = self.activity_subject = ""
        self.activity_play = NO_PLAY
        self.edit_open = False
        await self._reload()
        self.loaded = True


    # Logging an activity -------------------------------------------------------------------
    @rx.event
    def set_activity_kind(self, value: str):
        self.activity_kind = picked(value, KINDS, self.activity_kind)

    @rx.event
    def set_activity_play(self, value: str):
        self.activity_play = picked(value, PLAYS, self.activity_play)
        if self.activity_error_field == "play":
            self.activity_error = self.activity_error_field = ""

    @rx.event
    def set_activity_subject(self, value: str):
        self.activity_subject = typed_text(value, 1000)

    @rx.event
    def set_activity_body(self, value: str):
        self.activity_body = typed_text(value, 30_000)

    @rx.event
    def set_asked_pricing(self, value: bool):
        self.asked_pricing = value is True

    @rx.event
    def set_asked_demo(self, value: bool):
        self.asked_demo = value is True

    @rx.var
    def can_ask(self) -> bool:
        """A call, a meeting or a reply can carry the prospect's request for pricing or a demo."""
        return self.activity_kind in CONVERSATIONS

    @rx.event
    async def submit_activity(self):
        lead_id, before = self.lead.id, self.lead.score
        kind, subject, body = self.activity_kind, self.activity_subject, self.activity_body
        asked = [k for k, on in (("pricing_request", self.asked_pricing), ("demo_request", self.asked_demo)) if on]
        asked = asked if kind in CONVERSATIONS else []
        play = None if self.activity_play == NO_PLAY else self.activity_play
        user_id, now = self.viewer_int(), now_utc()
        try:
            result = await self._db(lambda s: log_activity(
                s, lead_id=lead_id, kind=kind, now=now, user_id=user_id, subject=subject, body=body,
                play=play, asked=asked))
        except InvalidInput as error:
            self.activity_error, self.activity_error_field = str(error), error.field or ""
            return
        except ServiceError as error:
            self.activity_error, self.activity_error_field = str(error), ""
            return
        self.activity_error = self.activity_error_field = ""
        self.activity_body = self.activity_subject = ""
        self.activity_play = NO_PLAY
        self.asked_pricing = self.asked_demo = False
        self.score_change = (
            f"Logged. Score {before} → {result.score}" if result.score != before
            else f"Logged. Score stays {result.score}"
        )
        await self._reload()
        self._undo_tickets, token = issue_ticket(self._undo_tickets, {"undo": "log", "lead_id": lead_id,
                                                                      "logged_at": now})
        return [undo_toast("Activity logged", LeadDetailState.undo(token)),
                NextStepState.offer(lead_id, self.lead.name, "lead", kind)]

    # Follow-ups -----------------------------------------------------------------------------
    @rx.event
    def offer_next_step(self):
        return NextStepState.offer(self.lead.id, self.lead.name, "lead", "")

    @rx.event
    async def after_next_step(self):
        await self._reload()

    @rx.event
    async def after_close(self):
        self.stage_error = ""
        await self._reload()

    async def _follow_up(self, follow_up_id, work, done: str):
        picked_id, lead_id, now = whole_number(follow_up_id), self.lead.id, now_utc()
        if picked_id is None:
            return None
        try:
            await self._db(lambda s: work(s, picked_id, lead_id, now))
        except ServiceError as error:
            await self._reload()
            return rx.toast.error(str(error))
        await self._reload()
        return rx.toast.success(done)

    @rx.event
    async def follow_up_done(self, follow_up_id: int):
        return await self._follow_up(follow_up_id, lambda s, i, lead, now: mark_follow_up_done(
            s, follow_up_id=i, lead_id=lead, now=now), "Follow-up done")

    @rx.event
    async def follow_up_snooze(self, follow_up_id: int, choice: str):
        if not isinstance(choice, str) or choice not in SNOOZE_CHOICES:
            return None
        return await self._follow_up(follow_up_id, lambda s, i, lead, now: postpone_follow_up(
            s, follow_up_id=i, lead_id=lead, choice=choice, now=now), f"Postponed: {SNOOZE_CHOICES[choice]}")

    # Moving the stage ----------------------------------------------------------------------
    @rx.event
    async def move_to_stage(self, stage: str):
        stage = picked(stage, {s.value for s in Stage}, "")
        if not stage or stage == self.lead.stage:
            return None
        if Stage(stage).is_closed:  # Won and Lost ask for their details first
            return CloseDealState.ask([self.lead.id], stage, "lead")
        lead_id, version, user_id, now = self.lead.id, self.lead.version, self.viewer_int(), now_utc()
        from_stage = self.lead.stage
        try:
            moved = await self._db(lambda s: move_lead_to_stage(
                s, lead_id=lead_id, to_stage=stage, now=now, user_id=user_id, expected_version=version))
            self.stage_error = ""
        except ServiceError as error:
            self.stage_error = str(error)
        await self._reload()
        if not self.stage_error:
            self._undo_tickets, token = issue_ticket(self._undo_tickets, {
                "undo": "move", "lead_id": lead_id, "back_to": from_stage, "version": moved.version})
            return undo_toast(f"Moved to {Stage(stage).label}", LeadDetailState.undo(token))

    @rx.event
    async def undo(self, token: str):
        """The toast's Undo: a move back (a stage change of its own) or the logged activity taken back
        (recorded in the audit log)."""
        self._undo_tickets, undo = take_ticket(self._undo_tickets, token)
        if undo is None:
            return rx.toast.warning(TOO_LATE)
        lead_id, now = undo["lead_id"], now_utc()
        try:
            if undo["undo"] == "move":
                await self._db(lambda s: undo_stage_move(s, lead_id=lead_id, back_to=undo["back_to"],
                                                         expected_version=undo["version"], now=now))
                done = f"Undone: back in {Stage(undo['back_to']).label}"
            else:
                await self._db(lambda s: undo_logged_activity(s, lead_id=lead_id, logged_at=undo["logged_at"],
                                                              now=now))
                done, self.score_change = "Undone: the activity is removed", ""
        except ServiceError as error:
            await self._reload()
            return rx.toast.error("Not undone", description=str(error), duration=8000)
        await self._reload()
        return rx.toast.success(done)

    # Claiming from the pool and returning to it -------------------------------------------
    async def _own(self, action, done: str):
        lead_id, now = self.lead.id, now_utc()
        try:
            outcome = await self._db(lambda s: action(s, lead_ids=[lead_id], now=now))
        except ServiceError as error:
            return rx.toast.error(str(error))
        await self._reload()
        return rx.toast.success(done) if outcome.changed else rx.toast.warning(outcome.summary(done.split()[0]))

    @rx.event
    async def claim(self):
        return await self._own(claim_leads, "Claimed: the lead is yours")

    @rx.event
    async def return_to_pool(self):
        return await self._own(return_to_pool, "Returned to the unassigned pool")

    # Editing ------------------------------------------------------------------------------
    @rx.event
    def open_edit(self):
        self.edit = {name: str(getattr(self.lead, name)) for name in EDIT_FIELDS}
        self.edit_errors = {}
        self.edit_open = True

    @rx.event
    def close_edit(self):
        self.edit_open = False

    @rx.event
    def set_edit_open(self, value: bool):
        self.edit_open = value is True

    @rx.event
    def set_edit_field(self, name: str, value: str):
        if name not in EDIT_FIELDS:
            return
        self.edit = {**self.edit, name: typed_text(value, 2000)}
        if name in self.edit_errors:
            self.edit_errors = {k: v for k, v in self.edit_errors.items() if k != name}

    @rx.event
    async def save_edit(self):
        edit = LeadEdit(**{name: self.edit.get(name, "") for name in EDIT_FIELDS})
        lead_id, version, now = self.lead.id, self.lead.version, now_utc()
        try:
            actor_id = self.viewer_int()
            await self._db(lambda s: update_lead(s, lead_id=lead_id, edit=edit, expected_version=version, now=now,
                                                 actor_id=actor_id))
        except InvalidInput as error:  # every bad field at once, each under its input
            self.edit_errors = dict(error.errors) or {"form": str(error)}
            return
        except ServiceError as error:
            # Someone else saved first: show their version in the form, never resave ours over it.
            await self._reload()
            self.edit = {name: str(getattr(self.lead, name)) for name in EDIT_FIELDS}
            self.edit_errors = {"form": str(error)}
            return
        self.edit_open = False
        await self._reload()
        return rx.toast.success("Saved")
