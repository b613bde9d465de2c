"""API keys for the REST API: created and revoked by an admin, each acting as one user.

- The secret is `crm_` + 43 random URL-safe characters (256 bits). It is shown once, when created;
  the database keeps its SHA-256 (a fast hash is right for a random secret: there is nothing to
  guess) and its first characters, so the admin can tell keys apart.
- A key acts as its user: every request runs under that user's row-level security, so a rep's key
  sees what the rep sees. Scope `read` may only read; `write` may also create and change.
- Requests are counted per key per minute in PostgreSQL (every worker shares the count); over the
  key's limit the API answers 429 with the seconds to wait. Requests without a valid key are
  counted per client address, so guessing keys or sending garbage spends the sender's own budget.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlmodel import Session

from crm_app.db.models import ApiKey, User
from crm_app.domain import Role
from crm_app.services import audit
from crm_app.services.errors import Forbidden, InvalidInput, NotFound, ServiceError
from crm_app.services.permissions import CurrentUser, require_role
from crm_app.services.queue import relative_time

SECRET_PREFIX = "crm_"
SHOWN_PREFIX = 12  # characters of the secret kept in clear to recognise a key ("crm_AbC123xy")
SCOPES = ("read", "write")
DEFAULT_RATE = 600  # requests per minute
IDEMPOTENCY_KEPT = timedelta(days=1)  # a retry within a day of the first try is answered from the store
MAX_RATE = 100_000


class KeyRefused(ServiceError):
    """A missing, unknown, revoked or powerless key: the API answers 401."""


@dataclass(frozen=True)
class ApiPrincipal:
    """Who an API request acts as, and what its key allows."""

    key_id: int
    key_name: str
    scope: str
    rate_per_minute: int
    user: CurrentUser

    @property
    def can_write(self) -> bool:
        return self.scope == "write"


@dataclass(frozen=True)
class KeyRow:
    """A key as the API keys page lists it (never its secret)."""

    id: int
    name: str
    prefix: str
    scope: str
    acts_as: str
    acts_as_role: str
    created_label: str
    last_used_label: str
    revoked: bool
    revoked_label: str
    rate_per_minute: int


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise InvalidInput("Name the key after what uses it (like \"Website forms\").", field="name")
    if len(name) > 80:
        raise InvalidInput("Use at most 80 characters.", field="name")
    return name


def _clean_rate(rate: int | str | None) -> int:
    if rate in (None, ""):
        return DEFAULT_RATE
    try:
        value = int(str(rate).strip())
    except ValueError:
        raise InvalidInput("Requests per minute is a whole number, like 600.", field="rate") from None
    if not 1 <= value <= MAX_RATE:
        raise InvalidInput(f"Requests per minute must be between 1 and {MAX_RATE:,}.", field="rate")
    return value


def create_key(
    session: Session, actor: CurrentUser, *, name: str, scope: str, user_id: int | None, now: datetime,
    rate_per_minute: int | str | None = None,
) -> tuple[str, int]:
    """An admin makes a key acting as `user_id`. Returns (the secret, shown only now; key id). Commits."""
    require_role(actor, Role.ADMIN, "create API keys")
    name = _clean_name(name)
    if scope not in SCOPES:
        raise InvalidInput("Choose read or write.", field="scope")
    rate = _clean_rate(rate_per_minute)
    user = session.get(User, user_id) if user_id else None
    if user is None:
        raise InvalidInput("Choose the person the key acts as.", field="user")
    if not user.is_active:
        raise InvalidInput(f"{user.name} is deactivated: a key cannot act as them.", field="user")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(name=name, prefix=secret[:SHOWN_PREFIX], secret_hash=secret_hash(secret), scope=scope,
                 user_id=user.id, created_by=actor.id, created_at=now, rate_per_minute=rate)
    session.add(key)
    session.flush()
    audit.record(session, now=now, actor_id=actor.id, action="api_key_created", entity="api_key", entity_id=key.id,
                 new={"name": name, "scope": scope, "acts_as": user.name, "rate_per_minute": rate})
    session.commit()
    return secret, key.id


def list_keys(session: Session, actor: CurrentUser, now: datetime) -> list[KeyRow]:
    """Every key, usable ones first, newest first."""
    require_role(actor, Role.ADMIN, "manage API keys")
    rows = session.execute(
        text(
            """
            SELECT k.id, k.name, k.prefix, k.scope, u.name, u.role, k.created_at, k.last_used_at, k.revoked_at,
                   k.rate_per_minute
              FROM api_keys k JOIN users u ON u.id = k.user_id
             ORDER BY k.revoked_at IS NOT NULL, k.created_at DESC, k.id DESC
            """
        )
    )
    return [
        KeyRow(key_id, name, prefix, scope, user_name, role, f"{created:%Y-%m-%d %H:%M}",
               relative_time(used, now) if used else "never", revoked is not None,
               f"{revoked:%Y-%m-%d %H:%M}" if revoked else "", rate)
        for key_id, name, prefix, scope, user_name, role, created, used, revoked, rate in rows
    ]


def purge_old_records(session: Session, now: datetime) -> int:
    """Forget idempotency answers older than a day and rate windows older than an hour; commits.
    (The periodic sweep calls this.) Returns how many idempotency answers went."""
    gone = session.execute(text("DELETE FROM api_idempotency WHERE created_at < :old"),
                           {"old": now - IDEMPOTENCY_KEPT}).rowcount
    session.execute(text("DELETE FROM api_rate_windows WHERE window_start < :old"), {"old": now - timedelta(hours=1)})
    session.execute(text("DELETE FROM api_rate_sources WHERE window_start < :old"),
                    {"old": now - timedelta(hours=1)})
    session.commit()
    return gone


def revoke_key(session: Session, actor: CurrentUser, key_id: int, now: datetime) -> None:
    """An admin revokes a key: its next request is refused. Revoking twice changes nothing. Commits."""
    require_role(actor, Role.ADMIN, "revoke API keys")
    key = session.get(ApiKey, key_id, with_for_update=True)
    if key is None:
        raise NotFound(f"API key {key_id} does not exist.")
    if key.revoked_at is None:
        key.revoked_at, key.revoked_by = now, actor.id
        session.add(key)
        audit.record(session, now=now, actor_id=actor.id, action="api_key_revoked", entity="api_key",
                     entity_id=key.id, old={"name": key.name, "revoked": False}, new={"revoked": True})
    session.commit()


def authenticate(session: Session, secret: str | None) -> ApiPrincipal:
    """The key behind `secret`, with its user; KeyRefused when there is none that may act.
    Runs as the database owner (nobody is acting yet); it only reads."""
    if not secret:
        raise KeyRefused("Send your API key as 'Authorization: Bearer <key>'.")
    row = session.execute(
        text(
            """
            SELECT k.id, k.name, k.scope, k.rate_per_minute, k.revoked_at, u.id, u.email, u.name, u.role, u.is_active
              FROM api_keys k JOIN users u ON u.id = k.user_id
             WHERE k.secret_hash = :hash
            """
        ),
        {"hash": secret_hash(secret.strip())},
    ).first()
    if row is None:
        raise KeyRefused("This API key is not valid.")
    key_id, key_name, scope, rate, revoked_at, user_id, email, user_name, role, active = row
    if revoked_at is not None:
        raise KeyRefused(f"This API key was revoked on {revoked_at:%Y-%m-%d %H:%M} UTC.")
    if not active:
        raise KeyRefused(f"This API key acts as {user_name}, who is deactivated.")
    return ApiPrincipal(key_id, key_name, scope, rate, CurrentUser(user_id, email, user_name, Role(role)))


def require_write(principal: ApiPrincipal) -> None:
    if not principal.can_write:
        raise Forbidden("This API key is read-only: create a write key to change data.")


def take_request(session: Session, principal: ApiPrincipal, now: datetime) -> RateDecision:
    """Count one request against the key's per-minute limit and commit (its own short transaction,
    so concurrent requests of one key wait only for this counter, not for each other's work)."""
    window = now.replace(second=0, microsecond=0)
    used = session.execute(
        text(
            """
            INSERT INTO api_rate_windows (api_key_id, window_start, requests) VALUES (:key, :window, 1)
            ON CONFLICT (api_key_id, window_start) DO UPDATE SET requests = api_rate_windows.requests + 1
            RETURNING requests
            """
        ),
        {"key": principal.key_id, "window": window},
    ).scalar_one()
    if used == 1:
        # A key's first request in a minute: note its use and forget windows older than an hour.
        session.execute(text("UPDATE api_keys SET last_used_at = :now WHERE id = :key"),
                        {"now": now, "key": principal.key_id})
        session.execute(text("DELETE FROM api_rate_windows WHERE api_key_id = :key AND window_start < :old"),
                        {"key": principal.key_id, "old": window - timedelta(hours=1)})
    session.commit()
    limit = principal.rate_per_minute
    reset = max(1, int((window + timedelta(minutes=1) - now).total_seconds() + 0.999))
    return RateDecision(used <= limit, limit, max(0, limit - used), reset)


def take_keyless_request(session: Session, source: str, now: datetime, limit: int) -> RateDecision:
    """Count one request without a valid key against its client address's per-minute `limit` and
    commit (its own short transaction, like take_request)."""
    window = now.replace(second=0, microsecond=0)
    used = session.execute(
        text(
            """
            INSERT INTO api_rate_sources (source, window_start, requests) VALUES (:source, :window, 1)
            ON CONFLICT (source, window_start) DO UPDATE SET requests = api_rate_sources.requests + 1
            RETURNING requests
            """
        ),
        {"source": source[:64], "window": window},
    ).scalar_one()
    session.commit()
    reset = max(1, int((window + timedelta(minutes=1) - now).total_seconds() + 0.999))
    return RateDecision(used <= limit, limit, max(0, limit - used), reset)
