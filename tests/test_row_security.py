"""Row-level security on its own: raw SQL under the app's database role, no service in the way.

Each attempt runs as `crm_app_user` with an acting user set the way crm_app/db/security.py sets it.
A rep must not read, change, reassign or attach anything to another rep's lead, even with its id;
nor change anyone's account, the team's settings or scoring state, or reach the API keys and another
key's stored answers (migration 0012).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from crm_app.db.engine import UnsafeLogin, check_login_role
from crm_app.db.models import AuditEntry, FollowUp, Lead, User
from crm_app.db.security import APP_ROLE, WEB_ROLE, act_as, apply_acting_user
from crm_app.domain import Role
from crm_app.services import accounts, api_keys
from crm_app.services.errors import Forbidden, InvalidInput
from crm_app.services.permissions import CurrentUser
from tests.conftest import NOW
from tests.factories import TEST_PASSWORD, acting, make_lead


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
    ada: int = 0  # admin, the only active one
    model: int = 0  # a stored model, not the active one
    ana_key: int = 0  # an API key acting as Ana
    ben_key: int = 0  # an API key acting as Ben


@pytest.fixture
def team(session: Session) -> Team:
    users = {}
    for name, role in (("ana", "rep"), ("ben", "rep"), ("meg", "manager"), ("ada", "admin")):
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
    team = Team(users["ana"].id, users["ben"].id, users["meg"].id, ana_lead.id, ben_lead.id, pool_lead.id,
                follow_ups[0].id, follow_ups[1].id, entries[0].id, entries[1].id, ada=users["ada"].id)
    _settings_and_keys(session, team)
    return team


def _settings_and_keys(session: Session, team: Team) -> None:
    """A row in every team-settings table, two API keys (Ana's and Ben's) with a stored answer each,
    and a rate window; Ada is the only active admin (within this test's transaction)."""
    run = lambda sql, **params: session.execute(text(sql), params)  # noqa: E731
    run("UPDATE users SET role = 'rep' WHERE role = 'admin' AND id <> :ada", ada=team.ada)
    run("INSERT INTO source_costs (source, cost, updated_at) VALUES ('events', 100, now()) "
        "ON CONFLICT (source) DO UPDATE SET cost = 100")
    run("INSERT INTO play_stats (stage, source, size_band, play, stays_with, moved_with, stays_without, "
        "moved_without, refreshed_at) VALUES ('new', 'website', 'small', 'demo', 10, 4, 10, 2, now()) "
        "ON CONFLICT DO NOTHING")
    top = run("SELECT coalesce(max(version), 0) FROM scoring_models").scalar_one()
    team.model = run("INSERT INTO scoring_models (version, trained_at, rows, features, metrics, is_active, model) "
                     "VALUES (:v, now(), 100, '{}', '{}', false, '\\x00') RETURNING id", v=top + 1).scalar_one()
    run("INSERT INTO scoring_jobs (kind, status, percent, message, started_at, heartbeat_at, finished_at) "
        "VALUES ('rescore', 'succeeded', 100, 'Done', now(), now(), now())")
    team.ana_key, team.ben_key = (
        run("INSERT INTO api_keys (name, prefix, secret_hash, scope, user_id, rate_per_minute) "
            "VALUES (:name, 'crm_test', :hash, 'write', :user, 600) RETURNING id",
            name=f"{who} key", hash=(who[0] * 64), user=user).scalar_one()
        for who, user in (("ana", team.ana), ("ben", team.ben)))
    for key in (team.ana_key, team.ben_key):
        run("INSERT INTO api_idempotency (api_key_id, key, request_hash, status_code, response, created_at) "
            "VALUES (:key, 'retry-1', 'h', 201, '{\"id\": 1}', now())", key=key)
    run("INSERT INTO api_rate_windows (api_key_id, window_start, requests) VALUES (:key, date_trunc('minute', now()), 3)",
        key=team.ana_key)
    # Sign-in sessions (Ana has a live one and one she signed out of; Ben a live one) and an attempt.
    for user, token, revoked in ((team.ana, "a1", None), (team.ana, "a2", "now()"), (team.ben, "b1", None)):
        run("INSERT INTO auth_sessions (token_hash, user_id, last_seen_at, expires_at, revoked_at) "
            f"VALUES (:token, :user, now(), now() + interval '1 hour', {revoked or 'NULL'})",
            token=token * 32, user=user)
    run("INSERT INTO sign_in_attempts (email, attempted_at, succeeded) VALUES ('ben@rls.test', now(), false)")
    session.commit()


def _as(session: Session, user_id: int | None) -> None:
    """The app role acting as `user_id` the way crm_app/db/security.py proves it; None: nobody."""
    if user_id is not None:
        apply_acting_user(session.connection(), user_id)
        return
    session.execute(text(f"SET LOCAL ROLE {APP_ROLE}"))
    session.execute(text("SELECT set_config('crm.user_id', '', true), set_config('crm.acting_proof', '', true)"))


def _ids(session: Session, sql: str) -> set[int]:
    return {row[0] for row in session.execute(text(sql))}


def _reads_nothing(session: Session, sql: str, params: dict) -> bool:
    """True when the query returns no row, or is refused by PostgreSQL."""
    try:
        with session.begin_nested():
            return session.execute(text(sql), params).first() is None
    except DBAPIError as error:
        assert "permission denied" in str(error.orig)
        return True


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
    # Accounts: only an active admin adds or changes one; nobody deletes one under the app role.
    "make oneself admin": ("UPDATE users SET role = 'admin' WHERE id = :ana", None),
    "make oneself manager": ("UPDATE users SET role = 'manager' WHERE id = :ana", None),
    "deactivate a manager": ("UPDATE users SET is_active = false WHERE id = :meg", None),
    "deactivate the admin": ("UPDATE users SET is_active = false WHERE id = :ada", None),
    "change another user's email": ("UPDATE users SET email = 'mine@rls.test' WHERE id = :ben", None),
    "change another user's password hash": (
        "UPDATE users SET password_hash = '$argon2id$forged', password_changed_at = now() WHERE id = :ben", None),
    "change own account row directly": ("UPDATE users SET name = 'Boss', password_hash = NULL WHERE id = :ana", None),
    "add a user": ("INSERT INTO users (email, name, role, is_active) VALUES ('new@rls.test', 'New', 'rep', true)", None),
    "add an admin": (
        "INSERT INTO users (email, name, role, is_active, password_hash) "
        "VALUES ('boss@rls.test', 'Boss', 'admin', true, '$argon2id$forged')", None),
    "delete a user": ("DELETE FROM users WHERE id = :ben", None),
    # Team settings and scoring state: managers and admins only.
    "change a source cost": ("UPDATE source_costs SET cost = 0", None),
    "add a source cost": ("INSERT INTO source_costs (source, cost, updated_at) VALUES ('referral', 1, now())", None),
    "delete the source costs": ("DELETE FROM source_costs", None),
    "change a stage rule": ("UPDATE stage_rules SET stagnation_days = 365", None),
    "switch the scoring engine": ("UPDATE scoring_settings SET engine = 'model', updated_by = :ana", None),
    "switch the scoring engine by upsert": (
        "INSERT INTO scoring_settings (id, engine, blend_weight, updated_at) VALUES (1, 'blend', 1, now()) "
        "ON CONFLICT (id) DO UPDATE SET engine = 'blend', blend_weight = 1", None),
    "activate a model": ("UPDATE scoring_models SET is_active = (id = :model)", None),
    "delete a model": ("DELETE FROM scoring_models WHERE id = :model", None),
    "start a scoring job": (
        "INSERT INTO scoring_jobs (kind, status, percent, message, started_at, heartbeat_at, requested_by) "
        "VALUES ('train', 'running', 0, 'x', now(), now(), :ana)", None),
    "rewrite a scoring job": ("UPDATE scoring_jobs SET message = 'nothing happened'", None),
    "rewrite the play statistics": ("UPDATE play_stats SET moved_with = stays_with", None),
    "add play statistics": (
        "INSERT INTO play_stats (stage, source, size_band, play, stays_with, moved_with, stays_without, "
        "moved_without, refreshed_at) VALUES ('new', 'events', 'small', 'demo', 9, 9, 9, 0, now())", None),
    "erase the play statistics": ("DELETE FROM play_stats", None),
    # API keys: admins only, and only through their rows; stored answers: only a key acting as oneself.
    "read API key secret hashes": ("SELECT secret_hash FROM api_keys", None),
    "read own API key": ("SELECT secret_hash FROM api_keys WHERE user_id = :ana", None),
    "create an API key": (
        "INSERT INTO api_keys (name, prefix, secret_hash, scope, user_id, rate_per_minute) "
        "VALUES ('mine', 'crm_mine', repeat('c', 64), 'write', :ana, 600)", None),
    "lift own key's rate limit": ("UPDATE api_keys SET rate_per_minute = 100000 WHERE id = :ana_key", None),
    "re-point another user's key to oneself": ("UPDATE api_keys SET revoked_at = NULL, user_id = :ana WHERE id = :ben_key", None),
    "delete a key": ("DELETE FROM api_keys WHERE id = :ben_key", None),
    "read another key's stored answers": ("SELECT response FROM api_idempotency WHERE api_key_id = :ben_key", None),
    "read every stored answer but one's own": (
        "SELECT response FROM api_idempotency WHERE api_key_id <> :ana_key", None),
    "rewrite another key's stored answer": (
        "UPDATE api_idempotency SET response = '{}' WHERE api_key_id = :ben_key", None),
    "delete another key's stored answer": ("DELETE FROM api_idempotency WHERE api_key_id = :ben_key", None),
    "claim an idempotency key for another key": (
        "INSERT INTO api_idempotency (api_key_id, key, request_hash, status_code, response, created_at) "
        "VALUES (:ben_key, 'retry-2', 'h', 0, '', now())", None),
    "move own stored answer to another key": (
        "UPDATE api_idempotency SET api_key_id = :ben_key, key = 'moved' WHERE api_key_id = :ana_key", None),
    "read the rate windows": ("SELECT requests FROM api_rate_windows", None),
    "reset own rate window": ("UPDATE api_rate_windows SET requests = 0 WHERE api_key_id = :ana_key", None),
    "clear the rate windows": ("DELETE FROM api_rate_windows", None),
    "open a rate window": (
        "INSERT INTO api_rate_windows (api_key_id, window_start, requests) VALUES (:ana_key, now(), 0)", None),
    # Sign-in sessions and the sign-in throttle (migration 0015).
    "read another user's sessions": ("SELECT id FROM auth_sessions WHERE user_id = :ben", None),
    "read when own sessions expire": ("SELECT expires_at FROM auth_sessions WHERE user_id = :ana", None),
    "extend own session": (
        "UPDATE auth_sessions SET expires_at = now() + interval '1 year' WHERE user_id = :ana", None),
    "revive own signed-out session": ("UPDATE auth_sessions SET revoked_at = NULL WHERE user_id = :ana", None),
    "sign another user out": ("UPDATE auth_sessions SET revoked_at = now() WHERE user_id = :ben", None),
    "take over another user's session": ("UPDATE auth_sessions SET revoked_at = now(), user_id = :ana WHERE user_id = :ben",
                                         None),
    "forge a session": (
        "INSERT INTO auth_sessions (token_hash, user_id, last_seen_at, expires_at) "
        "VALUES (repeat('f', 64), :ana, now(), now() + interval '1 day')", None),
    "erase own sessions": ("DELETE FROM auth_sessions WHERE user_id = :ana", None),
    "read the sign-in attempts": ("SELECT email FROM sign_in_attempts", None),
    "clear the sign-in throttle": ("DELETE FROM sign_in_attempts", None),
    "record a successful sign-in to lift the throttle": (
        "INSERT INTO sign_in_attempts (email, attempted_at, succeeded) VALUES ('ben@rls.test', now(), true)", None),
}


@pytest.mark.parametrize("attempt", list(ATTEMPTS))
def test_a_rep_is_refused(session: Session, team: Team, attempt: str) -> None:
    sql, _ = ATTEMPTS[attempt]
    params = {"ana": team.ana, "ben": team.ben, "meg": team.meg, "ada": team.ada, "ana_lead": team.ana_lead,
              "ben_lead": team.ben_lead, "pool_lead": team.pool_lead, "ana_follow_up": team.ana_follow_up,
              "ben_follow_up": team.ben_follow_up, "ana_audit": team.ana_audit, "ben_audit": team.ben_audit,
              "model": team.model, "ana_key": team.ana_key, "ben_key": team.ben_key}
    before = _ben_follow_up(session, team), _audit_trail(session), _accounts_settings_and_keys(session)
    _as(session, team.ana)
    if sql.lstrip().upper().startswith("SELECT"):
        assert _reads_nothing(session, sql, params)
    else:
        assert _refused(session, sql, params)
    # And the other rep's lead is exactly as it was.
    session.execute(text("RESET ROLE"))
    lead = session.execute(text("SELECT name, stage, owner_id FROM leads WHERE id = :id"), {"id": team.ben_lead}).one()
    assert tuple(lead) == ("Ben Lead", "new", team.ben)
    assert (_ben_follow_up(session, team), _audit_trail(session), _accounts_settings_and_keys(session)) == before
    assert session.execute(text("SELECT count(*) FROM follow_ups WHERE lead_id = :id"),
                           {"id": team.ben_lead}).scalar_one() == 1


def _ben_follow_up(session: Session, team: Team) -> dict:
    return session.execute(text("SELECT to_jsonb(f) FROM follow_ups f WHERE id = :id"),
                           {"id": team.ben_follow_up}).scalar_one()


PROTECTED_BY_0012 = ("users", "source_costs", "stage_rules", "scoring_settings", "scoring_models", "scoring_jobs",
                     "play_stats", "api_keys", "api_idempotency", "api_rate_windows",
                     "auth_sessions", "sign_in_attempts")  # the last two: migration 0015


def _accounts_settings_and_keys(session: Session) -> dict:
    """Every row of the tables migration 0012 protects, read as the tables' owner."""
    return {table: session.execute(text(f"SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY to_jsonb(t)::text), '[]') "
                                        f"FROM {table} t")).scalar_one()
            for table in PROTECTED_BY_0012}


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


# --- Accounts, team settings and API keys (migration 0012): what each role still may do ------------




def _user(session: Session, user_id: int) -> CurrentUser:
    row = session.execute(text("SELECT email, name, role FROM users WHERE id = :id"), {"id": user_id}).one()
    return CurrentUser(user_id, row.email, row.name, Role(row.role))


def test_every_acting_user_reads_the_team_and_its_settings(session: Session, team: Team) -> None:
    _as(session, team.ana)
    assert {team.ana, team.ben, team.meg, team.ada} <= _ids(session, "SELECT id FROM users")
    for table in ("source_costs", "stage_rules", "scoring_settings", "scoring_models", "scoring_jobs", "play_stats"):
        assert session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() > 0, table
    assert team.model in _ids(session, "SELECT id FROM scoring_models")
    assert _ids(session, "SELECT api_key_id FROM api_idempotency") == {team.ana_key}  # her own key's answers
    _as(session, None)
    for table in ("users", "source_costs", "stage_rules", "scoring_settings", "scoring_models", "scoring_jobs",
                  "play_stats", "api_keys", "api_idempotency"):
        assert session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 0, table


def test_an_admin_manages_users_and_keys_with_raw_sql(session: Session, team: Team) -> None:
    _as(session, team.ada)
    run = lambda sql, **params: session.execute(text(sql), params)  # noqa: E731
    assert run("INSERT INTO users (email, name, role, is_active) VALUES ('new@rls.test', 'New', 'rep', true) "
               "RETURNING id").scalar_one()
    assert run("UPDATE users SET role = 'manager' WHERE id = :id", id=team.ben).rowcount == 1
    assert run("UPDATE users SET is_active = false WHERE id = :id", id=team.meg).rowcount == 1
    assert {team.ana_key, team.ben_key} <= _ids(session, "SELECT id FROM api_keys")
    key = run("INSERT INTO api_keys (name, prefix, secret_hash, scope, user_id, created_by) "
              "VALUES ('Forms', 'crm_forms', repeat('f', 64), 'read', :ana, :ada) RETURNING id",
              ana=team.ana, ada=team.ada).scalar_one()
    assert run("UPDATE api_keys SET revoked_at = now(), revoked_by = :ada WHERE id = :id", ada=team.ada, id=key).rowcount == 1
    # Not even an admin deletes accounts or keys under the app role, or reads another user's stored answers.
    assert _refused(session, "DELETE FROM users WHERE id = :id", {"id": team.ben})
    assert _refused(session, "DELETE FROM api_keys WHERE id = :id", {"id": key})
    assert _ids(session, "SELECT api_key_id FROM api_idempotency") == set()
    assert _reads_nothing(session, "SELECT requests FROM api_rate_windows", {})
    # The admin may demote themself in SQL (the service keeps the last admin, see below).
    assert run("UPDATE users SET role = 'rep' WHERE id = :id", id=team.ada).rowcount == 1
    # ... and from then on manages nothing.
    assert _refused(session, "UPDATE users SET role = 'admin' WHERE id = :id", {"id": team.ada})
    assert _ids(session, "SELECT id FROM api_keys") == set()


def test_a_manager_changes_team_settings_but_not_accounts_or_keys(session: Session, team: Team) -> None:
    _as(session, team.meg)
    run = lambda sql, **params: session.execute(text(sql), params).rowcount  # noqa: E731
    assert run("UPDATE source_costs SET cost = 250 WHERE source = 'events'") == 1
    assert run("INSERT INTO source_costs (source, cost, updated_at) VALUES ('referral', 5, now()) "
               "ON CONFLICT (source) DO UPDATE SET cost = 5") == 1
    assert run("UPDATE stage_rules SET stagnation_days = 30 WHERE stage = 'proposal'") == 1
    assert run("INSERT INTO scoring_settings (id, engine, blend_weight, updated_at, updated_by) "
               "VALUES (1, 'blend', 0.4, now(), :meg) ON CONFLICT (id) DO UPDATE SET engine = 'blend', "
               "blend_weight = 0.4, updated_by = :meg", meg=team.meg) == 1
    assert run("UPDATE scoring_models SET is_active = false WHERE is_active") >= 0
    assert run("UPDATE scoring_models SET is_active = true WHERE id = :id", id=team.model) == 1
    assert run("UPDATE scoring_jobs SET status = 'failed', finished_at = now() WHERE kind = 'train' AND status = 'running'") >= 0
    assert run("INSERT INTO scoring_jobs (kind, status, percent, message, started_at, heartbeat_at, requested_by) "
               "VALUES ('train', 'running', 0, 'Starting', now(), now(), :meg)", meg=team.meg) == 1
    assert run("UPDATE play_stats SET refreshed_at = now()") >= 1
    assert _refused(session, "UPDATE users SET role = 'admin' WHERE id = :id", {"id": team.meg})
    assert _refused(session, "UPDATE users SET is_active = false WHERE id = :id", {"id": team.ana})
    assert _ids(session, "SELECT id FROM api_keys") == set()


def test_the_services_manage_accounts_and_keys_as_an_admin(session: Session, team: Team) -> None:
    """The Users and API keys pages' calls, acting as the admin; the last-admin rules still hold."""
    ada = _user(session, team.ada)
    with acting(session, team.ada) as s:
        new_id = accounts.create_user(s, ada, email="cal@rls.test", name="Cal", role="rep",
                                      password="a long first password", now=NOW)
        accounts.set_role(s, ada, new_id, "manager", NOW)
        accounts.set_active(s, ada, team.ben, False, NOW)
        with pytest.raises(InvalidInput, match="at least one admin"):
            accounts.set_role(s, ada, team.ada, "rep", NOW)
        with pytest.raises(InvalidInput, match="last admin"):
            accounts.set_active(s, ada, team.ada, False, NOW)
        assert {row.id for row in accounts.list_accounts(s, ada)} >= {team.ana, team.ada, new_id}
        secret, key_id = api_keys.create_key(s, ada, name="Website forms", scope="write", user_id=team.ana, now=NOW)
        assert key_id in {row.id for row in api_keys.list_keys(s, ada, NOW)}
        api_keys.revoke_key(s, ada, key_id, NOW)
    rows = {row.id: row for row in session.execute(text("SELECT id, role, is_active FROM users"))}
    assert (rows[new_id].role, rows[team.ben].is_active, rows[team.ada].role) == ("manager", False, "admin")
    revoked = session.execute(text("SELECT revoked_by FROM api_keys WHERE id = :id"), {"id": key_id}).scalar_one()
    assert revoked == team.ada and secret.startswith("crm_")
    # With another admin, the first one may step down.
    with acting(session, team.ada) as s:
        accounts.set_role(s, ada, team.meg, "admin", NOW)
        accounts.set_role(s, ada, team.ada, "manager", NOW)
    assert session.execute(text("SELECT role FROM users WHERE id = :id"), {"id": team.ada}).scalar_one() == "manager"


def test_a_user_changes_their_own_password_only(session: Session, team: Team) -> None:
    """Changing a password checks the current one against the stored hash, which the app role may not
    read (migration 0016): the page runs it as the tables' owner for the signed-in user, and a
    session acting as someone is refused, whoever it names."""
    hashed = accounts.hash_password(TEST_PASSWORD)
    session.execute(text("UPDATE users SET password_hash = :h WHERE id IN (:ana, :ben)"),
                    {"h": hashed, "ana": team.ana, "ben": team.ben})
    ana = _user(session, team.ana)
    accounts.change_password(session, ana, current=TEST_PASSWORD, new="a brand new secret", now=NOW)
    stored = dict(session.execute(text("SELECT id, password_hash FROM users WHERE id IN (:a, :b)"),
                                  {"a": team.ana, "b": team.ben}).all())
    assert accounts._verify(stored[team.ana], "a brand new secret")
    assert stored[team.ben] == hashed
    assert session.execute(text("SELECT count(*) FROM audit_log WHERE actor_id = :id AND action = 'password_changed'"),
                           {"id": team.ana}).scalar_one() == 1
    for who in (team.ana, team.ben):
        with acting(session, who) as s, pytest.raises(Forbidden):
            accounts.change_password(s, ana, current="a brand new secret", new="ben was here 123", now=NOW)
    # No door in the database either: the function 0012 added for it is gone, and the hash column
    # cannot be changed under the app role, not even by an admin.
    assert session.execute(text("SELECT count(*) FROM pg_proc WHERE proname = 'crm_set_own_password'")).scalar_one() == 0
    _as(session, team.ada)
    assert _refused(session, "UPDATE users SET password_hash = :h WHERE id = :id",
                    {"h": accounts.hash_password("an admin's pick 123"), "id": team.ben})
    session.execute(text("RESET ROLE"))
    assert session.execute(text("SELECT password_hash FROM users WHERE id = :id"), {"id": team.ana}).scalar_one() \
        == stored[team.ana]


def test_a_key_user_works_with_own_stored_answers(session: Session, team: Team) -> None:
    """What the REST API does in a write request, acting as the key's user (rest/app.py _claim,
    the answer's UPDATE, _unclaim)."""
    _as(session, team.ana)
    claimed = session.execute(text(
        "INSERT INTO api_idempotency (api_key_id, key, request_hash, status_code, response, created_at) "
        "VALUES (:key, 'retry-9', 'h9', 0, '', now()) ON CONFLICT DO NOTHING RETURNING 1"), {"key": team.ana_key}).first()
    assert claimed
    replay = session.execute(text(
        "INSERT INTO api_idempotency (api_key_id, key, request_hash, status_code, response, created_at) "
        "VALUES (:key, 'retry-1', 'h', 0, '', now()) ON CONFLICT DO NOTHING RETURNING 1"), {"key": team.ana_key}).first()
    assert replay is None
    assert session.execute(text("SELECT status_code FROM api_idempotency WHERE api_key_id = :key AND key = 'retry-1'"),
                           {"key": team.ana_key}).scalar_one() == 201
    assert session.execute(text("UPDATE api_idempotency SET status_code = 201, response = '{}' "
                                "WHERE api_key_id = :key AND key = 'retry-9'"), {"key": team.ana_key}).rowcount == 1
    assert session.execute(text("DELETE FROM api_idempotency WHERE api_key_id = :key AND key = 'retry-9'"),
                           {"key": team.ana_key}).rowcount == 1


# --- The web app's own login (migration 0016): what SQL that slipped into a query could still do ------
#
# The web app connects as `crm_web`, which can only become the app role; it acts as a user through a
# proof it computes with a key only the tables' owner reads. Each attempt below runs on a real
# connection of that login (the app's get_app_engine), acting as Ana, a rep, with committed rows.


@dataclass
class Committed:
    ana: int
    ben: int
    ana_lead: int
    ben_lead: int
    pool_lead: int


@pytest.fixture(scope="module")
def committed(engine) -> Iterator[Committed]:
    """Rows the web login's own connections can see (the per-test rollback would hide them); removed
    afterwards."""
    with Session(engine, expire_on_commit=False) as setup:
        ana = User(email="ana@login.test", name="Ana Login", role="rep", password_hash=accounts.hash_password(TEST_PASSWORD))
        ben = User(email="ben@login.test", name="Ben Login", role="rep", password_hash=accounts.hash_password(TEST_PASSWORD))
        setup.add_all([ana, ben])
        setup.commit()
        leads = [make_lead(setup, f"{who} Login Lead", now=NOW, owner=owner)
                 for who, owner in (("Ana", ana), ("Ben", ben), ("Pool", None))]
        rows = Committed(ana.id, ben.id, *(lead.id for lead in leads))
    yield rows
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM leads WHERE id IN (:a, :b, :c)"),
                     {"a": rows.ana_lead, "b": rows.ben_lead, "c": rows.pool_lead})
        conn.execute(text("DELETE FROM users WHERE id IN (:a, :b)"), {"a": rows.ana, "b": rows.ben})


@contextmanager
def _web_as(web_engine, user_id: int | None) -> Iterator:
    """A transaction on the web app's login, acting as `user_id` (None: the app role, nobody acting);
    rolled back at the end."""
    with web_engine.connect() as conn:
        with conn.begin() as transaction:
            if user_id is None:
                conn.execute(text(f"SET LOCAL ROLE {APP_ROLE}"))
            else:
                apply_acting_user(conn, user_id)
            yield conn
            transaction.rollback()


def _lead_ids(conn) -> set[int]:
    return set(conn.execute(text("SELECT id FROM leads")).scalars())


def _denied(conn, sql: str, params: dict | None = None) -> str:
    """Runs `sql` in a savepoint; returns PostgreSQL's refusal (the test fails if it was allowed)."""
    try:
        with conn.begin_nested():
            conn.execute(text(sql), params or {})
    except DBAPIError as error:
        return str(error.orig)
    raise AssertionError(f"allowed: {sql}")


def test_the_web_login_is_not_privileged(web_engine, committed: Committed) -> None:
    with web_engine.connect() as conn:
        row = conn.execute(text(
            "SELECT current_user, rolsuper, rolbypassrls, rolinherit, rolcreaterole, rolcreatedb FROM pg_roles "
            "WHERE rolname = current_user")).one()
        assert tuple(row) == (WEB_ROLE, False, False, False, False, False)
        # Without becoming the app role it may read nothing at all.
        assert "permission denied" in _denied(conn, "SELECT id FROM leads")


def test_the_app_refuses_a_web_login_that_could_do_more(engine, web_engine) -> None:
    """CRM_APP_DATABASE_URL pointing at the owner (here a superuser) stops the app before it serves."""
    check_login_role(web_engine)
    with pytest.raises(UnsafeLogin, match="is a superuser.*owns the tables"):
        check_login_role(engine)


def test_acting_as_a_rep_on_the_web_login_sees_own_leads_and_the_pool(web_engine, committed: Committed) -> None:
    c = committed
    with _web_as(web_engine, c.ana) as conn:
        assert {c.ana_lead, c.pool_lead} <= _lead_ids(conn) and c.ben_lead not in _lead_ids(conn)
        assert conn.execute(text("SELECT crm_acting_user()")).scalar_one() == c.ana


def test_reset_role_leaves_the_web_login_with_nothing(web_engine, committed: Committed) -> None:
    with _web_as(web_engine, committed.ana) as conn:
        conn.execute(text("RESET ROLE"))
        assert conn.execute(text("SELECT current_user")).scalar_one() == WEB_ROLE
        assert "permission denied" in _denied(conn, "SELECT id FROM leads WHERE id = :id", {"id": committed.ben_lead})
        assert "permission denied" in _denied(conn, "UPDATE leads SET name = 'taken' WHERE id = :id",
                                              {"id": committed.ben_lead})


def test_the_web_login_cannot_become_the_owner(web_engine, committed: Committed) -> None:
    with _web_as(web_engine, committed.ana) as conn:
        owner = conn.execute(text("SELECT tableowner FROM pg_tables WHERE tablename = 'leads'")).scalar_one()
        for sql in (f'SET ROLE "{owner}"', f"SET SESSION AUTHORIZATION \"{owner}\"",
                    f"SELECT set_config('role', '{owner}', true)"):
            assert "permission denied" in _denied(conn, sql), sql
        assert "permission denied" in _denied(conn, "SET ROLE postgres")


def test_setting_the_acting_user_by_hand_names_nobody(web_engine, committed: Committed) -> None:
    c = committed
    with _web_as(web_engine, c.ben) as ben_conn:  # a proof another connection could glimpse (pg_stat_activity)
        bens_proof = ben_conn.execute(text("SELECT current_setting('crm.acting_proof', true)")).scalar_one()
    with _web_as(web_engine, c.ana) as conn:
        conn.execute(text("SELECT set_config('crm.user_id', :ben, true)"), {"ben": str(c.ben)})
        assert conn.execute(text("SELECT crm_acting_user()")).scalar_one() is None
        assert c.ben_lead not in _lead_ids(conn)
        conn.execute(text("SELECT set_config('crm.acting_proof', :p, true)"), {"p": bens_proof})
        assert conn.execute(text("SELECT crm_acting_user()")).scalar_one() is None
        assert c.ben_lead not in _lead_ids(conn)
        conn.execute(text("SET crm.user_id = :ben".replace(":ben", str(c.ben))))
        assert conn.execute(text("SELECT count(*) FROM leads WHERE id = :id"), {"id": c.ben_lead}).scalar_one() == 0
    with _web_as(web_engine, None) as conn:  # the app role, nobody acting: a claimed id alone is nobody
        conn.execute(text("SELECT set_config('crm.user_id', :ben, false)"), {"ben": str(c.ben)})
        assert _lead_ids(conn) == set()


def test_a_proof_is_good_for_its_own_transaction_only(web_engine, committed: Committed) -> None:
    c = committed
    with web_engine.connect() as conn:
        with conn.begin():
            apply_acting_user(conn, c.ben)
            user, proof = conn.execute(text(
                "SELECT current_setting('crm.user_id'), current_setting('crm.acting_proof', true)")).one()
        with conn.begin():  # the same backend, the next transaction: replaying Ben's proof names nobody
            conn.execute(text(f"SET LOCAL ROLE {APP_ROLE}"))
            conn.execute(text("SELECT set_config('crm.user_id', :u, true), set_config('crm.acting_proof', :p, true)"),
                         {"u": user, "p": proof})
            assert conn.execute(text("SELECT crm_acting_user()")).scalar_one() is None
            assert _lead_ids(conn) == set()


def test_the_acting_key_is_out_of_reach(web_engine, committed: Committed) -> None:
    with _web_as(web_engine, committed.ana) as conn:
        assert "permission denied" in _denied(conn, "SELECT key FROM crm_private.acting_key")
        conn.execute(text("RESET ROLE"))
        assert "permission denied" in _denied(conn, "SELECT key FROM crm_private.acting_key")


def test_no_password_hash_is_readable_on_the_web_login(web_engine, committed: Committed) -> None:
    c = committed
    with _web_as(web_engine, c.ana) as conn:
        for sql in ("SELECT password_hash FROM users WHERE id = :ben", "SELECT password_hash FROM users WHERE id = :ana",
                    "SELECT * FROM users", "SELECT to_jsonb(u) FROM users u",
                    "SELECT id FROM users WHERE password_hash LIKE '$argon2%'",
                    "UPDATE users SET name = name WHERE id = :ana RETURNING password_hash"):
            assert "permission denied" in _denied(conn, sql, {"ana": c.ana, "ben": c.ben}), sql
        # What the pages need stays readable, including whether an account can sign in.
        assert conn.execute(text("SELECT has_password FROM users WHERE id = :ben"), {"ben": c.ben}).scalar_one()


def test_a_rep_deletes_no_lead_on_the_web_login(web_engine, committed: Committed) -> None:
    c = committed
    with _web_as(web_engine, c.ana) as conn:
        for lead in (c.ana_lead, c.pool_lead):
            assert "permission denied" in _denied(conn, "DELETE FROM leads WHERE id = :id", {"id": lead})
        for table in ("activities", "stage_changes"):
            assert "permission denied" in _denied(conn, f"DELETE FROM {table} WHERE lead_id = :id", {"id": c.ana_lead})


def test_the_lookups_find_nothing_for_nobody_on_the_web_login(web_engine, committed: Committed) -> None:
    c = committed
    with _web_as(web_engine, None) as conn:
        assert conn.execute(text("SELECT count(*) FROM crm_lead_ids_matching('%')")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM crm_lead_ids_by_email(ARRAY['ana@login.test'])")).scalar_one() == 0
        conn.execute(text("SELECT set_config('crm.user_id', :ben, true)"), {"ben": str(c.ben)})
        assert conn.execute(text("SELECT count(*) FROM crm_lead_ids_matching('%')")).scalar_one() == 0
    with _web_as(web_engine, c.ana) as conn:
        found = set(conn.execute(text("SELECT crm_lead_ids_matching('%Login Lead')")).scalars())
        assert found == {c.ana_lead, c.pool_lead}


def test_a_temporary_users_table_does_not_make_a_rep_a_manager(web_engine, committed: Committed) -> None:
    """The policies' helper functions read `users`; with the caller's search_path a temporary table of
    that name, searched first, would have answered for them."""
    c = committed
    with _web_as(web_engine, c.ana) as conn:
        conn.execute(text("CREATE TEMP TABLE users (id integer, is_active boolean, role text) ON COMMIT DROP"))
        conn.execute(text("INSERT INTO pg_temp.users VALUES (:ana, true, 'manager')"), {"ana": c.ana})
        conn.execute(text("SET LOCAL search_path = pg_temp, public"))
        assert c.ben_lead not in _lead_ids(conn)
        assert conn.execute(text("SELECT crm_sees_team()")).scalar_one() is False


def test_the_web_login_creates_nothing(web_engine, committed: Committed) -> None:
    """Neither as the app role nor as itself: an object it owned could outlive the transaction (a
    function overload in public, a schema put first on a search path)."""
    with _web_as(web_engine, committed.ana) as conn:
        for reset in (False, True):
            if reset:
                conn.execute(text("RESET ROLE"))
            for sql in ("CREATE TABLE public.mine (id integer)",
                        "CREATE FUNCTION public.crm_acting_user(x integer) RETURNS integer LANGUAGE sql AS 'SELECT 1'",
                        "CREATE SCHEMA mine"):
                assert "permission denied" in _denied(conn, sql), sql
