"""The leads table: one page of leads at a time, filtered, sorted and counted in SQL."""

from __future__ import annotations

import reflex as rx

from crm_app.api import EXPORT_PATH, EXPORT_PURPOSE
from crm_app.db.queries import LeadFilter, LeadListRow, ranked_leads
from crm_app.services import accounts
from crm_app.services.exporting import filter_to_dict
from crm_app.services.signed_links import sign_link
from crm_app.services.errors import NotSignedIn, ServiceError
from crm_app.services.leads import reassign_leads
from crm_app.settings import settings
from crm_app.state.base import SESSION_ENDED, AppState, now_utc, run_system_db

ALL = "all"


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
    bulk_message: str = ""

    @rx.var
    def page_label(self) -> str:
        if self.total == 0:
            return "No leads"
        first = self.page * settings.page_size + 1
        last = min(self.total, first + settings.page_size - 1)
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
        rows, total = await self._db(
            lambda s: ranked_leads(s, flt, limit=settings.page_size, offset=offset, sort=sort, with_total=count)
        )
        self.rows = rows
        if total is not None:
            self.total = total

    @rx.event
    async def load(self):
        if not await self._load_team():
            return self._sign_in_redirect()
        self.selected, self.bulk_message = [], ""
        await self._refresh(keep_page=True)

    @rx.event
    async def set_search(self, value: str):
        self.search = value[:200]
        await self._refresh()

    @rx.event
    async def set_tier(self, value: str):
        self.tier = value
        await self._refresh()

    @rx.event
    async def set_stage(self, value: str):
        self.stage = value
        await self._refresh()

    @rx.event
    async def set_source(self, value: str):
        self.source = value
        await self._refresh()

    @rx.event
    async def set_sort(self, value: str):
        self.sort = value
        await self._refresh()

    @rx.event
    async def set_scope(self, value: str | list[str]):
        self.scope = value if isinstance(value, str) else value[0]
        self.selected = []
        await self._refresh()

    @rx.event
    async def next_page(self):
        if self.has_next:
            self.page += 1
            await self._refresh(keep_page=True, recount=False)

    @rx.event
    async def previous_page(self):
        if self.page > 0:
            self.page -= 1
            await self._refresh(keep_page=True, recount=False)

    @rx.event
    async def export_csv(self):
        """Download exactly this list (filter, search, sort; all pages) as CSV. The file is streamed by
        a backend route (crm_app/api.py) through a short-lived signed link, not over the websocket;
        the link names the signed-in user, whose row-level security the export runs under."""
        now, user, token = now_utc(), await self._actor(), self.auth_token
        # The link is served only while this sign-in lasts (crm_app/api.py checks at download).
        session_id = await run_system_db(lambda s: accounts.live_session_id(s, token, now))
        if session_id is None:
            raise NotSignedIn(SESSION_ENDED)
        payload = {**filter_to_dict(self._filter(), self.sort), "viewer": user.id, "session": session_id}
        token = sign_link(EXPORT_PURPOSE, payload, now=now)
        return rx.download(url=f"{EXPORT_PATH}?token={token}", filename=f"leads-{now:%Y-%m-%d-%H%M}.csv")

    # Bulk reassign ---------------------------------------------------------------------------
    @rx.event
    def toggle_selected(self, lead_id: int):
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
        self.reassign_to = value

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
        self.selected, self.bulk_message = [], ""
        await self._refresh(keep_page=True)
        return rx.toast.success(f"Reassigned {count} lead{'s' if count != 1 else ''}")
