"""The dashboard: the viewer's action queue and pipeline health, and the one-click actions."""

from __future__ import annotations

import functools
import json
import time
from urllib.parse import urlencode

import reflex as rx

from crm_app.charts import new_leads_per_week
from crm_app.domain import ActivityKind
from crm_app.services.errors import ServiceError
from crm_app.services.forecast_snapshots import target_warning
from crm_app.services.pipeline_health import StageHealth, WeekCount, pipeline_health
from crm_app.services.queue import (
    FOLLOW_UP_KINDS,
    GROUPS,
    PAGE_SIZE,
    QueueGroup,
    QueueItem,
    action_queue,
    count_label,
    dismiss_item,
    snooze_lead,
    snooze_time,
    work_item,
)
from crm_app.db.models import FollowUp, Lead
from crm_app.services.undo import reopen_follow_up, undo_logged_activity, undo_snooze
from crm_app.state.base import AppState, figure_data, now_utc, picked, typed_text, whole_number
from crm_app.state.undo import TOO_LATE, issue_ticket, take_ticket, undo_toast
from crm_app.state.next_step import NextStepState

ALL_GROUPS = "all"
TARGET_CHECK_SECONDS = 300
QUEUE_TOP = "do-next"  # the queue card's element id
LOG_KINDS = {
    "call": ActivityKind.CALL,
    "email": ActivityKind.EMAIL_SENT,
    "meeting": ActivityKind.MEETING,
    "note": ActivityKind.NOTE,
}
FOLLOW_UP_DAYS = ("none", "1", "2", "3", "7", "14")  # what the log dialog's select offers
LOG_TITLES = {"call": "Log a call", "email": "Log an email", "meeting": "Log a meeting", "note": "Add a note"}


@functools.lru_cache(maxsize=256)
def _new_leads_chart_json(weeks: tuple[tuple[str, int, bool], ...], baseline: float) -> str:
    """The new-leads chart's figure as JSON text (a fresh dict is parsed from it for each tab, so no
    two tabs share a mutable value); keyed by the data, not by tab: at most 256 kept (a few KB each)."""
    return json.dumps(figure_data(new_leads_per_week([WeekCount(*w) for w in weeks], baseline)))


class DashboardState(AppState):
    items: list[QueueItem] = []
    groups: list[QueueGroup] = []  # every group with how many leads wait in it
    queue_total: int = 0  # leads waiting, all groups
    queue_matching: int = 0  # leads in the group shown
    # The counts stopped at the cap (services/queue.COUNT_CAP): more wait than they say ("99+").
    queue_total_capped: bool = False
    queue_matching_capped: bool = False
    queue_group: str = ALL_GROUPS  # "all" or a key of services.queue.GROUPS
    queue_offset: int = 0  # where the page shown starts
    owner_filter: str = "all"  # managers: "all" or a rep's id
    loaded: bool = False
    _read_at: float = 0.0  # time.time() when the queue was last read (live updates)

    stages: list[StageHealth] = []
    weeks: list[WeekCount] = []
    baseline: float = 0.0
    open_count: int = 0
    open_value_label: str = "$0"
    hot: int = 0
    warm: int = 0
    cold: int = 0
    stuck: int = 0
    drying_up: bool = False
    drying_message: str = ""
    weighted_value_label: str = "$0"
    weighting_label: str = ""
    # A rep's forecast below their monthly target (services/forecast_snapshots.target_warning), re-checked at most
    # every TARGET_CHECK_SECONDS: the forecast costs more than the queue.
    target_warning: str = ""
    _target_checked_at: float = 0.0
    _target_checked_for: str = ""

    # An action on one item failed: its message, shown on that item.
    error_lead_id: int = 0
    error_message: str = ""

    # The "log an activity" dialog.
    log_open: bool = False
    log_lead_id: int = 0
    log_lead_name: str = ""
    log_version: int = 0
    log_follow_up_id: int = 0
    log_kind: str = "call"
    log_body: str = ""
    log_follow_up_days: str = "none"
    log_follow_up_note: str = ""
    log_error: str = ""
    log_saving: bool = False
    _undo_tickets: dict[str, dict] = {}

    @rx.var
    def owner_options(self) -> list[list[str]]:
        return [["all", "Whole team"]] + [[str(u.id), u.name] for u in self.users if u.role == "rep"]

    @rx.var
    def queue_caption(self) -> str:
        if self.queue_total == 1 and not self.queue_total_capped:
            return "1 lead needs you"
        return f"{count_label(self.queue_total, self.queue_total_capped)} leads need you"

    @rx.var
    def queue_total_label(self) -> str:
        return count_label(self.queue_total, self.queue_total_capped)

    @rx.var
    def page_label(self) -> str:
        """"26–50 of 143" under the list; empty when one page holds it all."""
        if (self.queue_matching <= PAGE_SIZE and not self.queue_matching_capped) or not self.items:
            return ""
        first, last = self.queue_offset + 1, self.queue_offset + len(self.items)
        # Past a capped count: "101–125 of 125+".
        of = count_label(max(self.queue_matching, last), self.queue_matching_capped)
        return f"{first:,}–{last:,} of {of}"

    @rx.var
    def has_previous_page(self) -> bool:
        return self.queue_offset > 0

    @rx.var
    def has_next_page(self) -> bool:
        return self._more_after_this_page()

    def _more_after_this_page(self) -> bool:
        # Past a capped count, a full page may have more after it.
        if self.queue_matching_capped:
            return len(self.items) == PAGE_SIZE
        return self.queue_offset + PAGE_SIZE < self.queue_matching

    @rx.var
    def new_leads_chart(self) -> dict:
        # JSON data, not the go.Figure: the cached value is part of the tab's pickled state
        # (state/base.figure_data). Reflex computes it for every tab that opens, on any page (the
        # whole state tree's first update), and Plotly's figure building cost ~100 ms of CPU each:
        # one figure per distinct set of weeks, kept in a bounded memo.
        return json.loads(_new_leads_chart_json(tuple((w.label, w.count, w.current) for w in self.weeks),
                                                float(self.baseline)))

    @rx.var
    def has_new_leads(self) -> bool:
        return any(w.count for w in self.weeks)

    @rx.var
    def baseline_label(self) -> str:
        return f"{self.baseline:.1f}"

    @rx.var
    def log_title(self) -> str:
        return LOG_TITLES.get(self.log_kind, "Log activity")

    def _owner(self) -> int | None:
        if self.viewer_is_manager:
            return int(self.owner_filter) if self.owner_filter.isdecimal() else None
        return self.viewer_int()

    async def _refresh(self) -> None:
        self._read_at = time.time()  # before reading: a change committed meanwhile shows next tick
        owner, now = self._owner(), now_utc()
        if owner is None and not self.viewer_is_manager:
            self.items, self.queue_total = [], 0  # no viewer yet
            return

        group = self.queue_group if self.queue_group in GROUPS else None
        offset = self.queue_offset

        def load(session):
            page = action_queue(session, owner_id=owner, now=now, limit=PAGE_SIZE, offset=offset, group=group)
            if not page.items and offset:
                # The page emptied (items done, or moved to another group): show the last one left.
                last = max(0, (page.matching - 1) // PAGE_SIZE * PAGE_SIZE)
                page = action_queue(session, owner_id=owner, now=now, limit=PAGE_SIZE, offset=last,
                                    group=group)
            return page, pipeline_health(session, owner_id=owner, now=now)

        page, health = await self._db(load)
        self.items, self.groups, self.queue_offset = page.items, page.groups, page.offset
        self.queue_total, self.queue_matching = page.total, page.matching
        self.queue_total_capped, self.queue_matching_capped = page.total_capped, page.capped
        self.stages, self.weeks, self.baseline = health.stages, health.weeks, health.baseline
        self.open_count, self.open_value_label = health.open_count, health.open_value_label
        self.hot, self.warm, self.cold, self.stuck = health.hot, health.warm, health.cold, health.stuck
        self.drying_up, self.drying_message = health.drying_up, health.drying_message
        self.weighted_value_label, self.weighting_label = health.weighted_value_label, health.weighting_label
        await self._check_target(now)
        self.loaded = True

    async def _check_target(self, now) -> None:
        """Warn a rep whose forecast for this month is below their target."""
        rep = self.viewer_int()
        if self.viewer_is_manager or rep is None:
            self.target_warning = ""
            return
        if self._target_checked_for == self.viewer_id and time.time() - self._target_checked_at < TARGET_CHECK_SECONDS:
            return
        self.target_warning = await self._db(lambda s: target_warning(s, owner_id=rep, now=now))
        self._target_checked_at, self._target_checked_for = time.time(), self.viewer_id

    def _item(self, lead_id: int) -> QueueItem | None:
        lead_id = whole_number(lead_id)
        return next((i for i in self.items if i.lead_id == lead_id), None)

    # The address: the group shown and (managers) whose queue, so a shared or reloaded Today keeps them.
    def _read_url(self) -> None:
        """Take the group and owner from the address when it names them (else keep what was shown).
        Anything the page could not have written falls back to the whole queue."""
        params = self.router.url.query_parameters
        if "group" not in params and "owner" not in params:
            return
        self.queue_group = picked(params.get("group", ALL_GROUPS), {ALL_GROUPS, *GROUPS}, ALL_GROUPS)
        if self.viewer_is_manager:
            self.owner_filter = picked(params.get("owner", "all"), {key for key, _ in self.owner_options}, "all")
        self.queue_offset = 0

    def _write_url(self):
        """Put the group and owner shown in the address, without a page load or a history entry."""
        shown = {"group": self.queue_group, "owner": self.owner_filter if self.viewer_is_manager else "all"}
        query = urlencode({k: v for k, v in shown.items() if v != "all"})
        search = json.dumps(f"?{query}" if query else "")
        return rx.call_script(
            "if (['', '/dashboard'].includes(window.location.pathname.replace(/\\/$/, '')) && "
            f"window.location.search !== {search}) "
            f"window.history.replaceState(window.history.state, '', window.location.pathname + {search})")

    @rx.event
    async def load(self):
        if not await self._load_team():
            return self._sign_in_redirect()
        self.error_lead_id, self.error_message = 0, ""
        self._read_url()
        await self._refresh()
        return self._write_url()

    @rx.event
    async def refresh_if_changed(self):
        """Every few seconds while the page is open: reload when leads it shows have changed
        (another rep, the REST API, the sweep); otherwise nothing is sent."""
        if self.loaded and not self.log_open and await self._news_since(self._read_at):
            await self._refresh()

    @rx.event
    async def set_owner_filter(self, value: str):
        self.owner_filter = picked(value, {key for key, _ in self.owner_options}, self.owner_filter)
        self.queue_offset = 0
        await self._refresh()
        return self._write_url()

    @rx.event
    async def show_group(self, group: str):
        """Show one group of the queue ("all" for every group), from its first page."""
        self.queue_group = picked(group, GROUPS, ALL_GROUPS)
        self.queue_offset = 0
        await self._refresh()
        return self._write_url()

    @rx.event
    async def next_page(self):
        if self._more_after_this_page():
            self.queue_offset += PAGE_SIZE
            await self._refresh()
            return rx.scroll_to(QUEUE_TOP)  # the pager is at the bottom: show the new page from its top

    @rx.event
    async def previous_page(self):
        if self.queue_offset > 0:
            self.queue_offset = max(0, self.queue_offset - PAGE_SIZE)
            await self._refresh()
            return rx.scroll_to(QUEUE_TOP)

    # --- Snooze and done ------------------------------------------------------------------

    async def _act(self, lead_id: int, work):
        """Run `work`; its result, or None when refused (the reason shows on the item)."""
        self.error_lead_id, self.error_message = 0, ""
        result = None
        try:
            result = await self._db(work)
        except ServiceError as error:
            self.error_lead_id, self.error_message = lead_id, str(error)
        await self._refresh()
        return result

    def _undo_offer(self, message: str, undo: dict):
        self._undo_tickets, token = issue_ticket(self._undo_tickets, undo)
        return undo_toast(message, DashboardState.undo(token))

    @rx.event
    async def undo(self, token: str):
        """The toast's Undo for a snooze, a "done" or a log: a reverse change with its own history."""
        self._undo_tickets, undo = take_ticket(self._undo_tickets, token)
        if undo is None:
            return rx.toast.warning(TOO_LATE)
        lead_id, kind, now = undo["lead_id"], undo["undo"], now_utc()
        if kind == "snooze":
            work = lambda s: undo_snooze(  # noqa: E731
                s, lead_id=lead_id, snoozed_until=undo["snoozed_until"], expected_version=undo["version"],
                now=now, follow_up_id=undo["follow_up_id"], follow_up_due=undo["follow_up_due"])
        elif kind == "reopen":
            work = lambda s: reopen_follow_up(s, follow_up_id=undo["follow_up_id"], lead_id=lead_id, now=now)  # noqa: E731
        else:
            work = lambda s: undo_logged_activity(s, lead_id=lead_id, logged_at=undo["logged_at"], now=now)  # noqa: E731
        try:
            await self._db(work)
        except ServiceError as error:
            await self._refresh()
            return rx.toast.error("Not undone", description=str(error), duration=8000)
        await self._refresh()
        return rx.toast.success("Undone")

    @rx.event
    async def snooze(self, lead_id: int, choice: str):
        item = self._item(lead_id)
        if item is None:
            return
        lead_id = item.lead_id
        now = now_utc()
        try:
            until = snooze_time(typed_text(choice, 20), now)
        except ServiceError as error:
            self.error_lead_id, self.error_message = lead_id, str(error)
            return
        follow_up_id = item.follow_up_id or None

        def snooze(session):
            # What the snooze changes, as it was: the Undo puts it back.
            before = session.get(Lead, lead_id).snoozed_until if session.get(Lead, lead_id) else None
            follow_up = session.get(FollowUp, follow_up_id) if follow_up_id else None
            due = follow_up.due_at if follow_up is not None else None
            lead = snooze_lead(session, lead_id=lead_id, until=until, now=now, follow_up_id=follow_up_id,
                               expected_version=item.version)
            return before, due, lead.version

        done = await self._act(lead_id, snooze)
        if done is not None:
            before, due, version = done
            return self._undo_offer(f"Snoozed {item.name}", {
                "undo": "snooze", "lead_id": lead_id, "snoozed_until": before, "version": version,
                "follow_up_id": follow_up_id, "follow_up_due": due})

    @rx.event
    async def mark_done(self, lead_id: int):
        item = self._item(lead_id)
        if item is None:
            return
        lead_id = item.lead_id
        now = now_utc()
        # Done on a follow-up item completes the follow-up; on any other item it hides the lead until
        # the prospect's next move (a follow-up listed with it is a promise, not done by a click).
        follow_up_id = item.follow_up_id if item.kind in FOLLOW_UP_KINDS else 0

        def dismiss(session):
            before = session.get(Lead, lead_id).snoozed_until if session.get(Lead, lead_id) else None
            dismiss_item(session, lead_id=lead_id, now=now, follow_up_id=follow_up_id or None,
                         expected_version=item.version)
            return before, session.get(Lead, lead_id).version

        done = await self._act(lead_id, dismiss)
        if done is None:
            return None
        if follow_up_id:
            return self._undo_offer(f"Done: {item.name}", {"undo": "reopen", "lead_id": lead_id,
                                                             "follow_up_id": follow_up_id})
        before, version = done
        return self._undo_offer(f"Done: {item.name}", {
            "undo": "snooze", "lead_id": lead_id, "snoozed_until": before, "version": version,
            "follow_up_id": None, "follow_up_due": None})

    # --- The log dialog ---------------------------------------------------------------------

    @rx.event
    def open_log(self, lead_id: int, kind: str):
        item = self._item(lead_id)
        if item is None or picked(kind, LOG_KINDS, "") == "":
            return
        self.log_lead_id, self.log_lead_name = item.lead_id, item.name
        self.log_version, self.log_follow_up_id = item.version, item.follow_up_id
        self.log_kind, self.log_body, self.log_error = kind, "", ""
        self.log_follow_up_days, self.log_follow_up_note = "none", ""
        self.log_open = True

    @rx.event
    def set_log_open(self, value: bool):
        self.log_open = value is True

    @rx.event
    def set_log_kind(self, value: str | list[str]):
        self.log_kind = picked(value, LOG_KINDS, self.log_kind)

    @rx.event
    def set_log_body(self, value: str):
        self.log_body = typed_text(value, 20_000)
        self.log_error = ""

    @rx.event
    def set_log_follow_up_days(self, value: str):
        self.log_follow_up_days = picked(value, FOLLOW_UP_DAYS, self.log_follow_up_days)

    @rx.event
    def set_log_follow_up_note(self, value: str):
        self.log_follow_up_note = typed_text(value, 500)

    @rx.event
    async def save_log(self):
        if self.log_saving:
            return
        lead_id, kind, body = self.log_lead_id, LOG_KINDS[self.log_kind], self.log_body
        version, follow_up_id, user_id = self.log_version, self.log_follow_up_id, self.viewer_int()
        days = int(self.log_follow_up_days) if self.log_follow_up_days.isdecimal() else None
        note, now = self.log_follow_up_note, now_utc()
        self.log_saving, self.log_error = True, ""
        yield
        try:
            await self._db(lambda s: work_item(
                s, lead_id=lead_id, kind=kind, now=now, user_id=user_id, body=body,
                follow_up_id=follow_up_id or None, follow_up_days=days, follow_up_note=note,
                expected_version=version))
        except ServiceError as error:
            self.log_error = str(error)
            # Someone changed the lead meanwhile: show its latest state, so Save works on a retry.
            await self._refresh()
            item = self._item(lead_id)
            if item is not None:
                self.log_version, self.log_follow_up_id = item.version, item.follow_up_id
            return
        finally:
            # Whatever happened, the button must work again.
            self.log_saving = False
        self.log_open = False
        await self._refresh()
        yield self._undo_offer(f"Logged for {self.log_lead_name}",
                               {"undo": "log", "lead_id": lead_id, "logged_at": now})
        if days is None:  # no follow-up chosen in the dialog: offer the next step
            yield NextStepState.offer(lead_id, self.log_lead_name, "today", str(kind))

    @rx.event
    async def after_next_step(self):
        await self._refresh()
