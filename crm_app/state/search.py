"""Search everywhere (Ctrl/Cmd-K on every page): leads and companies, paged in SQL, under the signed-in
user's row-level security (crm_app/services/search.py)."""

from __future__ import annotations

from urllib.parse import urlencode

import reflex as rx

from crm_app.services.search import LEADS_PER_PAGE, MIN_CHARACTERS, CompanyHit, LeadHit, search_everywhere
from crm_app.state.base import AppState, typed_text

MAX_LEADS_SHOWN = 80  # "More results" stops here: past it, the leads table's search is the place


class SearchState(AppState):
    search_open: bool = False
    query: str = ""
    lead_hits: list[LeadHit] = []
    company_hits: list[CompanyHit] = []
    more_leads: bool = False
    searched: str = ""  # the text the results are for ("" before the first search)
    active: int = 0  # the lead the arrow keys point at; Enter opens it

    @rx.var
    def hint(self) -> str:
        if len(self.query.strip()) < MIN_CHARACTERS:
            return f"Type at least {MIN_CHARACTERS} characters of a name, company or email."
        if self.searched and not self.lead_hits and not self.company_hits:
            return f"Nothing found for \u201c{self.searched}\u201d among the leads you can see."
        return ""

    @rx.event
    async def open_search(self):
        await self._actor()  # a signed-out browser goes to the sign-in page instead
        self.search_open, self.query, self.searched, self.active = True, "", "", 0
        self.lead_hits, self.company_hits, self.more_leads = [], [], False

    @rx.event
    def set_search_open(self, value: bool):
        self.search_open = value is True

    @rx.event
    async def set_query(self, value: str):
        self.query = typed_text(value, 200)
        typed = self.query.strip()
        if len(typed) < MIN_CHARACTERS:
            self.lead_hits, self.company_hits, self.more_leads, self.searched = [], [], False, ""
            return
        found = await self._db(lambda s: search_everywhere(s, typed))
        self.lead_hits, self.company_hits, self.more_leads = found.leads, found.companies, found.more_leads
        self.searched, self.active = typed, 0

    @rx.event
    async def more(self):
        """The next page of leads, added below (the companies stay)."""
        typed, offset = self.searched, len(self.lead_hits)
        if not typed or not self.more_leads or offset >= MAX_LEADS_SHOWN:
            return
        found = await self._db(lambda s: search_everywhere(s, typed, offset=offset, with_companies=False))
        shown = {hit.id for hit in self.lead_hits}
        self.lead_hits = [*self.lead_hits, *[hit for hit in found.leads if hit.id not in shown]]
        self.more_leads = found.more_leads and len(self.lead_hits) < MAX_LEADS_SHOWN

    @rx.event
    def key_down(self, key: str):
        """Arrows move through the leads found; Enter opens the one pointed at."""
        if key == "ArrowDown" and self.lead_hits:
            self.active = min(self.active + 1, len(self.lead_hits) - 1)
        elif key == "ArrowUp" and self.lead_hits:
            self.active = max(self.active - 1, 0)
        elif key == "Enter" and self.lead_hits:
            return self._open(self.lead_hits[min(self.active, len(self.lead_hits) - 1)].id)

    def _open(self, lead_id: object):
        if not any(hit.id == lead_id for hit in self.lead_hits):  # only a lead the search found
            return None
        self.search_open = False
        return rx.redirect(f"/leads/{lead_id}")

    @rx.event
    def open_lead(self, lead_id: int):
        return self._open(lead_id)

    @rx.event
    def open_company(self, name: str):
        """A company: the leads table searching for it, over every lead the user may see."""
        if not any(hit.name == name for hit in self.company_hits):
            return None
        self.search_open = False
        return rx.redirect("/leads?" + urlencode({"q": name, "scope": "team"}))


class ShortcutsState(AppState):
    """The "?" list of keyboard shortcuts."""

    shortcuts_open: bool = False

    @rx.event
    def set_shortcuts_open(self, value: bool):
        self.shortcuts_open = value is True
