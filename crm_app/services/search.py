"""Search everywhere (Ctrl/Cmd-K): leads by name, company or email, and the companies behind them.

Paged in SQL, through the same trigram lookup as the leads table's search (crm_lead_ids_matching,
migrations 0013, 0016 and 0029): under row-level security it returns only leads the user may see, so a
rep never finds another rep's lead, and it walks the trigram indexes instead of every visible row. Two
letters have no trigram: then the leads are walked best score first until the page is full.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, or_, select
from sqlmodel import Session

from crm_app.db.models import Lead, User
from crm_app.db.queries import money, search_condition, search_pattern
from crm_app.domain import Stage

MIN_CHARACTERS = 2
TRIGRAM = 3  # the shortest text a trigram index can look up
LEADS_PER_PAGE = 8
COMPANIES_SHOWN = 5


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
                      with_companies: bool = True) -> SearchResults:
    """One page of leads matching `typed` (best score first) and, with the first page, the companies
    whose name matches, with how many of the user's visible leads each has."""
    typed = (typed or "").strip()
    if len(typed) < MIN_CHARACTERS:
        return SearchResults()
    pattern = search_pattern(typed)
    # Two letters hold no trigram for an index to look up: every lead would be read to find them all.
    # The page needs only the best few, so the leads are walked by score (ix_leads_score) and the
    # walk stops when the page is full; row security applies as to any read.
    short = len(typed) < TRIGRAM
    matching = (or_(Lead.name.ilike(pattern), Lead.company.ilike(pattern), Lead.email.ilike(pattern)) if short
                else search_condition(typed))
    rows = session.execute(
        select(Lead.id, Lead.name, Lead.company, Lead.email, Lead.stage, Lead.deal_value,
               User.name.label("owner_name"))
        .outerjoin(User, User.id == Lead.owner_id)
        .where(matching)
        .order_by(Lead.score.desc(), Lead.id.desc())
        .offset(max(0, offset)).limit(limit + 1)  # one more than shown: is there another page?
    ).all()
    leads = [
        LeadHit(id=r.id, name=r.name, company=r.company or "", email=r.email or "", stage=Stage(r.stage).label,
                owner=r.owner_name or "Unassigned", value_label=money(r.deal_value),
                matched=_matched(typed, r.name, r.company, r.email))
        for r in rows[:limit]
    ]
    companies: list[CompanyHit] = []
    if with_companies:
        companies = [CompanyHit(name=name, leads=count) for name, count in session.execute(
            select(Lead.company, func.count())
            # The company's own match implies the lead's; a short text is not looked up by trigram.
            .where(*(() if short else (matching,)), Lead.company.ilike(pattern))
            .group_by(Lead.company)
            .order_by(func.count().desc(), Lead.company)
            .limit(COMPANIES_SHOWN)
        )]
    return SearchResults(leads=leads, companies=companies, more_leads=len(rows) > limit)
