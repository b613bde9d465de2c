"""Generated data for import tests and the import benchmark (scripts/benchmark_import.py): a team whose
database already holds many leads, and a file that re-imports some of them and brings new ones.

The stored leads are written with one set-based INSERT (a million in well under a minute), owned in
turn by the manager, each rep and the pool, each with an email `lead<N>@stored.example` and an external
id `crm-<N>`. The file's rows match stored leads by email, by external id, or are new.
"""

from __future__ import annotations

import csv
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

from crm_app.services.importing import ImportMapping

TEAM = (("bench-manager@import.example", "Bench Manager", "manager"),
        ("bench-rep1@import.example", "Bench Rep One", "rep"),
        ("bench-rep2@import.example", "Bench Rep Two", "rep"))
HEADERS = ["Name", "Email", "Customer ID", "Company", "Employees", "Source", "Stage", "Value"]
MAPPING = ImportMapping(columns={"Name": "name", "Email": "email", "Customer ID": "external_id",
                                 "Company": "company", "Employees": "company_size", "Source": "source",
                                 "Stage": "stage", "Value": "deal_value"})
SOURCES = ("website", "referral", "linkedin", "events")
STAGES = ("new", "contacted", "qualified", "won", "lost")


def seed_team(engine: Engine) -> dict[str, int]:
    """The manager and two reps (no passwords: nobody signs in); returns their ids by role name."""
    ids = {}
    with engine.begin() as conn:
        for email, name, role in TEAM:
            ids[name] = conn.execute(
                text("INSERT INTO users (email, name, role, is_active) VALUES (:e, :n, :r, true) "
                     "ON CONFLICT (lower(email)) DO UPDATE SET name = excluded.name RETURNING id"),
                {"e": email, "n": name, "r": role},
            ).scalar_one()
    return ids


def seed_stored_leads(engine: Engine, count: int, *, first: int = 1) -> None:
    """`count` stored leads numbered from `first`, owned in turn by the team's three users and the pool.
    Their statistics are gathered afterwards, as autovacuum would in time."""
    with engine.begin() as conn:
        owners = [r[0] for r in conn.execute(text("SELECT id FROM users WHERE email LIKE 'bench-%' ORDER BY id"))]
        conn.execute(
            text("""
                INSERT INTO leads (name, email, external_id, company, source, stage, owner_id, score, tier,
                                   created_at, stage_entered_at, closed_at)
                SELECT 'Stored ' || g, 'lead' || g || '@stored.example', 'crm-' || g, 'Co ' || (g % 997),
                       (ARRAY['website','referral','linkedin','events'])[1 + g % 4],
                       (ARRAY['new','contacted','qualified'])[1 + g % 3],
                       (CAST(:owners AS int[]))[1 + g % 4], 20, 'cold',
                       now() - interval '30 days', now() - interval '30 days', NULL
                  FROM generate_series(CAST(:first AS int), CAST(:last AS int)) g
            """),
            {"owners": owners + [None], "first": first, "last": first + count - 1},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE leads"))


def write_import_file(path: Path, rows: int, *, stored: int, tag: str = "new", seed_offset: int = 0) -> Path:
    """A file of `rows` rows: a third match stored leads by email, a third by external id (spread over
    the first `stored` leads), a third are new people (`<tag><N>@file.example`)."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADERS)
        for i in range(rows):
            n = 1 + ((i * 7919 + seed_offset) % max(stored, 1))
            kind = i % 3 if i < stored else 2  # each stored lead matched at most once
            email = f"lead{n}@stored.example" if kind == 0 else "" if kind == 1 else f"{tag}{i}@file.example"
            external = f"crm-{n}" if kind == 1 else ""
            writer.writerow([f"Person {i}", email, external, f"Firm {i % 311}", 5 + i % 400,
                             SOURCES[i % 4], STAGES[i % 5], f"{(i % 50) * 100}.00"])
    return path


def write_file_for(engine: Engine, path: Path, rows: int, *, tag: str = "new", seed_offset: int = 0) -> Path:
    """Like write_import_file, for any database (a copy of the demo's million, say): two thirds of the
    rows match stored leads, spread over the whole table (by external id where the lead has one, else by
    email), a third are new people."""
    path = Path(path)
    wanted = rows - rows // 3
    with engine.connect() as conn:
        top = conn.execute(text("SELECT coalesce(max(id), 0) FROM leads")).scalar_one()
        step = max(1, top // max(wanted, 1))
        stored = conn.execute(
            text("SELECT email, external_id FROM leads WHERE id % :step = :offset ORDER BY id LIMIT :n"),
            {"step": step, "offset": seed_offset % step, "n": wanted},
        ).all()
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADERS)
        matched = iter(stored)
        for i in range(rows):
            lead = next(matched, None) if i % 3 != 2 else None
            email, external = (lead.email or "", lead.external_id or "") if lead is not None else (f"{tag}{i}@file.example", "")
            if external:
                email = ""
            writer.writerow([f"Person {i}", email, external, f"Firm {i % 311}", 5 + i % 400,
                             SOURCES[i % 4], STAGES[i % 5], f"{(i % 50) * 100}.00"])
    return path
