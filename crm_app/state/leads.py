"""The ranked lead list: one page of leads at a time, filtered and sorted in SQL."""

from __future__ import annotations

import reflex as rx

from crm_app.db.queries import LeadFilter, LeadListRow, ranked_leads
from crm_app.settings import settings
from crm_app.state.base import AppState, run_db


class LeadsState(AppState):
    rows: list[LeadListRow] = []
    total: int = 0
    page: int = 0
    search: str = ""
    tier: str = "all"
    scope: str = "mine"  # mine | unassigned | team
    loading: bool = False

    @rx.var
    def page_count(self) -> int:
        return max(1, -(-self.total // settings.page_size))

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

    def _filter(self) -> LeadFilter:
        owner = {"mine": self.viewer_int(), "unassigned": 0, "team": None}[self.scope]
        return LeadFilter(
            owner_id=owner,
            tier=None if self.tier == "all" else self.tier,
            search=self.search or None,
        )

    async def _refresh(self) -> None:
        flt, offset = self._filter(), self.page * settings.page_size
        self.loading = True
        self.rows, self.total = await run_db(
            lambda s: ranked_leads(s, flt, limit=settings.page_size, offset=offset)
        )
        self.loading = False

    @rx.event
    async def load(self):
        await self._load_team()
        await self._refresh()

    @rx.event
    async def set_viewer(self, value: str):
        self.viewer_id = value
        self.page = 0
        await self._refresh()

    @rx.event
    async def set_search(self, value: str):
        self.search = value[:200]
        self.page = 0
        await self._refresh()

    @rx.event
    async def set_tier(self, value: str):
        self.tier = value
        self.page = 0
        await self._refresh()

    @rx.event
    async def set_scope(self, value: str | list[str]):
        self.scope = value if isinstance(value, str) else value[0]
        self.page = 0
        await self._refresh()

    @rx.event
    async def next_page(self):
        if self.has_next:
            self.page += 1
            await self._refresh()

    @rx.event
    async def previous_page(self):
        if self.page > 0:
            self.page -= 1
            await self._refresh()
