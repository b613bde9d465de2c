"""Search everywhere (Ctrl/Cmd-K): leads by name, company or email, and the companies behind them.

Paged in SQL, as the leads table's search (db.queries.ranked_leads): the trigram lookup
(crm_lead_ids_matching, migrations 0013, 0016, 0029 and 0032) returns only leads the user may see, so a
rep never finds another rep's lead. A page is looked for first among the FIRST_WALK best-scored leads
the user may see (a common word's page is there); only when they hold too few matches are the matches
counted: a word found in more leads than the search's count cap is ranked by walking the leads best
score first until the page is full, a rarer one's matches are read and ranked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select, text
from sqlalchemy.orm import aliased
from sqlmodel import Session

from crm_app.db.models import Lead, User
from crm_app.db.queries import SEARCH_COUNT_CAP, LeadFilter, matching_text, money, search_count, search_pattern
from crm_app.domain import Stage

MIN_CHARACTERS = 2
TRIGRAM = 3  # the shortest text a trigram index can look up
LEADS_PER_PAGE = 8
COMPANIES_SHOWN = 5
# A common word's page is among the best-scored leads: the search looks there first, in this many of the
# leads the user may see (best score first), and counts and ranks the matches only when they held too
# few for the page. At 1M leads "smith" (5.6% of the leads) was counted up to the cap on each search,
# ~100-180 ms for a rep under load, to find its page among the first few hundred leads anyway.
FIRST_WALK = 500


@dataclass
class LeadHit:
    id: int
    name: str
    company: str
    email: str
    stage: str  # its label
    owner: str
    value_label: str
    matched: str  # "name" | "company" | "email": what the typed text was found in


@dataclass
class CompanyHit:
    name: str
    leads: int


@dataclass
class SearchResults:
    leads: list[LeadHit] = field(default_factory=list)
    companies: list[CompanyHit] = field(default_factory=list)
    more_leads: bool = False  # another page of leads follows


def _matched(typed: str, name: str, company: str, email: str) -> str:
    needle = typed.strip().lower()
    for label, text in (("name", name), ("email", email), ("company", company)):
        if needle and needle in (text or "").lower():
            return label
    return "name"


def search_everywhere(session: Session, typed: str, *, offset: int = 0, limit: int = LEADS_PER_PAGE,
                      with_companies: bool = True, search_cap: int = SEARCH_COUNT_CAP) -> SearchResults:
    """One page of leads matching `typed` (best score first) and, with the first page, the companies
    whose name matches, with how many of the user's visible leads each has."""
    typed = (typed or "").strip()
    if len(typed) < MIN_CHARACTERS:
        return SearchResults()
    offset = max(0, offset)
    best = aliased(Lead, select(Lead).order_by(Lead.score.desc(), Lead.id.desc()).limit(FIRST_WALK).subquery())
    rows = _page(session, best, matching_text(typed, best), offset, limit)
    if len(rows) <= limit:  # fewer than a page and one more: rank all the matches
        rows = _page(session, Lead, _all_matches(session, typed, search_cap), offset, limit)
    leads = [
        LeadHit(id=r.id, name=r.name, company=r.company or "", email=r.email or "", stage=Stage(r.stage).label,
                owner=r.owner_name or "Unassigned", value_label=money(r.deal_value),
                matched=_matched(typed, r.name, r.company, r.email))
        for r in rows[:limit]
    ]
    companies: list[CompanyHit] = []
    if with_companies:
        # From the company trigram index alone (crm_companies_matching, migration 0033): the user's
        # visible leads per matching company, however many leads the word matches elsewhere.
        companies = [CompanyHit(name=name, leads=count) for name, count in session.execute(
            text("SELECT company, leads FROM crm_companies_matching(:pattern, :shown)"),
            {"pattern": search_pattern(typed), "shown": COMPANIES_SHOWN})]
    return SearchResults(leads=leads, companies=companies, more_leads=len(rows) > limit)


def _all_matches(session: Session, typed: str, search_cap: int):
    """Every lead matching `typed`, as a condition: a word found in few leads, those (found through the
    trigram indexes); one found in more, or two letters (no trigram to look up, and found in most
    leads), the text itself, tested on each lead of a walk best score first (ix_leads_score) until the
    page is full; row security applies as to any read."""
    rare = len(typed) >= TRIGRAM and search_count(session, LeadFilter(search=typed), search_cap) <= search_cap
    return (Lead.id.in_(select(func.crm_lead_ids_matching(search_pattern(typed), None, None, None, None,
                                                            search_cap + 1)))
            if rare else matching_text(typed))


def _page(session: Session, lead, matching, offset: int, limit: int) -> list:
    """The matching leads of `lead` (the table, or the best-scored leads walked first), best score first:
    `limit` from `offset`, and one more if there is one."""
    return session.execute(
        select(lead.id, lead.name, lead.company, lead.email, lead.stage, lead.deal_value,
               User.name.label("owner_name"))
        .outerjoin(User, User.id == lead.owner_id)
        .where(matching)
        .order_by(lead.score.desc(), lead.id.desc())
        .offset(offset).limit(limit + 1)  # one more than shown: is there another page?
    ).all()
