"""Search everywhere (Ctrl/Cmd-K): leads by name, company or email, and the companies behind them.

Paged in SQL, through the same trigram lookup as the leads table's search (crm_lead_ids_matching,
migrations 0013 and 0016): under row-level security it returns only leads the user may see, so a rep
never finds another rep's lead, and it walks the trigram indexes instead of every visible row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlmodel import Session

from crm_app.db.models import Lead, User
from crm_app.db.queries import money, search_condition, search_pattern
from crm_app.domain import Stage

MIN_CHARACTERS = 2
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
    matching = search_condition(typed)
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
            .where(matching, Lead.company.ilike(search_pattern(typed)))
            .group_by(Lead.company)
            .order_by(func.count().desc(), Lead.company)
            .limit(COMPANIES_SHOWN)
        )]
    return SearchResults(leads=leads, companies=companies, more_leads=len(rows) > limit)
