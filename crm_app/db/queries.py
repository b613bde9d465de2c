"""Read queries for the pages. Everything is filtered, sorted, paged and counted in SQL."""

from __future__ import annotations

from dataclasses import dataclass, field, replace


from sqlalchemy import func, or_, select, text
from sqlmodel import Session

from crm_app.db.models import Lead, User
from crm_app.domain import Source, Stage
from crm_app.scoring.engine import HOT_MIN, WARM_MIN


@dataclass
class ReasonRow:
    points: int
    text: str


@dataclass
class LeadListRow:
    id: int
    name: str
    company: str
    email: str
    source: str
    stage: str
    owner: str
    deal_value: float
    value_label: str
    score: int
    tier: str
    reasons: list[ReasonRow] = field(default_factory=list)
    version: int = 1
    owner_id: int = 0  # 0: the unassigned pool
    stage_key: str = ""  # the stage's value ("proposal"); `stage` is its label
    weighted_label: str = ""  # open leads: value x P(win), set by the page (services/forecast.Weighting)


@dataclass
class UserOption:
    id: int
    name: str
    role: str


@dataclass(frozen=True)
class LeadFilter:
    """What a list is narrowed to. `owner_id` 0 means the unassigned pool, None everyone."""

    owner_id: int | None = None
    tier: str | None = None
    stage: str | None = None
    source: str | None = None
    search: str | None = None
    # Only these leads (the rows a user selected), when given.
    ids: tuple[int, ...] | None = None


def stuck_sql(entered_at: str, limit_days: str) -> str:
    """The one rule for "stuck", as SQL over the named columns and a bound `:now`: more whole days
    in the stage than its limit, i.e. in it for at least (limit + 1) x 24 hours. The pipeline board
    (services/pipeline.py) writes the same comparison with SQLAlchemy."""
    return f"{entered_at} <= CAST(:now AS timestamptz) - ({limit_days} + 1) * interval '24 hours'"


def money(amount) -> str:
    """Whole dollars with thousands separators, as reps read deal values."""
    return f"${float(amount):,.0f}"


def list_users(session: Session) -> list[UserOption]:
    rows = session.execute(
        select(User.id, User.name, User.role).where(User.is_active).order_by(User.role.desc(), User.name)
    )
    return [UserOption(id=r.id, name=r.name, role=r.role) for r in rows]


# Each tier as its range of scores (ck_leads_tier_matches_score makes the two the same leads): a
# filtered list walks the index of its sort and owner (ix_leads_score, ix_leads_owner_score,
# ix_leads_stage_score) over that range, so the leads table keeps no index of its own for the tier
# (ix_leads_tier_score went in migration 0042). Not both tests: PostgreSQL would take the tier and the
# score for independent and misestimate the rows.
TIER_SCORES = {"hot": (HOT_MIN, 100), "warm": (WARM_MIN, HOT_MIN - 1), "cold": (0, WARM_MIN - 1)}


def tier_condition(tier: str, lead=Lead):
    """The leads of `tier` ('hot', 'warm' or 'cold'), as a range of their score."""
    if tier not in TIER_SCORES:
        return lead.tier == tier  # no such tier: matches nothing, as before
    low, high = TIER_SCORES[tier]
    return lead.score.between(low, high)


def _apply(query, flt: LeadFilter):
    if flt.owner_id == 0:
        query = query.where(Lead.owner_id.is_(None))
    elif flt.owner_id is not None:
        query = query.where(Lead.owner_id == flt.owner_id)
    if flt.tier:
        query = query.where(tier_condition(flt.tier))
    if flt.stage:
        query = query.where(Lead.stage == flt.stage)
    if flt.source:
        query = query.where(Lead.source == flt.source)
    if flt.search and flt.search.strip():
        query = query.where(search_condition(flt.search))
    if flt.ids is not None:
        query = query.where(Lead.id.in_(flt.ids))
    return query


def search_pattern(typed: str) -> str:
    """What the user typed as an ILIKE pattern matching it anywhere, wildcards taken literally."""
    term = typed.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{term}%"


def search_condition(typed: str):
    """Leads whose name, company or email contains `typed`. Found through the trigram indexes by
    crm_lead_ids_matching (migration 0013): under row-level security a plain ILIKE would read every
    lead the policy allows before filtering."""
    return Lead.id.in_(select(func.crm_lead_ids_matching(search_pattern(typed))))


# A search's count stops here ("1,000+ leads"): a common word matches tens of thousands of leads, and
# counting them all reads them all.
SEARCH_COUNT_CAP = 1000


def matching_text(typed: str, lead=Lead):
    """The search as a plain condition, for walking an index in the list's order: under row-level
    security it is tested on each lead the walk reads, after the policy, and never looks anything up.
    `lead`: the leads table, or an alias of a subquery of it."""
    pattern = search_pattern(typed)
    return or_(lead.name.ilike(pattern), lead.company.ilike(pattern), lead.email.ilike(pattern))


def _matches_of(flt: LeadFilter, max_rows: int):
    """Up to `max_rows` ids of the leads `flt` matches (its search and owner, tier, stage and source),
    through the trigram indexes (crm_lead_ids_matching, migration 0033: the user's visible leads only)."""
    return func.crm_lead_ids_matching(search_pattern(flt.search), flt.owner_id, flt.tier or None,
                                      flt.stage or None, flt.source or None, max_rows)


def search_count(session: Session, flt: LeadFilter, cap: int = SEARCH_COUNT_CAP) -> int:
    """How many leads a searching filter matches, up to `cap` + 1 (more than `cap`: "1,000+")."""
    return session.execute(select(func.count()).select_from(_matches_of(flt, cap + 1).alias("m"))).scalar_one()


def _searching(flt: LeadFilter) -> bool:
    return bool(flt.search and flt.search.strip()) and flt.ids is None


SORTS = {
    "score": (Lead.score.desc(), Lead.id.desc()),
    "value": (Lead.deal_value.desc(), Lead.id.desc()),
    "name": (func.lower(Lead.name), Lead.id),
    "newest": (Lead.created_at.desc(), Lead.id.desc()),
    "stage_age": (Lead.stage_entered_at, Lead.id),
}


def ranked_leads(
    session: Session, flt: LeadFilter, *, limit: int = 25, offset: int = 0, sort: str = "score",
    with_total: bool = True, search_cap: int = SEARCH_COUNT_CAP,
) -> tuple[list[LeadListRow], int | None]:
    """One page of leads (best score first unless `sort` says otherwise) and how many match in all
    (None with `with_total=False`: paging through the same filter need not count again; a search's
    count stops at `search_cap` + 1, meaning "more than `search_cap`")."""
    owner = User.__table__.alias("owner")
    query = (
        select(
            Lead.id, Lead.name, Lead.company, Lead.email, Lead.source, Lead.stage,
            owner.c.name.label("owner_name"), Lead.deal_value, Lead.score, Lead.tier,
            Lead.score_reasons, Lead.version, Lead.owner_id,
        )
        .select_from(Lead)
        .outerjoin(owner, owner.c.id == Lead.owner_id)
    )
    total = None
    if _searching(flt):
        # A word found in few leads: rank those (through the trigram indexes). One found in more than
        # the cap: walk the sort's index and keep the leads it matches, a page within the first few
        # hundred leads read, instead of reading every match to rank it.
        total = search_count(session, flt, search_cap)
        matching = (Lead.id.in_(select(_matches_of(flt, search_cap + 1))) if total <= search_cap
                    else matching_text(flt.search))
        query = _apply(query, replace(flt, search=None)).where(matching)
    else:
        query = _apply(query, flt)
    query = query.order_by(*SORTS.get(sort, SORTS["score"])).limit(limit).offset(offset)
    rows = [
        LeadListRow(
            id=r.id,
            name=r.name,
            company=r.company or "",
            email=r.email or "",
            source=Source(r.source).label,
            stage=Stage(r.stage).label,
            owner=r.owner_name or "Unassigned",
            deal_value=float(r.deal_value),
            value_label=money(r.deal_value),
            score=r.score,
            tier=r.tier,
            reasons=[ReasonRow(points=x["points"], text=x["text"]) for x in r.score_reasons],
            version=r.version,
            owner_id=r.owner_id or 0,
            stage_key=r.stage,
        )
        for r in session.execute(query)
    ]
    if not with_total:
        return rows, None
    return rows, total if total is not None else lead_count(session, flt)


# How many leads an owner/stage/tier filter holds, from the totals the database keeps per owner x
# stage x tier (board_totals, migration 0029), under the same row security as the leads.
_KEPT_COUNT_SQL = """
SELECT coalesce(sum(deals), 0) FROM board_totals
 WHERE ({owner}) AND (CAST(:stage AS text) IS NULL OR stage = :stage)
   AND (CAST(:tier AS text) IS NULL OR tier = :tier)
"""


def lead_count(session: Session, flt: LeadFilter) -> int:
    """How many leads match `flt`: read from the kept totals when only owner, stage and tier narrow
    it (a manager's unfiltered list counted a million rows), a search up to SEARCH_COUNT_CAP + 1 (see
    search_count), else counted in SQL."""
    if _searching(flt):
        return search_count(session, flt)
    if flt.source or (flt.search and flt.search.strip()) or flt.ids is not None:
        return session.execute(_apply(select(func.count()).select_from(Lead), flt)).scalar_one()
    owner = "TRUE" if flt.owner_id is None else "owner_id IS NULL" if flt.owner_id == 0 else "owner_id = :owner_id"
    return int(session.execute(text(_KEPT_COUNT_SQL.format(owner=owner)),
                               {"owner_id": flt.owner_id, "stage": flt.stage or None, "tier": flt.tier or None}
                               ).scalar_one())




def lead_export_query(flt: LeadFilter, sort: str = "score"):
    """Every lead matching the filter, in the list's order, with what an export shows (no paging)."""
    owner = User.__table__.alias("owner")
    query = (
        select(
            Lead.id, Lead.external_id, Lead.name, Lead.email, Lead.phone, Lead.title, Lead.company,
            Lead.company_size, Lead.source, Lead.stage, owner.c.name.label("owner_name"), Lead.deal_value,
            Lead.score, Lead.tier, Lead.score_reasons, Lead.created_at, Lead.stage_entered_at, Lead.closed_at,
            Lead.custom_fields,
        )
        .select_from(Lead)
        .outerjoin(owner, owner.c.id == Lead.owner_id)
    )
    return _apply(query, flt).order_by(*SORTS.get(sort, SORTS["score"]))


def custom_field_keys(session: Session, flt: LeadFilter, limit: int = 200) -> list[str]:
    """The custom field names the matching leads carry (an export's extra columns), in SQL."""
    keys = _apply(select(Lead.id), flt).subquery()
    rows = session.execute(
        select(func.jsonb_object_keys(Lead.custom_fields).label("key"))
        .where(Lead.id.in_(select(keys.c.id)))
        .distinct()
        .order_by("key")
        .limit(limit)
    )
    return [r.key for r in rows]
