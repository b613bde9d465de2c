"""Ctrl-K's companies come from the kept per-company counts (migration 0039) and say what counting the
viewer's leads of each matching company says: after inserts, new companies and owners, deletions and a
user's deletion, for the whole team, a rep and a manager under row-level security."""

from __future__ import annotations

import json
import random

from sqlalchemy import text
from sqlmodel import Session

from tests.factories import acting, make_user

COMPANIES = [None, "", "Smith & Co", "smith & co", "Smithson Ltd", "Goldsmith", "Acme", "Acme Smithy", "Blacksmiths"]
PATTERNS = ["%smith%", "%acme%", "%co%", "%zzz%", "%s%"]


def _same(session: Session, label: str) -> None:
    for pattern in PATTERNS:
        for shown in (2, 5, 50):
            got = [tuple(r) for r in session.execute(
                text("SELECT company, leads FROM crm_companies_matching(:p, :n)"), {"p": pattern, "n": shown})]
            want = [tuple(r) for r in session.execute(text(
                "SELECT company::text, count(*) FROM leads WHERE company ILIKE :p "
                "GROUP BY company ORDER BY count(*) DESC, company LIMIT :n"), {"p": pattern, "n": shown})]
            assert got == want, f"{label} {pattern} {shown}"


def _insert(session: Session, rng: random.Random, owners: list, count: int) -> list[int]:
    rows = [{"name": f"Co {rng.random():.6f}", "company": rng.choice(COMPANIES), "owner": rng.choice(owners)}
            for _ in range(count)]
    return list(session.execute(text(
        "INSERT INTO leads (name, company, owner_id, source, stage, created_at, updated_at, stage_entered_at) "
        "SELECT r->>'name', r->>'company', (r->>'owner')::int, 'website', 'new', now(), now(), now() "
        "FROM jsonb_array_elements(CAST(:rows AS jsonb)) r RETURNING id"), {"rows": json.dumps(rows)}).scalars())


def test_companies_and_their_lead_counts_follow_every_write(session: Session) -> None:
    rng = random.Random(11)
    reps = [make_user(session, f"{n} Company") for n in ("Ann", "Ben")]
    manager = make_user(session, "Max Company", role="manager")
    owners = [None, *(r.id for r in reps)]
    ids = _insert(session, rng, owners, 120)

    def everyone(label: str) -> None:
        _same(session, label)
        for user, who in ((reps[0], "rep"), (manager, "manager")):
            with acting(session, user) as db:
                _same(db, f"{label} as {who}")

    everyone("inserted")
    for lead_id in rng.sample(ids, 30):
        session.execute(text("UPDATE leads SET company = :c WHERE id = :id"), {"c": rng.choice(COMPANIES), "id": lead_id})
    session.execute(text("UPDATE leads SET owner_id = :o WHERE id = ANY(:ids)"), {"o": reps[1].id, "ids": rng.sample(ids, 20)})
    session.execute(text("UPDATE leads SET owner_id = NULL, company = 'Acme' WHERE id = ANY(:ids)"), {"ids": rng.sample(ids, 5)})
    session.execute(text("UPDATE leads SET score = 50, tier = 'warm'"))  # nothing the counts read
    everyone("updated")
    session.execute(text("DELETE FROM leads WHERE id = ANY(:ids)"), {"ids": rng.sample(ids, 25)})
    session.execute(text("DELETE FROM users WHERE id = :id"), {"id": reps[1].id})
    everyone("deleted")
    session.execute(text("TRUNCATE leads CASCADE"))
    assert session.execute(text("SELECT count(*) FROM company_lead_counts")).scalar_one() == 0
