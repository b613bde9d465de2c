"""Row-level security on its own: raw SQL under the app's database role, no service in the way.

Each attempt runs as `crm_app_user` with an acting user set the way crm_app/db/security.py sets it.
A rep must not read, change, reassign or attach anything to another rep's lead, even with its id.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from crm_app.db.models import AuditEntry, FollowUp, Lead, User
from crm_app.db.security import APP_ROLE, act_as
from tests.conftest import NOW
from tests.factories import make_lead


@dataclass
class Team:
    ana: int  # rep
    ben: int  # rep
    meg: int  # manager
    ana_lead: int
    ben_lead: int
    pool_lead: int
    ana_follow_up: int
    ben_follow_up: int
    ana_audit: int  # Ana's edit of her own lead
    ben_audit: int  # Ben's edit of his own lead


@pytest.fixture
def team(session: Session) -> Team:
    users = {}
    for name, role in (("ana", "rep"), ("ben", "rep"), ("meg", "manager")):
        user = User(email=f"{name}@rls.test", name=name.title(), role=role)
        session.add(user)
        session.commit()
        users[name] = user
    ana_lead = make_lead(session, "Ana Lead", now=NOW, owner=users["ana"])
    ben_lead = make_lead(session, "Ben Lead", now=NOW, owner=users["ben"])
    pool_lead = make_lead(session, "Pool Lead", now=NOW, owner=None)
    follow_ups = [FollowUp(lead_id=lead.id, owner_id=lead.owner_id, due_at=NOW, note="Call back", created_at=NOW)
                  for lead in (ana_lead, ben_lead)]
    session.add_all(follow_ups)
    entries = [AuditEntry(at=NOW, actor_id=lead.owner_id, action="lead_edited", entity="lead", entity_id=lead.id,
                          lead_id=lead.id, old={"company": "Old"}, new={"company": "New"})
               for lead in (ana_lead, ben_lead)]
    session.add_all(entries)
    session.commit()
    return Team(users["ana"].id, users["ben"].id, users["meg"].id, ana_lead.id, ben_lead.id, pool_lead.id,
                follow_ups[0].id, follow_ups[1].id, entries[0].id, entries[1].id)


def _as(session: Session, user_id: int | None) -> None:
    session.execute(text(f"SET LOCAL ROLE {APP_ROLE}"))
    session.execute(text("SELECT set_config('crm.user_id', :id, true)"), {"id": "" if user_id is None else str(user_id)})


def _ids(session: Session, sql: str) -> set[int]:
    return {row[0] for row in session.execute(text(sql))}


def _refused(session: Session, sql: str, params: dict) -> bool:
    """True when the statement is refused by PostgreSQL or changes no row."""
    try:
        with session.begin_nested():
            return session.execute(text(sql), params).rowcount == 0
    except DBAPIError as error:
        assert "row-level security" in str(error.orig) or "permission denied" in str(error.orig)
        return True


def test_the_app_role_is_not_privileged(session: Session, team: Team) -> None:
    row = session.execute(
        text("SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = :r"), {"r": APP_ROLE}
    ).one()
    assert tuple(row) == (False, False, False)
    owners = session.execute(
        text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = :r"), {"r": APP_ROLE}
    ).scalar_one()
    assert owners == 0


def test_a_rep_sees_own_leads_and_the_pool_only(session: Session, team: Team) -> None:
    _as(session, team.ana)
    assert _ids(session, "SELECT id FROM leads") == {team.ana_lead, team.pool_lead}
    activity_leads = _ids(session, "SELECT DISTINCT lead_id FROM activities")
    assert team.ben_lead not in activity_leads
    assert _ids(session, f"SELECT lead_id FROM stage_changes WHERE lead_id = {team.ben_lead}") == set()
    assert _ids(session, "SELECT id FROM follow_ups") == {team.ana_follow_up}


def test_a_manager_sees_the_whole_team(session: Session, team: Team) -> None:
    _as(session, team.meg)
    assert {team.ana_lead, team.ben_lead, team.pool_lead} <= _ids(session, "SELECT id FROM leads")
    assert {team.ana_follow_up, team.ben_follow_up} <= _ids(session, "SELECT id FROM follow_ups")


def test_no_acting_user_sees_nothing(session: Session, team: Team) -> None:
    _as(session, None)
    assert _ids(session, "SELECT id FROM leads") == set()
    assert _ids(session, "SELECT id FROM activities") == set()
    assert _ids(session, "SELECT id FROM follow_ups") == set()


ATTEMPTS = {
    "read by guessed id": ("SELECT id FROM leads WHERE id = :ben_lead", None),
    "edit another rep's lead": ("UPDATE leads SET name = 'taken' WHERE id = :ben_lead", None),
    "move another rep's lead": ("UPDATE leads SET stage = 'lost' WHERE id = :ben_lead", None),
    "delete another rep's lead": ("DELETE FROM leads WHERE id = :ben_lead", None),
    "take another rep's lead": ("UPDATE leads SET owner_id = :ana WHERE id = :ben_lead", None),
    "give own lead to another rep": ("UPDATE leads SET owner_id = :ben WHERE id = :ana_lead", None),
    "give a pool lead to another rep": ("UPDATE leads SET owner_id = :ben WHERE id = :pool_lead", None),
    "create a lead owned by another rep": (
        "INSERT INTO leads (name, email, source, stage, owner_id, score, tier, score_reasons, created_at, "
        "stage_entered_at, version) SELECT 'X', 'x@rls.test', source, 'new', :ben, 0, 'cold', '[]', now(), now(), 1 "
        "FROM leads WHERE id = :ana_lead",
        None,
    ),
    "log an activity on another rep's lead": (
        "INSERT INTO activities (lead_id, kind, occurred_at, created_at) VALUES (:ben_lead, 'call', now(), now())",
        None,
    ),
    "add a stage change to another rep's lead": (
        "INSERT INTO stage_changes (lead_id, from_stage, to_stage, changed_at) VALUES (:ben_lead, 'new', 'won', now())",
        None,
    ),
    "read another rep's activities": ("SELECT id FROM activities WHERE lead_id = :ben_lead", None),
    "delete another rep's activities": ("DELETE FROM activities WHERE lead_id = :ben_lead", None),
    "rewrite another rep's stage history": ("UPDATE stage_changes SET to_stage = 'won' WHERE lead_id = :ben_lead", None),
    "touch the schema history": ("UPDATE alembic_version SET version_num = version_num", None),
    "read another rep's follow-up by id": ("SELECT id FROM follow_ups WHERE id = :ben_follow_up", None),
    "complete another rep's follow-up": ("UPDATE follow_ups SET done_at = now() WHERE id = :ben_follow_up", None),
    "postpone another rep's follow-up": (
        "UPDATE follow_ups SET due_at = due_at + interval '30 days' WHERE id = :ben_follow_up", None),
    "delete another rep's follow-up": ("DELETE FROM follow_ups WHERE id = :ben_follow_up", None),
    "add a follow-up to another rep's lead": (
        "INSERT INTO follow_ups (lead_id, owner_id, due_at, created_at) VALUES (:ben_lead, :ana, now(), now())", None),
    "move own follow-up onto another rep's lead": (
        "UPDATE follow_ups SET lead_id = :ben_lead WHERE id = :ana_follow_up", None),
    "read the audit trail": ("SELECT id FROM audit_log", None),
    "read own entries in the audit trail": ("SELECT id FROM audit_log WHERE actor_id = :ana", None),
    "rewrite another rep's audit entry": ("UPDATE audit_log SET new = '{}' WHERE id = :ben_audit", None),
    "rewrite own audit entry": ("UPDATE audit_log SET action = 'lead_claimed' WHERE id = :ana_audit", None),
    "erase own audit entries": ("DELETE FROM audit_log WHERE actor_id = :ana", None),
    "erase the audit trail": ("DELETE FROM audit_log", None),
    "empty the audit trail": ("TRUNCATE audit_log", None),
    "forge an audit entry as another rep": (
        "INSERT INTO audit_log (at, actor_id, action, entity, entity_id, lead_id) "
        "VALUES (now(), :ben, 'stage_moved', 'lead', :ana_lead, :ana_lead)", None),
    "forge an audit entry as the system": (
        "INSERT INTO audit_log (at, actor_id, action, entity) VALUES (now(), NULL, 'engine_switched', 'scoring_settings')",
        None),
    "add an entry to another rep's lead history": (
        "INSERT INTO audit_log (at, actor_id, action, entity, entity_id, lead_id) "
        "VALUES (now(), :ana, 'lead_edited', 'lead', :ben_lead, :ben_lead)", None),
}


@pytest.mark.parametrize("attempt", list(ATTEMPTS))
def test_a_rep_is_refused(session: Session, team: Team, attempt: str) -> None:
    sql, _ = ATTEMPTS[attempt]
    params = {"ana": team.ana, "ben": team.ben, "ana_lead": team.ana_lead, "ben_lead": team.ben_lead,
              "pool_lead": team.pool_lead, "ana_follow_up": team.ana_follow_up, "ben_follow_up": team.ben_follow_up,
              "ana_audit": team.ana_audit, "ben_audit": team.ben_audit}
    before = _ben_follow_up(session, team), _audit_trail(session)
    _as(session, team.ana)
    if sql.lstrip().upper().startswith("SELECT"):
        assert not session.execute(text(sql), params).first()
    else:
        assert _refused(session, sql, params)
    # And the other rep's lead is exactly as it was.
    session.execute(text("RESET ROLE"))
    lead = session.execute(text("SELECT name, stage, owner_id FROM leads WHERE id = :id"), {"id": team.ben_lead}).one()
    assert tuple(lead) == ("Ben Lead", "new", team.ben)
    assert (_ben_follow_up(session, team), _audit_trail(session)) == before
    assert session.execute(text("SELECT count(*) FROM follow_ups WHERE lead_id = :id"),
                           {"id": team.ben_lead}).scalar_one() == 1


def _ben_follow_up(session: Session, team: Team) -> dict:
    return session.execute(text("SELECT to_jsonb(f) FROM follow_ups f WHERE id = :id"),
                           {"id": team.ben_follow_up}).scalar_one()


def _audit_trail(session: Session) -> list:
    return session.execute(text("SELECT coalesce(jsonb_agg(to_jsonb(a) ORDER BY id), '[]') FROM audit_log a")).scalar_one()


def test_a_rep_appends_to_the_audit_trail_as_themself_only(session: Session, team: Team) -> None:
    """What the services do in a rep's transaction: add an entry naming the rep, about a lead the rep
    may see. The rep cannot read it back, not even through RETURNING."""
    _as(session, team.ana)
    added = session.execute(text(
        "INSERT INTO audit_log (at, actor_id, action, entity, entity_id, lead_id) "
        "VALUES (now(), :ana, 'stage_moved', 'lead', :id, :id)"), {"ana": team.ana, "id": team.ana_lead})
    assert added.rowcount == 1
    assert _refused(session, "INSERT INTO audit_log (at, actor_id, action, entity) "
                             "VALUES (now(), :ana, 'lead_claimed', 'lead') RETURNING id", {"ana": team.ana})
    assert _ids(session, "SELECT id FROM audit_log") == set()
    session.execute(text("RESET ROLE"))
    assert session.execute(text("SELECT count(*) FROM audit_log WHERE actor_id = :ana AND action = 'stage_moved'"),
                           {"ana": team.ana}).scalar_one() == 1


def test_a_manager_reads_the_audit_trail_but_cannot_change_it(session: Session, team: Team) -> None:
    _as(session, team.meg)
    assert {team.ana_audit, team.ben_audit} <= _ids(session, "SELECT id FROM audit_log")
    before = session.execute(text("SELECT count(*) FROM audit_log")).scalar_one()
    assert _refused(session, "UPDATE audit_log SET action = 'x' WHERE id = :id", {"id": team.ben_audit})
    assert _refused(session, "DELETE FROM audit_log WHERE id = :id", {"id": team.ben_audit})
    assert _refused(session, "INSERT INTO audit_log (at, actor_id, action, entity) VALUES (now(), :ben, 'x', 'lead')",
                    {"ben": team.ben})
    assert session.execute(text("SELECT count(*) FROM audit_log")).scalar_one() == before


def test_the_audit_trail_records_actions_through_the_orm_as_a_rep(engine, team: Team) -> None:
    """services/audit.record in a session acting as a rep: the entry is written although the rep may
    not read it (the id comes from the sequence, not from RETURNING)."""
    from crm_app.services import audit

    with Session(engine) as setup:
        rep = User(email="writer@rls.test", name="Writer", role="rep")
        setup.add(rep)
        setup.commit()
        lead = make_lead(setup, "Writer Lead", now=NOW, owner=rep)
        ids = (rep.id, lead.id)
    try:
        with act_as(Session(engine), ids[0]) as acting:
            audit.record(acting, now=NOW, actor_id=ids[0], action="lead_edited", entity="lead", entity_id=ids[1],
                         lead_id=ids[1], old={"company": "A"}, new={"company": "B"})
            acting.commit()
            assert acting.execute(text("SELECT count(*) FROM audit_log")).scalar_one() == 0
        with Session(engine) as owner:
            assert owner.execute(text("SELECT count(*) FROM audit_log WHERE actor_id = :id"),
                                 {"id": ids[0]}).scalar_one() == 1
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_log WHERE actor_id = :a"), {"a": ids[0]})
            conn.execute(text("DELETE FROM leads WHERE id = :id"), {"id": ids[1]})
            conn.execute(text("DELETE FROM users WHERE id = :a"), {"a": ids[0]})


def test_a_rep_may_claim_from_the_pool_and_work_own_leads(session: Session, team: Team) -> None:
    _as(session, team.ana)
    assert session.execute(text("UPDATE leads SET owner_id = :ana WHERE id = :id"),
                           {"ana": team.ana, "id": team.pool_lead}).rowcount == 1
    assert session.execute(text("UPDATE leads SET stage = 'contacted' WHERE id = :id"), {"id": team.ana_lead}).rowcount == 1
    session.execute(text("INSERT INTO activities (lead_id, kind, occurred_at, created_at) VALUES (:id, 'call', now(), now())"),
                    {"id": team.ana_lead})
    assert session.execute(text("UPDATE follow_ups SET done_at = now() WHERE id = :id"),
                           {"id": team.ana_follow_up}).rowcount == 1
    session.execute(text("INSERT INTO follow_ups (lead_id, owner_id, due_at, created_at) VALUES (:id, :ana, now(), now())"),
                    {"id": team.pool_lead, "ana": team.ana})


def test_act_as_applies_to_every_transaction_of_a_session(engine, team: Team) -> None:
    """The ORM path the services use: rows committed by the fixture are invisible here, so this test
    makes its own in a separate committed transaction and removes them afterwards."""
    with Session(engine) as setup:
        rep = User(email="solo@rls.test", name="Solo", role="rep")
        other = User(email="other@rls.test", name="Other", role="rep")
        setup.add_all([rep, other])
        setup.commit()
        mine = make_lead(setup, "Solo Lead", now=NOW, owner=rep)
        theirs = make_lead(setup, "Other Lead", now=NOW, owner=other)
        ids = (rep.id, other.id, mine.id, theirs.id)
    try:
        with act_as(Session(engine), ids[0]) as acting:
            assert acting.get(Lead, ids[3]) is None
            assert acting.get(Lead, ids[2]) is not None
            acting.commit()  # a new transaction begins: still acting as the rep
            assert acting.execute(text("SELECT count(*) FROM leads WHERE id = :id"), {"id": ids[3]}).scalar_one() == 0
            assert acting.execute(text("SELECT current_user")).scalar_one() == APP_ROLE
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM leads WHERE id IN (:a, :b)"), {"a": ids[2], "b": ids[3]})
            conn.execute(text("DELETE FROM users WHERE id IN (:a, :b)"), {"a": ids[0], "b": ids[1]})
