"""The leads table: one page of leads at a time, filtered, sorted and counted in SQL."""

from __future__ import annotations

import dataclasses
import json
from urllib.parse import urlencode

import reflex as rx

from crm_app.api import EXPORT_PATH, EXPORT_PURPOSE
from crm_app.db.queries import SEARCH_COUNT_CAP, SORTS, LeadFilter, LeadListRow, money, ranked_leads
from crm_app.services.forecast import weighting
from crm_app.domain import Source, Stage, Tier
from crm_app.services import accounts
from crm_app.services.exporting import filter_to_dict
from crm_app.services.signed_links import sign_link
from crm_app.services.errors import Forbidden, InvalidInput, NotSignedIn, ServiceError, StaleLead
from crm_app.services.lead_actions import (
    INLINE_FIELDS,
    BulkOutcome,
    claim_leads,
    edit_inline,
    move_leads_to_stage,
    return_to_pool,
    snooze_leads,
)
from crm_app.services.leads import reassign_leads
from crm_app.services.queue import SNOOZE_CHOICES
from crm_app.settings import settings
from crm_app.state.close_deal import CloseDealState
from crm_app.state.base import (
    SESSION_ENDED,
    AppState,
    now_utc,
    picked,
    run_system_db,
    typed_text,
    whole_number,
)
from crm_app.state.new_lead import POOL, owner_choices, owner_text
from crm_app.services.undo import undo_stage_move, undo_stage_moves
from crm_app.state.undo import TOO_LATE, issue_ticket, take_ticket, undo_toast

ALL = "all"
SCOPES = ("mine", "unassigned", "team")
TIERS = (ALL, *(t.value for t in Tier))
STAGES = (ALL, *(s.value for s in Stage))
SOURCES = (ALL, *(s.value for s in Source))


# The list's address holds what it shows (shareable, bookmarkable): ?q=&scope=&tier=&stage=&source=&sort=&page=
# (page 1-based); a value at its default is left out.
URL_DEFAULTS = {"q": "", "scope": "mine", "tier": ALL, "stage": ALL, "source": ALL, "sort": "score", "page": "1"}
MAX_URL_PAGE = 100_000


def list_address(view: dict[str, str]) -> str:
    """The leads list's address for a view (URL_DEFAULTS' keys): values at their default left out."""
    query = urlencode({k: view[k] for k in URL_DEFAULTS if view.get(k, URL_DEFAULTS[k]) != URL_DEFAULTS[k]})
    return "/leads" + (f"?{query}" if query else "")


def view_from_query(params) -> dict[str, str] | None:
    """The view an address's query names (None when it names none of its keys). Anything a page could
    not have written (an unknown tier, a page past MAX_URL_PAGE, text with NUL) falls back to the default."""
    if not any(key in params for key in URL_DEFAULTS):
        return None
    get = lambda key: params.get(key, URL_DEFAULTS[key])  # noqa: E731
    page = get("page")
    return {
        "q": typed_text(get("q"), 200),
        "scope": picked(get("scope"), SCOPES, "mine"),
        "tier": picked(get("tier"), TIERS, ALL),
        "stage": picked(get("stage"), STAGES, ALL),
        "source": picked(get("source"), SOURCES, ALL),
        "sort": picked(get("sort"), SORTS, "score"),
        "page": page if isinstance(page, str) and page.isdecimal() and page[0] != "0"
        and int(page) <= MAX_URL_PAGE else "1",
    }


class LeadsState(AppState):
    rows: list[LeadListRow] = []
    total: int = 0
    page: int = 0
    search: str = ""
    tier: str = ALL
    stage: str = ALL
    source: str = ALL
    scope: str = "mine"  # mine | unassigned | team
    sort: str = "score"
    selected: list[int] = []
    reassign_to: str = ""
    bulk_message: str = ""  # why a bulk action was refused
    bulk_result: str = ""  # what the last bulk action did: how many changed, why others were skipped
    bulk_stage: str = ""
    # The row being edited in place (0: none), its draft and its errors by field.
    editing_id: int = 0
    row_edit: dict[str, str] = {}
    row_errors: dict[str, str] = {}
    loaded: bool = False  # the first page of rows has arrived (until then: placeholders, not "No leads")
    _undo_tickets: dict[str, dict] = {}

    @rx.var
    def owner_options(self) -> list[list[str]]:
        return owner_choices(self.viewer_id, self.viewer_role, self.users)

    @rx.var
    def page_label(self) -> str:
        if self.total == 0:
            return "No leads"
        first = self.page * settings.page_size + 1
        last = min(self.total, first + settings.page_size - 1)
        if self.search.strip() and self.total > SEARCH_COUNT_CAP:  # a search's count stops past the cap
            return f"{first:,}-{last:,} of {SEARCH_COUNT_CAP:,}+"
        return f"{first:,}-{last:,} of {self.total:,}"

    @rx.var
    def has_previous(self) -> bool:
        return self.page > 0

    @rx.var
    def has_next(self) -> bool:
        return (self.page + 1) * settings.page_size < self.total

    @rx.var
    def selected_count(self) -> int:
        return len(self.selected)

    @rx.var
    def all_on_page_selected(self) -> bool:
        return bool(self.rows) and all(r.id in self.selected for r in self.rows)

    def _filter(self) -> LeadFilter:
        owner = {"mine": self.viewer_int(), "unassigned": 0, "team": None}[self.scope]
        pick = lambda value: None if value == ALL else value  # noqa: E731
        return LeadFilter(owner_id=owner, tier=pick(self.tier), stage=pick(self.stage),
                          source=pick(self.source), search=self.search or None)

    async def _refresh(self, *, keep_page: bool = False, recount: bool = True) -> None:
        if not keep_page:
            self.page = 0
        flt, offset, sort = self._filter(), self.page * settings.page_size, self.sort
        # Turning a page keeps the filter, and so the count: only a new filter counts again.
        count = recount or self.total == 0
        now = now_utc()

        def load(s):
            found, matching = ranked_leads(s, flt, limit=settings.page_size, offset=offset, sort=sort,
                                           with_total=count)
            weights = weighting(s, now)
            for row in found:
                p = weights.probability(row.stage_key, row.score)
                row.weighted_label = "" if p is None else money(row.deal_value * p)
            return found, matching

        rows, total = await self._db(load)
        self.rows = rows
        if total is not None:
            self.total = total

    # The address -------------------------------------------------------------------------------
    def _view(self) -> dict[str, str]:
        return {"q": self.search, "scope": self.scope, "tier": self.tier, "stage": self.stage,
                "source": self.source, "sort": self.sort, "page": str(self.page + 1)}

    def _read_url(self) -> bool:
        """Take the filter, sort and page from the address; False when it names none of them (then
        the list keeps what it showed, and the address is written from it)."""
        view = view_from_query(self.router.url.query_parameters)
        if view is None:
            return False
        self.search, self.scope, self.tier, self.stage = view["q"], view["scope"], view["tier"], view["stage"]
        self.source, self.sort, self.page = view["source"], view["sort"], int(view["page"]) - 1
        return True

    def _write_url(self):
        """Put what the list shows in the address, without a page load or a history entry per keystroke."""
        target = json.dumps(list_address(self._view()))
        return rx.call_script(
            "if (window.location.pathname.replace(/\\/$/, '') === '/leads' && "
            f"window.location.pathname + window.location.search !== {target}) "
            f"window.history.replaceState(window.history.state, '', {target})")

    @rx.event
    async def load(self):
        if not await self._load_team():
            return self._sign_in_redirect()
        self.selected, self.bulk_message, self.bulk_result = [], "", ""
        self.editing_id, self.row_edit, self.row_errors = 0, {}, {}
        from_url = self._read_url()
        await self._refresh(keep_page=True)
        if from_url and self.rows == [] and self.page > 0:
            # A shared address past the last page (the list shrank since): its last page instead.
            self.page = max(0, (self.total - 1) // settings.page_size)
            await self._refresh(keep_page=True, recount=False)
        self.loaded = True
        return self._write_url()

    @rx.event
    async def set_search(self, value: str):
        self.search = typed_text(value, 200)
        await self._refresh()
        return self._write_url()

    @rx.event
    async def set_tier(self, value: str):
        self.tier = picked(value, TIERS, self.tier)
        await self._refresh()
        return self._write_url()

    @rx.event
    async def set_stage(self, value: str):
        self.stage = picked(value, STAGES, self.stage)
        await self._refresh()
        return self._write_url()

    @rx.event
    async def set_source(self, value: str):
        self.source = picked(value, SOURCES, self.source)
        await self._refresh()
        return self._write_url()

    @rx.event
    async def set_sort(self, value: str):
        self.sort = picked(value, SORTS, self.sort)
        await self._refresh()
        return self._write_url()

    @rx.event
    async def set_scope(self, value: str | list[str]):
        self.scope = picked(value, SCOPES, self.scope)
        self.selected = []
        await self._refresh()
        return self._write_url()

    @rx.event
    async def next_page(self):
        if self.has_next:
            self.page += 1
            await self._refresh(keep_page=True, recount=False)
        return self._write_url()

    @rx.event
    async def previous_page(self):
        if self.page > 0:
            self.page -= 1
            await self._refresh(keep_page=True, recount=False)
        return self._write_url()

    async def _export_link(self, flt: LeadFilter, name: str):
        """A download of `flt`'s leads through a short-lived signed link, not over the websocket. The link
        names the signed-in user, whose row-level security the export runs under, and is served only
        while this sign-in lasts (crm_app/api.py checks at download)."""
        now, user, token = now_utc(), await self._actor(), self._session_token()
        session_id = await run_system_db(lambda s: accounts.live_session_id(s, token, now))
        if session_id is None:
            raise NotSignedIn(SESSION_ENDED)
        payload = {**filter_to_dict(flt, self.sort), "viewer": user.id, "session": session_id}
        link = sign_link(EXPORT_PURPOSE, payload, now=now)
        return rx.download(url=f"{EXPORT_PATH}?token={link}", filename=f"{name}-{now:%Y-%m-%d-%H%M}.csv")

    @rx.event
    async def export_csv(self):
        """Download exactly this list (filter, search, sort; all pages) as CSV."""
        return await self._export_link(self._filter(), "leads")

    # Bulk reassign ---------------------------------------------------------------------------
    @rx.event
    def toggle_selected(self, lead_id: int):
        lead_id = whole_number(lead_id)
        if not any(r.id == lead_id for r in self.rows):
            return  # only a lead this page shows can be picked
        self.selected = [i for i in self.selected if i != lead_id] if lead_id in self.selected \
            else [*self.selected, lead_id]

    @rx.event
    def toggle_page(self, _checked: bool):
        on_page = [r.id for r in self.rows]
        if self.all_on_page_selected:
            self.selected = [i for i in self.selected if i not in on_page]
        else:
            self.selected = list(dict.fromkeys([*self.selected, *on_page]))

    @rx.event
    def set_reassign_to(self, value: str):
        self.reassign_to = typed_text(value, 12)

    @rx.event
    async def reassign_selected(self):
        if not self.viewer_is_manager:
            self.bulk_message = "Only a manager can reassign leads."
            return
        ids, now = list(self.selected), now_utc()
        if self.reassign_to not in ("none", *(str(u.id) for u in self.users)):
            self.bulk_message = "Pick who gets the leads."
            return
        owner = None if self.reassign_to == "none" else int(self.reassign_to)
        actor = await self._actor()
        try:
            count = await self._db(lambda s: reassign_leads(s, lead_ids=ids, owner_id=owner, now=now, actor=actor))
        except ServiceError as error:
            self.bulk_message = str(error)
            return
        self.selected, self.bulk_message, self.bulk_result = [], "", ""
        self.editing_id, self.row_edit, self.row_errors = 0, {}, {}
        await self._refresh(keep_page=True)
        return rx.toast.success(f"Reassigned {count} lead{'s' if count != 1 else ''}")

    # A rep's actions on the selection (and on one row) --------------------------------------
    async def _bulk(self, action, done: str, lead_ids: list[int] | None = None, undoable: bool = False):
        """Run a set-based action (services/lead_actions.py) on the selection as the signed-in user
        and say how many changed and why the rest were skipped; `undoable`: a bulk move, whose toast
        offers Undo (every moved lead back to the stage it left)."""
        ids, now = list(self.selected if lead_ids is None else lead_ids), now_utc()
        try:
            outcome: BulkOutcome = await self._db(lambda s: action(s, lead_ids=ids, now=now))
        except ServiceError as error:
            self.bulk_message, self.bulk_result = str(error), ""
            return None
        summary = outcome.summary(done)
        self.bulk_message = ""
        self.bulk_result = summary if lead_ids is None else ""
        if lead_ids is None:
            self.selected = []
        await self._refresh(keep_page=True)
        if undoable and outcome.moved:
            self._undo_tickets, token = issue_ticket(self._undo_tickets, {"moves": list(outcome.moved)})
            return undo_toast(summary, LeadsState.undo_bulk_move(token))
        return rx.toast.success(summary) if outcome.changed else rx.toast.warning(summary)

    @rx.event
    async def undo_bulk_move(self, token: str):
        """The toast's Undo after a bulk move: each lead back to the stage it left, except those
        someone changed since (they keep that change, and the toast says how many)."""
        self._undo_tickets, undo = take_ticket(self._undo_tickets, token)
        if undo is None or "moves" not in undo:
            return rx.toast.warning(TOO_LATE)
        moves, now = [tuple(m) for m in undo["moves"]], now_utc()
        try:
            outcome: BulkOutcome = await self._db(lambda s: undo_stage_moves(s, moves=moves, now=now))
        except ServiceError as error:
            await self._refresh(keep_page=True)
            return rx.toast.error("Not undone", description=str(error), duration=8000)
        self.bulk_result = outcome.summary("Undone: moved back")
        await self._refresh(keep_page=True)
        return rx.toast.success(self.bulk_result) if outcome.changed else rx.toast.warning(self.bulk_result)

    @rx.event
    async def claim_selected(self):
        return await self._bulk(claim_leads, "Claimed")

    @rx.event
    async def return_selected(self):
        return await self._bulk(return_to_pool, "Returned to the pool:")

    @rx.event
    async def claim_one(self, lead_id: int):
        lead_id = whole_number(lead_id)
        return await self._bulk(claim_leads, "Claimed", [lead_id]) if lead_id else None

    @rx.event
    async def return_one(self, lead_id: int):
        lead_id = whole_number(lead_id)
        return await self._bulk(return_to_pool, "Returned to the pool:", [lead_id]) if lead_id else None

    @rx.event
    def set_bulk_stage(self, value: str):
        self.bulk_stage = picked(value, STAGES[1:], "")

    @rx.event
    async def move_selected(self):
        stage = self.bulk_stage
        if stage not in {s.value for s in Stage}:
            self.bulk_message = "Pick the stage to move them to."
            return None
        # Lost asks why (one reason for all of them), Won the day they closed (each keeps its value).
        if stage in (Stage.LOST.value, Stage.WON.value) and self.selected:
            self.bulk_message = ""
            return CloseDealState.ask(list(self.selected), stage, "leads")
        return await self._bulk(lambda s, **kw: move_leads_to_stage(s, to_stage=stage, **kw),
                                f"Moved to {Stage(stage).label}:", undoable=True)

    @rx.event
    async def snooze_selected(self, choice: str):
        choice = picked(choice, SNOOZE_CHOICES, "")
        if not choice:
            self.bulk_message = "Pick how long to snooze them."
            return None
        return await self._bulk(lambda s, **kw: snooze_leads(s, choice=choice, **kw),
                                f"Snoozed ({SNOOZE_CHOICES[choice].lower()}):")

    @rx.event
    async def export_selected(self):
        """The same signed export, restricted to the selected rows (still under row-level security)."""
        if not self.selected:
            self.bulk_message = "Select at least one lead."
            return None
        return await self._export_link(dataclasses.replace(self._filter(), ids=tuple(self.selected[:500])),
                                       "leads-selected")

    # Inline edit of stage, value and owner ---------------------------------------------------
    def _edit_row(self, lead_id: int) -> None:
        """Put the row's stored stage, value and owner in the draft (0 if it left this page)."""
        row = next((r for r in self.rows if r.id == lead_id), None)
        if row is None:
            self.editing_id, self.row_edit = 0, {}
            return
        stage = next(s.value for s in Stage if s.label == row.stage)
        self.editing_id = lead_id
        self.row_edit = {"stage": stage, "deal_value": f"{row.deal_value:.2f}",
                         "owner_id": str(row.owner_id) if row.owner_id else POOL}

    @rx.event
    def start_edit(self, lead_id: int):
        self.row_errors = {}
        self._edit_row(whole_number(lead_id))

    @rx.event
    def cancel_edit(self):
        self.editing_id, self.row_edit, self.row_errors = 0, {}, {}

    @rx.event
    def set_row_field(self, name: str, value: str):
        if isinstance(name, str) and name in INLINE_FIELDS:
            self.row_edit = {**self.row_edit, name: typed_text(value, 20)}
            self.row_errors = {k: v for k, v in self.row_errors.items() if k not in (name, "form")}

    @rx.event
    async def save_row(self):
        row = next((r for r in self.rows if r.id == self.editing_id), None)
        if row is None:
            return self.cancel_edit()
        changes = {**self.row_edit, "owner_id": owner_text(self.row_edit.get("owner_id", POOL))}
        lead_id, version, now = row.id, row.version, now_utc()
        from_stage = next(s.value for s in Stage if s.label == row.stage)
        # Won and Lost ask for their details in the closing dialog: the rest is saved here first.
        closing = changes.get("stage") if changes.get("stage") in (Stage.WON.value, Stage.LOST.value) else None
        if closing and Stage(closing).label != row.stage:
            changes.pop("stage")
        else:
            closing = None
        try:
            saved = await self._db(lambda s: edit_inline(s, lead_id=lead_id, expected_version=version, changes=changes,
                                                 now=now))
        except InvalidInput as error:
            self.row_errors = {error.field if error.field in INLINE_FIELDS else "form": str(error)}
            return None
        except StaleLead as error:
            # Someone else saved first: show their version, never resave ours over it.
            await self._refresh(keep_page=True, recount=False)
            self._edit_row(lead_id)
            self.row_errors = {"form": str(error)}
            return None
        except Forbidden as error:  # the only refusal an inline edit meets: giving the lead to someone else
            self.row_errors = {"owner_id": str(error)}
            return None
        except ServiceError as error:
            self.row_errors = {"form": str(error)}
            return None
        self.editing_id, self.row_edit, self.row_errors = 0, {}, {}
        await self._refresh(keep_page=True, recount=False)
        if closing:
            return CloseDealState.ask([lead_id], closing, "leads")
        if saved.stage != from_stage:
            # The stage changed: its Undo moves the lead back (a value or owner change stays as saved).
            self._undo_tickets, token = issue_ticket(self._undo_tickets, {
                "lead_id": lead_id, "back_to": from_stage, "version": saved.version})
            return undo_toast(f"Saved {row.name}: moved to {Stage(saved.stage).label}", LeadsState.undo_move(token))
        return rx.toast.success(f"Saved {row.name}")

    @rx.event
    async def undo_move(self, token: str):
        """The toast's Undo after a stage change in the table: back to the stage it left."""
        self._undo_tickets, undo = take_ticket(self._undo_tickets, token)
        if undo is None:
            return rx.toast.warning(TOO_LATE)
        lead_id, back_to, version, now = undo["lead_id"], undo["back_to"], undo["version"], now_utc()
        try:
            await self._db(lambda s: undo_stage_move(s, lead_id=lead_id, back_to=back_to,
                                                     expected_version=version, now=now))
        except ServiceError as error:
            await self._refresh(keep_page=True, recount=False)
            return rx.toast.error("Not undone", description=str(error), duration=8000)
        await self._refresh(keep_page=True)
        return rx.toast.success(f"Undone: back in {Stage(back_to).label}")

    @rx.event
    async def after_close(self):
        """Deals were marked Won or Lost through the closing dialog."""
        self.selected, self.bulk_stage = [], ""
        await self._refresh(keep_page=True)
