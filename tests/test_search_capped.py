"""Search (the leads list and Ctrl-K) with its count cap, against the lookup it replaced on generated
leads: the same pages in every sort, the same count below the cap and "more than the cap" above it, the
same companies; as the tables' owner and for a rep and a manager under row-level security, where a rep
never finds another rep's lead through the new functions."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlmodel import Session

from crm_app.db.models import Lead, User
from crm_app.db.queries import SORTS, LeadFilter, _apply, ranked_leads, search_pattern
from crm_app.scoring import tier_for
from crm_app.services import search
from crm_app.services.search import COMPANIES_SHOWN, FIRST_WALK, search_everywhere
from tests.conftest import NOW
from tests.factories import make_lead, make_user
from tests.test_lead_actions import acting

WORDS = ["smith", "goldsmith", "ma"]


def _reference(session: Session, flt: LeadFilter, sort: str, limit: int, offset: int) -> tuple[list[int], int]:
    """The page and count as the list read them before: every match through crm_lead_ids_matching."""
    query = _apply(select(Lead.id), flt).order_by(*SORTS[sort]).limit(limit).offset(offset)
    count = session.execute(_apply(select(func.count()).select_from(Lead), flt)).scalar_one()
    return list(session.execute(query).scalars()), count


def _reference_companies(session: Session, typed: str) -> list[tuple[str, int]]:
    pattern = search_pattern(typed)
    return [tuple(r) for r in session.execute(
        select(Lead.company, func.count()).where(Lead.company.ilike(pattern))
        .group_by(Lead.company).order_by(func.count().desc(), Lead.company).limit(COMPANIES_SHOWN))]


def _same_as_reference(session: Session, owners: list[int | None], cap: int) -> None:
    for word in WORDS:
        for owner in owners:
            for tier in (None, "hot"):
                flt = LeadFilter(owner_id=owner, tier=tier, search=word)
                for sort in SORTS if tier is None else ["score"]:
                    for offset in (0, 3):
                        rows, total = ranked_leads(session, flt, limit=4, offset=offset, sort=sort, search_cap=cap)
                        ids, count = _reference(session, flt, sort, 4, offset)
                        assert [r.id for r in rows] == ids, (word, owner, tier, sort, offset)
                        assert total == min(count, cap + 1)
        # Ctrl-K: best score first, a page at a time, whether the page was found among the first
        # leads walked or after all the matches were counted and ranked; the companies with their
        # visible leads.
        everything = list(session.execute(_apply(select(Lead.id), LeadFilter(search=word)).order_by(*SORTS["score"])
                                          ).scalars())
        for first_walk in (500, 4, 1):
            search.FIRST_WALK = first_walk
            try:
                for offset in (0, 2, 5):
                    found = search_everywhere(session, word, limit=3, offset=offset, search_cap=cap)
                    assert [h.id for h in found.leads] == everything[offset:offset + 3], (word, first_walk, offset)
                    assert found.more_leads == (len(everything) > offset + 3)
            finally:
                search.FIRST_WALK = FIRST_WALK
        assert [(c.name, c.leads) for c in search_everywhere(session, word, search_cap=cap).companies] == \
            _reference_companies(session, word)


a_lead = st.fixed_dictionaries({
    "owner": st.sampled_from(["ria", "ria", "sam", "pool"]),
    "first": st.sampled_from(["Ann", "Bob", "Ma", "Zed"]),
    "last": st.sampled_from(["Smith", "Smithson", "Jones", "Lee", "Goldsmith"]),
    "company": st.sampled_from(["Smith & Co", "Jones Ltd", "Acme", "Goldsmith Inc", "Marvel"]),
    "score": st.integers(min_value=0, max_value=100),
    "value": st.sampled_from([0, 100, 100, 5000]),
    "days": st.integers(min_value=1, max_value=30),
})


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(a_lead, min_size=1, max_size=20), st.sampled_from([0, 2, 1000]))
def test_capped_search_pages_and_counts_as_the_full_lookup_did(session: Session, leads, cap):
    def user(name: str, role: str = "rep") -> User:
        found = session.execute(select(User).where(User.name == name)).scalar()
        return found or make_user(session, name, role=role)

    ria, sam, meg = user("Ria Rep"), user("Sam Seller"), user("Meg Manager", "manager")
    owners = {"ria": ria.id, "sam": sam.id, "pool": None}
    with session.begin_nested() as example:
        for n, spec in enumerate(leads):
            name = f"{spec['first']} {spec['last']} {n}"
            session.add(Lead(name=name, company=spec["company"], email=f"{name.replace(' ', '.').lower()}@mail.test",
                             source="website", stage="new", owner_id=owners[spec["owner"]],
                             score=spec["score"], tier=tier_for(spec["score"]).value, deal_value=Decimal(spec["value"]),
                             created_at=NOW - timedelta(days=spec["days"]),
                             stage_entered_at=NOW - timedelta(days=spec["days"])))
        session.flush()
        _same_as_reference(session, [None, 0, ria.id], cap)
        with acting(session, ria) as as_ria:
            _same_as_reference(as_ria, [None, 0, ria.id, sam.id], cap)
        with acting(session, meg) as as_meg:
            _same_as_reference(as_meg, [None, sam.id], cap)
        example.rollback()
    session.expunge_all()


def test_a_rep_never_finds_another_reps_lead_through_the_capped_search(session: Session):
    ria, sam = make_user(session, "Ria Rep"), make_user(session, "Sam Seller")
    mine = make_lead(session, "Ann Smith", now=NOW, owner=ria, company="Smith & Co")
    pool = make_lead(session, "Bob Smith", now=NOW, owner=None, company="Smith & Co")
    sams = {make_lead(session, f"Sam's Smith {n}", now=NOW, owner=sam, company="Smith & Co").id for n in range(5)}
    with acting(session, ria) as db:
        for cap in (0, 1, 1000):
            for owner in (None, 0, ria.id, sam.id):
                rows, total = ranked_leads(db, LeadFilter(owner_id=owner, search="smith"), limit=50, search_cap=cap)
                assert not {r.id for r in rows} & sams
            found = search_everywhere(db, "smith", limit=50, search_cap=cap)
            assert {h.id for h in found.leads} == {mine.id, pool.id}
            assert [(c.name, c.leads) for c in found.companies] == [("Smith & Co", 2)]
        assert ranked_leads(db, LeadFilter(search="smith"), limit=50)[1] == 2
        # The functions themselves, however asked: only her leads and the pool's.
        assert set(db.execute(text("SELECT crm_lead_ids_matching('%smith%', NULL, NULL, NULL, NULL, 100)")).scalars()) \
            == {mine.id, pool.id}
        assert db.execute(text("SELECT count(*) FROM crm_lead_ids_matching('%smith%', :sam, NULL, NULL, NULL, 100)"),
                          {"sam": sam.id}).scalar_one() == 0
