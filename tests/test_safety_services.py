"""Search everywhere and the engine switch's impact, on real PostgreSQL under row-level security."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session

from crm_app.db.models import Lead, ModelPreview, ScoringModel
from crm_app.services.search import search_everywhere
from crm_app.services.switch_impact import switch_impact
from tests.conftest import NOW
from tests.factories import make_lead, make_user
from tests.test_lead_actions import acting


def test_search_finds_by_email_and_company_pages_in_sql_and_hides_other_reps_leads(session: Session):
    ria, sam = make_user(session, "Ria Rep"), make_user(session, "Sam Seller")
    maya = make_user(session, "Maya Manager", role="manager")
    mine = [make_lead(session, f"Acme Buyer {i}", now=NOW, owner=ria, company="Acme Rockets",
                      email=f"buyer{i}@acme-rockets.test") for i in range(10)]
    pool = make_lead(session, "Pool Person", now=NOW, owner=None, company="Acme Rockets")
    sams = make_lead(session, "Sam Client", now=NOW, owner=sam, company="Acme Rockets",
                     email="client@acme-rockets.test")
    with acting(session, ria) as db:
        first = search_everywhere(db, "acme-rockets", limit=8)
        second = search_everywhere(db, "acme-rockets", limit=8, offset=8, with_companies=False)
        by_email = search_everywhere(db, "buyer3@acme")
        hidden = search_everywhere(db, "client@acme-rockets")
        companies = search_everywhere(db, "rockets").companies
    assert len(first.leads) == 8 and first.more_leads
    assert len(second.leads) == 2 and not second.more_leads
    found = {h.id for h in first.leads} | {h.id for h in second.leads}
    assert found == {lead.id for lead in mine}  # the pool lead has no acme-rockets email; Sam's is hidden
    assert [h.id for h in by_email.leads] == [mine[3].id] and by_email.leads[0].matched == "email"
    assert hidden.leads == []
    # The company counts only what Ria may see: her 10 and the pool's one, not Sam's.
    assert [(c.name, c.leads) for c in companies] == [("Acme Rockets", 11)]
    with acting(session, maya) as db:
        assert [h.id for h in search_everywhere(db, "client@acme-rockets").leads] == [sams.id]
    assert pool.id not in found
    with acting(session, ria) as db:
        assert search_everywhere(db, "a").leads == []  # one character: no search


def test_the_impact_of_switching_to_a_model_counts_hot_before_and_after(session: Session):
    ria = make_user(session, "Ria Rep")
    leads = [make_lead(session, f"Lead {i}", now=NOW, owner=ria) for i in range(5)]
    # Now: 2 hot, 3 cold. The model's stored preview: 1 hot, 4 warm.
    for i, lead in enumerate(leads):
        score, tier = (90, "hot") if i < 2 else (10, "cold")
        session.execute(update(Lead).where(Lead.id == lead.id).values(score=score, tier=tier))
    model = ScoringModel(version=1, trained_at=NOW, rows=100, features={}, metrics={}, is_active=False, model=b"-")
    session.add(model)
    session.commit()
    session.add(ModelPreview(model_id=model.id, lead_ids=[lead.id for lead in leads],
                             scores=[80 if i == 0 else 50 for i in range(len(leads))]))
    session.commit()
    impact = switch_impact(session, mode="model", model_id=model.id)
    assert impact.headline == "Re-ranks 5 open leads; Hot 2 \u2192 1."
    assert impact.detail.startswith("Warm 0 \u2192 4, Cold 3 \u2192 0; 4 leads change tier.")
    rules = switch_impact(session, mode="rules")
    assert rules.headline == "Re-ranks 5 open leads; Hot 2 now."
    assert "Now: Hot 2, Warm 0, Cold 3." in rules.detail


def test_a_two_letter_search_lists_the_best_visible_matches_and_their_companies(session: Session):
    """Two letters have no trigram: the leads are walked by score instead, with the same result as
    the lookup gives for longer text (every visible match, best first) and no other rep's lead."""
    ria, sam = make_user(session, "Ria Rep"), make_user(session, "Sam Seller")
    for i in range(12):
        lead = make_lead(session, f"Qx Buyer {i}", now=NOW, owner=ria if i % 3 else None, company=f"Qx Co {i % 2}",
                         email=f"b{i}@example.test")
        session.execute(update(Lead).where(Lead.id == lead.id).values(score=5 * i, tier="cold" if i < 8 else "warm"))
    make_lead(session, "Sam's Qx", now=NOW, owner=sam, company="Qx Co 0", email="sam-qx@example.test")
    session.execute(update(Lead).where(Lead.name == "Sam's Qx").values(score=99, tier="hot"))
    session.commit()
    with acting(session, ria) as db:
        short = search_everywhere(db, "qx", limit=5)
        longer = search_everywhere(db, "qx ", limit=5)  # the same text, as typed with a space: trimmed
        by_trigram = search_everywhere(db, "qx b", limit=5)
        rest = search_everywhere(db, "qx", limit=5, offset=10, with_companies=False)
    assert [h.name for h in short.leads] == [f"Qx Buyer {i}" for i in (11, 10, 9, 8, 7)] and short.more_leads
    assert [h.id for h in short.leads] == [h.id for h in longer.leads] == [h.id for h in by_trigram.leads]
    assert [h.name for h in rest.leads] == ["Qx Buyer 1", "Qx Buyer 0"] and not rest.more_leads
    # Ria sees her 8 and the pool's 4 (6 at each company), not Sam's.
    assert sorted((c.name, c.leads) for c in short.companies) == [("Qx Co 0", 6), ("Qx Co 1", 6)]
