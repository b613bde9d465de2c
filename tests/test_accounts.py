"""Accounts on real PostgreSQL: hashing, sign-in, throttling, session expiry, roles, first admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlmodel import Session

from crm_app.db.models import User
from crm_app.domain import Role
from crm_app.services import accounts
from crm_app.services.accounts import CurrentUser, require_role
from crm_app.services.errors import Forbidden, InvalidInput, SignInRefused
from tests.conftest import NOW

PASSWORD = "correct horse battery"


def _user(session: Session, email: str, role: str = "rep", password: str | None = PASSWORD) -> User:
    user = User(email=email, name=email.split("@")[0].title(), role=role,
                password_hash=accounts.hash_password(password) if password else None)
    session.add(user)
    session.commit()
    return user


def _stored_hash(session: Session, user_id: int) -> str:
    return session.execute(text("SELECT password_hash FROM users WHERE id = :id"), {"id": user_id}).scalar_one()


def test_passwords_are_stored_only_as_argon2id_hashes(session: Session) -> None:
    user = _user(session, "ana@team.test")
    stored = _stored_hash(session, user.id)
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    # The same password hashes differently each time (a salt per hash).
    assert accounts.hash_password(PASSWORD) != accounts.hash_password(PASSWORD)


def test_sign_in_opens_a_session_the_token_finds_again(session: Session) -> None:
    user = _user(session, "ana@team.test", role="manager")
    token, signed_in = accounts.sign_in(session, email="ANA@team.test ", password=PASSWORD, now=NOW)
    assert signed_in == CurrentUser(user.id, "ana@team.test", "Ana", Role.MANAGER)
    assert accounts.session_user(session, token, NOW + timedelta(minutes=5)) == signed_in
    # Only a hash of the token is stored.
    stored = session.execute(text("SELECT token_hash FROM auth_sessions WHERE user_id = :id"), {"id": user.id}).scalar_one()
    assert token not in stored and len(stored) == 64


@pytest.mark.parametrize("email,password", [("ana@team.test", "wrong password!"), ("nobody@team.test", PASSWORD)])
def test_wrong_password_and_unknown_email_get_the_same_answer(session: Session, email: str, password: str) -> None:
    _user(session, "ana@team.test")
    with pytest.raises(SignInRefused, match=r"^Wrong email or password\.$"):
        accounts.sign_in(session, email=email, password=password, now=NOW)


def test_bad_input_is_named_by_field(session: Session) -> None:
    with pytest.raises(InvalidInput) as error:
        accounts.sign_in(session, email="not-an-email", password=PASSWORD, now=NOW)
    assert error.value.field == "email"
    with pytest.raises(InvalidInput) as error:
        accounts.sign_in(session, email="ana@team.test", password="", now=NOW)
    assert error.value.field == "password"


def test_repeated_failures_pause_the_email_even_for_the_right_password(session: Session) -> None:
    _user(session, "ana@team.test")
    for i in range(accounts.MAX_FAILURES):
        with pytest.raises(SignInRefused, match="Wrong email or password"):
            accounts.sign_in(session, email="ana@team.test", password=f"guess number {i}", now=NOW + timedelta(seconds=i))
    with pytest.raises(SignInRefused, match=r"Too many failed sign-ins for this email\. Try again in 15 minutes\."):
        accounts.sign_in(session, email="ana@team.test", password=PASSWORD, now=NOW + timedelta(seconds=30))
    # Another email is not affected, and the pause ends with the window.
    _user(session, "ben@team.test")
    accounts.sign_in(session, email="ben@team.test", password=PASSWORD, now=NOW + timedelta(seconds=31))
    token, _ = accounts.sign_in(session, email="ana@team.test", password=PASSWORD, now=NOW + timedelta(minutes=16))
    assert token


def test_a_success_clears_the_count_of_earlier_failures(session: Session) -> None:
    _user(session, "ana@team.test")
    for i in range(accounts.MAX_FAILURES - 1):
        with pytest.raises(SignInRefused):
            accounts.sign_in(session, email="ana@team.test", password=f"guess number {i}", now=NOW)
    accounts.sign_in(session, email="ana@team.test", password=PASSWORD, now=NOW + timedelta(seconds=1))
    with pytest.raises(SignInRefused, match="Wrong email or password"):  # not "too many"
        accounts.sign_in(session, email="ana@team.test", password="one more guess", now=NOW + timedelta(seconds=2))


def test_sessions_end_at_sign_out_after_idling_and_at_their_age_limit(session: Session) -> None:
    _user(session, "ana@team.test")
    token, _ = accounts.sign_in(session, email="ana@team.test", password=PASSWORD, now=NOW)
    accounts.sign_out(session, token, NOW + timedelta(minutes=1))
    assert accounts.session_user(session, token, NOW + timedelta(minutes=2)) is None

    idle = accounts.idle_minutes()
    token, _ = accounts.sign_in(session, email="ana@team.test", password=PASSWORD, now=NOW)
    assert accounts.session_user(session, token, NOW + timedelta(minutes=idle + 1)) is None

    # Used every hour, a session still ends at its age limit.
    token, _ = accounts.sign_in(session, email="ana@team.test", password=PASSWORD, now=NOW)
    hours = int(accounts.session_hours())
    for hour in range(1, hours):
        assert accounts.session_user(session, token, NOW + timedelta(hours=hour)) is not None
    assert accounts.session_user(session, token, NOW + timedelta(hours=hours, minutes=1)) is None
    assert accounts.session_user(session, "made-up-token", NOW) is None


def test_deactivating_a_user_signs_them_out_everywhere(session: Session) -> None:
    admin = _user(session, "root@team.test", role="admin")
    rep = _user(session, "ana@team.test")
    token, _ = accounts.sign_in(session, email="ana@team.test", password=PASSWORD, now=NOW)
    acting = CurrentUser(admin.id, admin.email, admin.name, Role.ADMIN)
    accounts.set_active(session, acting, rep.id, False, NOW)
    assert accounts.session_user(session, token, NOW) is None
    with pytest.raises(SignInRefused):
        accounts.sign_in(session, email="ana@team.test", password=PASSWORD, now=NOW)


def test_changing_the_password_needs_the_current_one_and_signs_out_other_browsers(session: Session) -> None:
    _user(session, "ana@team.test")
    here, me = accounts.sign_in(session, email="ana@team.test", password=PASSWORD, now=NOW)
    elsewhere, _ = accounts.sign_in(session, email="ana@team.test", password=PASSWORD, now=NOW)
    with pytest.raises(InvalidInput) as error:
        accounts.change_password(session, me, current="not it at all", new="a brand new secret", now=NOW)
    assert error.value.field == "current"
    with pytest.raises(InvalidInput) as error:
        accounts.change_password(session, me, current=PASSWORD, new="short", now=NOW)
    assert error.value.field == "new"

    accounts.change_password(session, me, current=PASSWORD, new="a brand new secret", now=NOW, keep_token=here)
    assert accounts.session_user(session, here, NOW) == me
    assert accounts.session_user(session, elsewhere, NOW) is None
    with pytest.raises(SignInRefused):
        accounts.sign_in(session, email="ana@team.test", password=PASSWORD, now=NOW)
    accounts.sign_in(session, email="ana@team.test", password="a brand new secret", now=NOW)


def test_the_first_admin_is_created_once(session: Session) -> None:
    assert accounts.needs_first_admin(session)
    admin = accounts.create_first_admin(session, email="boss@team.test", name="Boss", password=PASSWORD, now=NOW)
    assert admin.role is Role.ADMIN
    assert not accounts.needs_first_admin(session)
    with pytest.raises(Forbidden, match="An admin already exists"):
        accounts.create_first_admin(session, email="mallory@team.test", name="Mallory", password=PASSWORD, now=NOW)
    assert session.execute(text("SELECT count(*) FROM users WHERE role = 'admin'")).scalar_one() == 1


def test_roles_are_checked_and_changes_are_audited(session: Session) -> None:
    admin_row = _user(session, "root@team.test", role="admin")
    admin = CurrentUser(admin_row.id, admin_row.email, admin_row.name, Role.ADMIN)
    manager = CurrentUser(0, "m@team.test", "M", Role.MANAGER)
    rep = CurrentUser(0, "r@team.test", "R", Role.REP)

    with pytest.raises(Forbidden, match=r"^Only an admin can add users\.$"):
        accounts.create_user(session, manager, email="x@team.test", name="X", role="rep", password=PASSWORD, now=NOW)
    with pytest.raises(Forbidden):
        accounts.list_accounts(session, rep)
    assert require_role(manager, Role.MANAGER, "reassign leads") is manager
    with pytest.raises(Forbidden, match="Only a manager can reassign leads."):
        require_role(rep, Role.MANAGER, "reassign leads")
    with pytest.raises(Forbidden, match="Sign in to reassign leads."):
        require_role(None, Role.MANAGER, "reassign leads")

    new_id = accounts.create_user(session, admin, email="cat@team.test", name="Cat", role="rep", password=PASSWORD, now=NOW)
    accounts.set_role(session, admin, new_id, "manager", NOW)
    with pytest.raises(InvalidInput, match="at least one admin"):
        accounts.set_role(session, admin, admin.id, "rep", NOW)
    with pytest.raises(InvalidInput, match="Choose rep, manager or admin."):
        accounts.set_role(session, admin, new_id, "owner", NOW)
    with pytest.raises(InvalidInput, match="already has this email"):
        accounts.create_user(session, admin, email="CAT@team.test", name="Cat 2", role="rep", password=PASSWORD, now=NOW)

    trail = session.execute(
        text("SELECT action, old, new FROM audit_log WHERE entity_id = :id ORDER BY id"), {"id": new_id}
    ).all()
    assert [row.action for row in trail] == ["user_created", "role_changed"]
    assert trail[1].old == {"role": "rep"} and trail[1].new == {"role": "manager"}
    assert "password" not in str(trail[0].new).lower()  # never the password, not even hashed


# --- Password strength (issue #17, item 8) -------------------------------------------------------------

GUESSABLE = ["aaaaaaaaaa", "password12", "1234567890", "qwertyuiop", "abcdefghij", "Password123!",
             "iloveyou2026", "crmcrmcrmcrm"]


def test_common_and_repetitive_passwords_are_refused_wherever_one_is_chosen(session: Session) -> None:
    for weak in GUESSABLE:
        with pytest.raises(InvalidInput, match=r"^Too easy to guess\. ") as error:
            accounts.create_first_admin(session, email="boss@team.test", name="Boss", password=weak, now=NOW)
        assert error.value.field == "password"
    admin_row = _user(session, "root@team.test", role="admin")
    admin = CurrentUser(admin_row.id, admin_row.email, admin_row.name, Role.ADMIN)
    ana = _user(session, "ana@team.test")
    me = CurrentUser(ana.id, ana.email, ana.name, Role.REP)
    chooses = {
        "users page": lambda pw: accounts.create_user(session, admin, email="cat@team.test", name="Cat Smith",
                                                      role="rep", password=pw, now=NOW),
        "account page": lambda pw: accounts.change_password(session, me, current=PASSWORD, new=pw, now=NOW),
    }
    for where, choose in chooses.items():
        for weak in [*GUESSABLE, "cat@team.test" if where == "users page" else "ana@team.test1"]:
            with pytest.raises(InvalidInput, match=r"^Too easy to guess\. ") as error:
                choose(weak)
            assert error.value.field == ("new" if where == "account page" else "password"), where
    # Nothing was stored: no new user, Ana's password unchanged.
    stored = text("SELECT count(*) FROM users WHERE email IN ('boss@team.test', 'cat@team.test')")
    assert session.execute(stored).scalar_one() == 0
    accounts.sign_in(session, email="ana@team.test", password=PASSWORD, now=NOW)
    # A passphrase passes everywhere.
    accounts.create_user(session, admin, email="cat@team.test", name="Cat Smith", role="rep",
                         password="violet tugboat sketches", now=NOW)
    accounts.change_password(session, me, current=PASSWORD, new="seventeen quiet lanterns", now=NOW)


def test_the_command_line_refuses_a_guessable_first_admin_password(database_url, monkeypatch) -> None:
    from crm_app import cli
    from crm_app.db import engine as db_engine_module
    from crm_app.db.engine import make_engine
    from tests.conftest import scratch_database

    with scratch_database(database_url, "crm_cli_admin") as url:  # the command commits: a database of its own
        engine, previous = make_engine(url), db_engine_module._engine
        db_engine_module.set_engine(engine)
        try:
            monkeypatch.setenv("CRM_ADMIN_PASSWORD", "password12")
            with pytest.raises(SystemExit) as stopped:
                cli.main(["create-admin", "--email", "weak.admin@team.test", "--name", "Weak Admin"])
            assert str(stopped.value.code).startswith("Too easy to guess. This is a very common password.")
            with Session(engine) as fresh:
                assert fresh.execute(text("SELECT count(*) FROM users")).scalar_one() == 0
            monkeypatch.setenv("CRM_ADMIN_PASSWORD", "violet tugboat sketches")
            cli.main(["create-admin", "--email", "weak.admin@team.test", "--name", "Weak Admin"])
        finally:
            db_engine_module.set_engine(previous)
            engine.dispose()


# --- Throttles per address (issue #17, item 9) -------------------------------------------------------

ATTACKER, HOME, OFFICE = "198.51.100.66", "203.0.113.5", "192.0.2.44"


def test_a_password_spray_from_one_address_is_stopped_even_at_the_right_password(session: Session) -> None:
    for name in ("ana", "ben", "cat"):
        _user(session, f"{name}@team.test")
    sprayed = ["Summer2026!", "Welcome123", "Password1", "letmein99"]
    # One guess per account per round, never 5 for one email: the old per-email pause never came.
    rounds = [(name, guess) for guess in sprayed for name in ("ana", "ben", "cat")]
    at = NOW
    for name, guess in rounds[: accounts.MAX_SOURCE_FAILURES]:
        with pytest.raises(SignInRefused, match="Wrong email or password"):
            accounts.sign_in(session, email=f"{name}@team.test", password=guess, now=at, source=ATTACKER)
        at += timedelta(seconds=1)
    # The next guess is the right one for Cat: the address is paused, whatever the password.
    paused = r"^Too many failed sign-ins from your network\. Try again in 15 minutes\."
    with pytest.raises(SignInRefused, match=paused):
        accounts.sign_in(session, email="cat@team.test", password=PASSWORD, now=at, source=ATTACKER)
    # Everyone signs in from their own address meanwhile; the pause ends with the window.
    for name in ("ana", "ben", "cat"):
        accounts.sign_in(session, email=f"{name}@team.test", password=PASSWORD, now=at, source=HOME)
    accounts.sign_in(session, email="cat@team.test", password=PASSWORD, now=at + timedelta(minutes=16),
                     source=ATTACKER)


def test_someone_elses_failures_do_not_lock_the_user_out(session: Session) -> None:
    _user(session, "ana@team.test")
    for i in range(accounts.MAX_FAILURES):
        with pytest.raises(SignInRefused, match="Wrong email or password"):
            accounts.sign_in(session, email="ana@team.test", password=f"guess number {i}",
                             now=NOW + timedelta(seconds=i), source=ATTACKER)
    with pytest.raises(SignInRefused, match=r"^Too many failed sign-ins for this email\."):
        accounts.sign_in(session, email="ana@team.test", password=PASSWORD, now=NOW + timedelta(seconds=10),
                         source=ATTACKER)
    # Ana, at home, never typed a wrong password: she signs in, and that does not free the attacker.
    accounts.sign_in(session, email="ana@team.test", password=PASSWORD, now=NOW + timedelta(seconds=11),
                     source=HOME)
    with pytest.raises(SignInRefused, match=r"^Too many failed sign-ins for this email\."):
        accounts.sign_in(session, email="ana@team.test", password=PASSWORD, now=NOW + timedelta(seconds=12),
                         source=ATTACKER)


def test_guessing_from_many_addresses_pauses_new_addresses_but_not_the_users_own(session: Session) -> None:
    _user(session, "ana@team.test")
    accounts.sign_in(session, email="ana@team.test", password=PASSWORD, now=NOW - timedelta(days=3),
                     source=HOME)
    for i in range(accounts.MAX_EMAIL_FAILURES):  # a botnet: one guess per address
        with pytest.raises(SignInRefused, match="Wrong email or password"):
            accounts.sign_in(session, email="ana@team.test", password=f"guess number {i}",
                             now=NOW + timedelta(seconds=i), source=f"100.64.0.{i}")
    later = NOW + timedelta(minutes=1)
    with pytest.raises(SignInRefused, match=r"^Too many failed sign-ins for this email\."):
        accounts.sign_in(session, email="ana@team.test", password=PASSWORD, now=later, source="100.64.1.1")
    with pytest.raises(SignInRefused, match=r"^Too many failed sign-ins for this email\."):
        accounts.sign_in(session, email="ana@team.test", password=PASSWORD, now=later, source=OFFICE)
    token, _ = accounts.sign_in(session, email="ana@team.test", password=PASSWORD, now=later, source=HOME)
    assert token


def test_the_purge_forgets_what_signing_in_no_longer_needs_and_keeps_what_it_does(session: Session) -> None:
    """sign_in_attempts grew forever (session 11 note). After the purge, the throttle and the known
    address still answer as before."""
    _user(session, "pia@team.test")
    accounts.sign_in(session, email="pia@team.test", password=PASSWORD, now=NOW - timedelta(days=200), source=OFFICE)
    accounts.sign_in(session, email="pia@team.test", password=PASSWORD, now=NOW - timedelta(days=3), source=HOME)
    for i in range(3):  # old failures, and fresh ones the throttle still reads
        for at in (NOW - timedelta(days=2, seconds=i), NOW - timedelta(minutes=1, seconds=i)):
            with pytest.raises(SignInRefused):
                accounts.sign_in(session, email="pia@team.test", password=f"guess {i}", now=at, source=OFFICE)
    left = accounts.sign_in(session, email="pia@team.test", password=PASSWORD, now=NOW - timedelta(days=45),
                            source=HOME)[0]
    accounts.sign_out(session, left, NOW - timedelta(days=44))

    def counts() -> tuple[int, int, int]:
        return session.execute(text(
            "SELECT count(*) FILTER (WHERE succeeded), count(*) FILTER (WHERE NOT succeeded), "
            "(SELECT count(*) FROM auth_sessions s JOIN users u ON u.id = s.user_id WHERE u.email = 'pia@team.test') "
            "FROM sign_in_attempts WHERE email = 'pia@team.test'")).one()

    assert counts() == (3, 6, 3)
    gone = accounts.purge_sign_in_records(session, NOW)
    assert counts() == (2, 3, 1)  # the 200-day-old success, the 2-day-old failures, sessions ended a month ago
    assert gone["sign_in_attempts"] >= 4 and gone["auth_sessions"] >= 2
    # What the throttle reads is all still there: the fresh failures count, and home is still known.
    assert accounts._failures(session, "pia@team.test", OFFICE, NOW)["pair"][0] == 3
    assert accounts._failures(session, "pia@team.test", HOME, NOW)["known"][0] == 1
