"""Accounts: passwords, sign-in sessions, throttling, roles and the first admin.

- Passwords are hashed with argon2id (argon2-cffi, its recommended parameters) and never stored,
  logged or returned in clear. A hash made with older parameters is upgraded at the next sign-in.
  A password someone chooses (first admin, new user, own password) must also be hard to guess:
  zxcvbn (Dropbox's estimator, maintained on PyPI) refuses common, repetitive and sequential ones
  and ones made of the user's own name or email, saying why, as ASVS 2.1.7 asks.
- A sign-in gives the browser a random token (256 bits); the database keeps only its SHA-256.
  A session ends at sign-out, after `session_hours` in all, or after `idle_minutes` without use.
  The sign-in form gets a one-time ticket instead (`sign_in_ticket`), which a backend route swaps
  for the token and sets as an HttpOnly cookie (crm_app/auth_routes.py).
- Failed sign-ins are counted per client address ("source"), so a guesser's failures cost the
  guesser, not the user: MAX_FAILURES for one email from one address pause that address for that
  email (the user, elsewhere, still signs in); MAX_SOURCE_FAILURES from one address over any emails
  (a password spray) pause that address; MAX_EMAIL_FAILURES for one email from many addresses (a
  botnet) pause the addresses the user never signed in from, not the ones they use. A paused
  sign-in is refused whatever the password, until its window has passed (the guesser learns nothing).
- Roles: rep < manager < admin. `require_role` refuses with a message; every service that changes
  or reveals what a role may not see calls it with the acting user.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from zxcvbn import zxcvbn
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select, text, update
from sqlmodel import Session

from crm_app.db.models import AuthSession, SignInAttempt, SignInHandoff, User
from crm_app.db.security import acting_user_id
from crm_app.domain import EMAIL_RE, Role
from crm_app.services import audit
from crm_app.services.errors import Forbidden, InvalidInput, NotFound, SignInRefused
from crm_app.services.permissions import CurrentUser, require_role

# The users table's column lengths (db/models.py); the forms' inputs use the same limits.
MAX_NAME, MAX_EMAIL = 120, 254
MIN_PASSWORD, MAX_PASSWORD = 10, 128  # the upper bound keeps hashing cheap to refuse, not cheap to do
MAX_FAILURES = 5  # one email from one address
MAX_SOURCE_FAILURES = 10  # one address, any emails
MAX_EMAIL_FAILURES = 20  # one email, from addresses it has not signed in from
FAILURE_WINDOW = timedelta(minutes=15)
KNOWN_SOURCE_FOR = timedelta(days=90)  # an address the user signed in from this recently is theirs
LOCAL = "local"  # the source of sign-ins not made over the network (scripts, tests)
HANDOFF_SECONDS = 60  # a sign-in ticket's life: the form's page spends it at once

_hasher = PasswordHasher()
# Verified against when the email is unknown, so an unknown email costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not a password anyone has")


def session_hours() -> float:
    return float(os.environ.get("CRM_SESSION_HOURS", "12"))


def idle_minutes() -> float:
    return float(os.environ.get("CRM_SESSION_IDLE_MINUTES", "120"))


def _current(user: User) -> CurrentUser:
    return CurrentUser(user.id, user.email, user.name, Role(user.role))


# --- Passwords ------------------------------------------------------------------------------------


def check_password_rules(password: str, field: str = "password") -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"Use at least {MIN_PASSWORD} characters.", field=field)
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"Use at most {MAX_PASSWORD} characters.", field=field)
    if not password.strip():
        raise InvalidInput("A password cannot be only spaces.", field=field)


# zxcvbn's score, 0-4: 3 is "safely unguessable" (about 10^8 guesses and more), enough behind argon2
# and the sign-in throttles. zxcvbn reads at most 72 characters (its own cap: longer inputs get slow).
MIN_STRENGTH = 3
STRENGTH_CHECKED = 72


def check_password_strength(password: str, field: str = "password", *, about: tuple[str, ...] = ()) -> None:
    """The length rules, then refuse a password that is easy to guess (common, repetitive, a
    sequence, or built from `about`: the user's name and email), with zxcvbn's reason and advice."""
    check_password_rules(password, field)
    words = [w for text in about if text for w in (text, *text.replace("@", " ").replace(".", " ").split())]
    result = zxcvbn(password[:STRENGTH_CHECKED], user_inputs=words, max_length=STRENGTH_CHECKED)
    if result["score"] < MIN_STRENGTH:
        feedback = result.get("feedback") or {}
        advice = [feedback.get("warning") or "", *(feedback.get("suggestions") or [])[:1]]
        advice = [a for a in advice if a] or ["Use a few unrelated words."]
        raise InvalidInput("Too easy to guess. " + " ".join(advice), field=field)


def hash_password(password: str) -> str:
    check_password_rules(password)
    return _hasher.hash(password)


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _clean_email(email: str, field: str = "email") -> str:
    email = (email or "").strip()
    if not email:
        raise InvalidInput("Enter your email address.", field=field)
    if len(email) > MAX_EMAIL:
        raise InvalidInput(f"Use at most {MAX_EMAIL} characters.", field=field)
    if not EMAIL_RE.match(email):
        raise InvalidInput("That is not an email address (like name@company.com).", field=field)
    return email


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise InvalidInput("Enter a name.", field="name")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"Use at most {MAX_NAME} characters.", field="name")
    return name


def _user_by_email(session: Session, email: str) -> User | None:
    query = select(User).where(func.lower(User.email) == email.lower()).execution_options(populate_existing=True)
    return session.execute(query).scalars().first()


# --- First run ------------------------------------------------------------------------------------


def needs_first_admin(session: Session) -> bool:
    """True until an admin who can sign in exists: the sign-in page then offers to create one."""
    count = session.execute(
        text("SELECT count(*) FROM users WHERE role = 'admin' AND is_active AND password_hash IS NOT NULL")
    ).scalar_one()
    return count == 0


def create_first_admin(session: Session, *, email: str, name: str, password: str, now: datetime) -> CurrentUser:
    """Create (or give a password to) the first admin. Refused once an admin can sign in. Commits."""
    session.execute(text("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE"))  # two first-runs at once: one wins
    if not needs_first_admin(session):
        raise Forbidden("An admin already exists: sign in, and ask them for an account.")
    email, name = _clean_email(email), _clean_name(name)
    check_password_strength(password, about=(email, name))
    user = _user_by_email(session, email)
    if user is None:
        user = User(email=email, name=name, role=Role.ADMIN.value)
    user.role, user.name, user.is_active = Role.ADMIN.value, name, True
    user.password_hash, user.password_changed_at = _hasher.hash(password), now
    session.add(user)
    session.flush()
    audit.record(session, now=now, actor_id=user.id, action="first_admin", entity="user", entity_id=user.id,
                 new={"email": email, "name": name, "role": Role.ADMIN.value})
    session.commit()
    return _current(user)


# --- Signing in and out ---------------------------------------------------------------------------


def _failures(session: Session, email: str, source: str, now: datetime
              ) -> dict[str, tuple[int, datetime | None]]:
    """The failures that may pause this sign-in, each as (count, oldest) within the window:
    - "pair": this email from this address, since this address last signed in to it;
    - "source": this address, any emails (successes do not reset it: a sprayer has accounts too);
    - "email": this email from anywhere, since its last success; and whether `source` is "known",
      an address this email signed in from within KNOWN_SOURCE_FOR."""
    rows = session.execute(
        text(
            """
            WITH last_ok AS (
              SELECT max(attempted_at) FILTER (WHERE source IS NOT DISTINCT FROM :source) AS here,
                     max(attempted_at) AS anywhere
                FROM sign_in_attempts WHERE lower(email) = lower(:email) AND succeeded
            )
            SELECT 'pair', count(*), min(attempted_at) FROM sign_in_attempts, last_ok
             WHERE lower(email) = lower(:email) AND source IS NOT DISTINCT FROM :source AND NOT succeeded
               AND attempted_at > :since AND attempted_at > coalesce(last_ok.here, '-infinity')
            UNION ALL
            SELECT 'source', count(*), min(attempted_at) FROM sign_in_attempts
             WHERE source = :source AND NOT succeeded AND attempted_at > :since
            UNION ALL
            SELECT 'email', count(*), min(attempted_at) FROM sign_in_attempts, last_ok
             WHERE lower(email) = lower(:email) AND NOT succeeded
               AND attempted_at > :since AND attempted_at > coalesce(last_ok.anywhere, '-infinity')
            UNION ALL
            SELECT 'known', count(*), NULL FROM last_ok WHERE last_ok.here > :known_since
            """
        ),
        {"email": email, "source": source, "since": now - FAILURE_WINDOW,
         "known_since": now - KNOWN_SOURCE_FOR},
    ).all()
    return {kind: (count, oldest) for kind, count, oldest in rows}


FAILURES_KEPT = timedelta(days=1)  # a day of failed tries to look into; the throttle reads 15 minutes
ENDED_SESSIONS_KEPT = timedelta(days=30)


def purge_sign_in_records(session: Session, now: datetime) -> dict[str, int]:
    """Forget what signing in no longer needs; commits (the periodic purge calls this). Failed tries
    go after FAILURES_KEPT (the throttle reads FAILURE_WINDOW), successful ones after KNOWN_SOURCE_FOR
    (what makes an address known), sessions a month after they ended, tickets once expired. Returns
    how many rows went, by table."""
    gone = {
        "sign_in_attempts": session.execute(
            text("DELETE FROM sign_in_attempts WHERE attempted_at < CASE WHEN succeeded THEN :ok ELSE :failed END"),
            {"ok": now - KNOWN_SOURCE_FOR, "failed": now - FAILURES_KEPT}).rowcount,
        "auth_sessions": session.execute(
            text("DELETE FROM auth_sessions WHERE least(expires_at, coalesce(revoked_at, 'infinity')) < :old"),
            {"old": now - ENDED_SESSIONS_KEPT}).rowcount,
        "sign_in_handoffs": session.execute(
            text("DELETE FROM sign_in_handoffs WHERE expires_at < :now"), {"now": now}).rowcount,
    }
    session.commit()
    return gone


def _pause(oldest: datetime, now: datetime) -> str:
    wait = max(1, int(((oldest + FAILURE_WINDOW) - now).total_seconds() // 60) + 1)
    return f"Try again in {wait} minute{'s' if wait != 1 else ''}."


def _check_credentials(session: Session, email: str, password: str, now: datetime, source: str) -> User:
    """The user whose password this is, after the throttles; the attempt is recorded (a failure is
    committed at once). SignInRefused otherwise, with the same message for an unknown email and a
    wrong password, so the form does not tell which emails have accounts."""
    email, source = _clean_email(email), (source or LOCAL)[:64]
    if not password:
        raise InvalidInput("Enter your password.", field="password")
    failures = _failures(session, email, source, now)
    pair, from_source, for_email = failures["pair"], failures["source"], failures["email"]
    if pair[0] >= MAX_FAILURES:
        raise SignInRefused(f"Too many failed sign-ins for this email. {_pause(pair[1], now)}")
    if from_source[0] >= MAX_SOURCE_FAILURES:
        raise SignInRefused(f"Too many failed sign-ins from your network. {_pause(from_source[1], now)}")
    if for_email[0] >= MAX_EMAIL_FAILURES and not failures["known"][0]:
        raise SignInRefused(f"Too many failed sign-ins for this email. {_pause(for_email[1], now)}")
    user = _user_by_email(session, email)
    too_long = len(password) > MAX_PASSWORD  # no stored password is longer: refuse without hashing it
    ok = not too_long and _verify(user.password_hash if user else None, password) and bool(user and user.is_active)
    session.add(SignInAttempt(email=email, attempted_at=now, succeeded=ok, source=source))
    if not ok:
        session.commit()
        left = MAX_FAILURES - pair[0] - 1
        hint = f" {left} more tr{'y' if left == 1 else 'ies'} before a 15-minute pause." if 0 < left <= 2 else ""
        raise SignInRefused("Wrong email or password." + hint)
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
        session.add(user)
    return user


def _open_session(session: Session, user_id: int, now: datetime) -> str:
    token = secrets.token_urlsafe(32)
    session.add(AuthSession(token_hash=_token_hash(token), user_id=user_id, created_at=now, last_seen_at=now,
                            expires_at=now + timedelta(hours=session_hours())))
    return token


def sign_in(session: Session, *, email: str, password: str, now: datetime, source: str = LOCAL
            ) -> tuple[str, CurrentUser]:
    """Check the password and open a session: (token for the browser's cookie, the user). Commits.
    `source` is the client's address (see the module's docstring for what pauses a sign-in)."""
    user = _check_credentials(session, email, password, now, source)
    token = _open_session(session, user.id, now)
    session.commit()
    return token, _current(user)


def sign_in_ticket(session: Session, *, email: str, password: str, now: datetime, source: str = LOCAL
                   ) -> tuple[str, CurrentUser]:
    """Check the password like `sign_in`, but instead of a session token give a one-time ticket
    (valid HANDOFF_SECONDS) that `redeem_ticket` swaps for one. The sign-in form hands the ticket to
    a backend route, which sets the session cookie HttpOnly: the page's JavaScript never sees the
    session token, only a ticket that is spent at once. Commits."""
    user = _check_credentials(session, email, password, now, source)
    ticket = secrets.token_urlsafe(32)
    session.execute(text("DELETE FROM sign_in_handoffs WHERE expires_at < :now"), {"now": now})
    session.add(SignInHandoff(ticket_hash=_token_hash(ticket), user_id=user.id,
                              expires_at=now + timedelta(seconds=HANDOFF_SECONDS)))
    session.commit()
    return ticket, _current(user)


def redeem_ticket(session: Session, ticket: str, now: datetime) -> str | None:
    """The session token for a sign-in ticket, once: None when the ticket is unknown, spent, expired,
    or its user can no longer sign in. Commits."""
    if not ticket or len(ticket) > 100:
        return None
    user_id = session.execute(
        text("DELETE FROM sign_in_handoffs WHERE ticket_hash = :hash RETURNING user_id, expires_at > :now"),
        {"hash": _token_hash(ticket), "now": now},
    ).first()
    if user_id is None or not user_id[1]:
        session.commit()
        return None
    user = session.get(User, user_id[0])
    if user is None or not user.is_active or user.password_hash is None:
        session.commit()
        return None
    token = _open_session(session, user.id, now)
    session.commit()
    return token


def _live_session(session: Session, which: str, params: dict, now: datetime):
    """The session row matching `which` if it is still signed in: not signed out, expired or idle too
    long, and its user active with a password. As the tables' owner."""
    return session.execute(
        text(
            f"""
            SELECT s.id, s.last_seen_at, u.id AS user_id, u.email, u.name, u.role
              FROM auth_sessions s JOIN users u ON u.id = s.user_id
             WHERE {which} AND s.revoked_at IS NULL AND s.expires_at > :now
               AND s.last_seen_at > :idle_since AND u.is_active AND u.password_hash IS NOT NULL
            """
        ),
        {**params, "now": now, "idle_since": now - timedelta(minutes=idle_minutes())},
    ).first()


def session_user(session: Session, token: str, now: datetime) -> CurrentUser | None:
    """The signed-in user of a browser's token, or None when it is unknown, expired, idle too long,
    signed out, or the user was deactivated. Use counts as activity (commits the touch)."""
    if not token:
        return None
    row = _live_session(session, "s.token_hash = :hash", {"hash": _token_hash(token)}, now)
    if row is None:
        return None
    if now - row.last_seen_at > timedelta(minutes=1):  # one write a minute, not one per event
        session.execute(text("UPDATE auth_sessions SET last_seen_at = :now WHERE id = :id"), {"now": now, "id": row.id})
        session.commit()
    return CurrentUser(row.user_id, row.email, row.name, Role(row.role))


def live_session_id(session: Session, token: str, now: datetime) -> int | None:
    """The id of the browser's session while it is signed in (for links that must end with it, such
    as an export link), else None. Does not count as use."""
    row = _live_session(session, "s.token_hash = :hash", {"hash": _token_hash(token)}, now) if token else None
    return row.id if row is not None else None


def session_is_live(session: Session, session_id: int, user_id: int, now: datetime) -> bool:
    """Is session `session_id` still signed in, as `user_id`, and that user active? Does not count as use."""
    return _live_session(session, "s.id = :id AND s.user_id = :user", {"id": session_id, "user": user_id},
                         now) is not None


def sign_out(session: Session, token: str, now: datetime) -> None:
    """End this browser's session. Commits."""
    if token:
        session.execute(
            update(AuthSession)
            .where(AuthSession.token_hash == _token_hash(token), AuthSession.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        session.commit()


def _revoke_sessions(session: Session, user_id: int, now: datetime, keep_token: str | None = None) -> None:
    keep = _token_hash(keep_token) if keep_token else ""
    session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None), AuthSession.token_hash != keep)
        .values(revoked_at=now)
    )


def change_password(
    session: Session, user: CurrentUser, *, current: str, new: str, now: datetime, keep_token: str | None = None
) -> None:
    """Change one's own password; every other signed-in browser of this user is signed out. Commits.

    Runs as the tables' owner, for the user of a checked session (like signing in): the current
    password is checked against the stored hash, which the app role may not read (migration 0016)."""
    if acting_user_id(session) is not None:
        raise Forbidden("A password is changed by the sign-in service, not under row-level security.")
    row = session.get(User, user.id)
    if row is None:
        raise NotFound("Your account no longer exists.")
    if not _verify(row.password_hash, current):
        raise InvalidInput("That is not your current password.", field="current")
    check_password_strength(new, field="new", about=(row.email, row.name))
    if new == current:
        raise InvalidInput("Choose a password different from the current one.", field="new")
    row.password_hash, row.password_changed_at = _hasher.hash(new), now
    session.add(row)
    _revoke_sessions(session, user.id, now, keep_token)
    audit.record(session, now=now, actor_id=user.id, action="password_changed", entity="user", entity_id=user.id)
    session.commit()


# --- Users (admin) --------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserRow:
    id: int
    email: str
    name: str
    role: str
    is_active: bool
    can_sign_in: bool


def open_leads_of(session: Session, user_id: int) -> tuple[int, str]:
    """How many open leads a user owns and their total value ("$12,000"), for the deactivation's
    confirmation; counted in SQL under the caller's row-level security."""
    count, value = session.execute(
        text("SELECT count(*), coalesce(sum(deal_value), 0) FROM leads "
             "WHERE owner_id = :id AND stage NOT IN ('won', 'lost')"), {"id": user_id}).one()
    return count, f"${float(value):,.0f}"


def list_accounts(session: Session, actor: CurrentUser) -> list[UserRow]:
    require_role(actor, Role.ADMIN, "manage users")
    rows = session.execute(
        text("SELECT id, email, name, role, is_active, has_password FROM users ORDER BY lower(name), id")
    )
    return [UserRow(*row) for row in rows]


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidInput("Choose rep, manager or admin.", field="role") from None


def create_user(
    session: Session, actor: CurrentUser, *, email: str, name: str, role: str, password: str, now: datetime
) -> int:
    """An admin adds a teammate with a first password to hand over. Commits."""
    require_role(actor, Role.ADMIN, "add users")
    # Every bad field at once, so the admin fixes the form in one go.
    errors: dict[str, str] = {}
    email, name, role_ = (_checked(errors, check, value) for check, value in
                          ((_clean_email, email), (_clean_name, name), (_role, role)))
    _checked(errors, lambda p: check_password_strength(p, about=(email or "", name or "")), password)
    if email and _user_by_email(session, email) is not None:
        errors["email"] = "Someone on the team already has this email."
    if errors:
        raise InvalidInput.of_fields(errors)
    user = User(email=email, name=name, role=role_.value, password_hash=_hasher.hash(password), password_changed_at=now)
    session.add(user)
    session.flush()
    audit.record(session, now=now, actor_id=actor.id, action="user_created", entity="user", entity_id=user.id,
                 new={"email": email, "name": name, "role": role_.value})
    session.commit()
    return user.id


def _checked(errors: dict[str, str], check, value):
    """check(value), or None with its InvalidInput's message added to `errors` under its field."""
    try:
        return check(value)
    except InvalidInput as error:
        errors[error.field or "form"] = str(error)
        return None


def _other_admins(session: Session, user_id: int) -> int:
    return session.execute(
        text("SELECT count(*) FROM users WHERE role = 'admin' AND is_active AND id <> :id"), {"id": user_id}
    ).scalar_one()


def set_role(session: Session, actor: CurrentUser, user_id: int, role: str, now: datetime) -> None:
    """An admin changes a teammate's role; the last active admin cannot demote themselves. Commits."""
    require_role(actor, Role.ADMIN, "change roles")
    role_ = _role(role)
    session.execute(text("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE"))
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"User {user_id} does not exist.")
    if user.role == Role.ADMIN.value and role_ is not Role.ADMIN and _other_admins(session, user_id) == 0:
        raise InvalidInput("The team needs at least one admin: make someone else admin first.", field="role")
    if user.role != role_.value:
        audit.record(session, now=now, actor_id=actor.id, action="role_changed", entity="user", entity_id=user_id,
                     old={"role": user.role}, new={"role": role_.value})
        user.role = role_.value
        session.add(user)
        _revoke_sessions(session, user_id, now)  # the new role applies from the next sign-in
    session.commit()


def set_active(session: Session, actor: CurrentUser, user_id: int, active: bool, now: datetime) -> None:
    """An admin deactivates (signs out everywhere, cannot sign in) or reactivates a teammate. Commits."""
    require_role(actor, Role.ADMIN, "deactivate users")
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"User {user_id} does not exist.")
    if not active and user.role == Role.ADMIN.value and _other_admins(session, user_id) == 0:
        raise InvalidInput("The last admin cannot be deactivated.", field="active")
    if user.is_active != active:
        audit.record(session, now=now, actor_id=actor.id, action="user_activated" if active else "user_deactivated",
                     entity="user", entity_id=user_id, old={"is_active": user.is_active}, new={"is_active": active})
        user.is_active = active
        session.add(user)
        if not active:
            _revoke_sessions(session, user_id, now)
    session.commit()
