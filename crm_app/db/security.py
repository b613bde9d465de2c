"""Acting as a user inside PostgreSQL: every transaction of a session marked with `act_as` runs under
the app's non-owner role with the acting user's id, so row-level security (migration 0009) limits
what it can read and write to what that user may see.

The acting user cannot be forged from inside a transaction (migration 0016). The id travels in the
setting `crm.user_id` together with `crm.acting_proof`, a keyed hash of that id, the connection's
backend process and the transaction's start time; the key lives in `crm_private.acting_key`, which
only the tables' owner reads. `crm_acting_user()`, which every policy asks, is a SECURITY DEFINER
function that recomputes the proof and answers NULL (nobody: no rows) when it does not match. So SQL
running under the app's login, injected or not, can read the proof of its own transaction but cannot
make one for another user or another transaction, and `set_config('crm.user_id', ...)` alone names
nobody. The web app holds the key in memory (read once per connection through the owner's login) and
never sends it: the database sees only the proof.

The setting is re-applied at the start of every transaction of the session (services commit and go
on), and `SET LOCAL` ends with each transaction, so a pooled connection never carries one user's
identity into another's work.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession

APP_ROLE = "crm_app_user"
# The login the web app connects with for users' work (migration 0016 creates it where it can).
WEB_ROLE = "crm_web"
_KEY = "crm_acting_user_id"
# Per pooled connection (Connection.info): the acting key, and where to read it again.
_ACTING_KEY = "crm_acting_key"
_KEY_SOURCE = "crm_acting_key_source"


class ActingUserRefused(RuntimeError):
    """The database did not accept the acting user: the key the app holds is not this database's
    (CRM_APP_DATABASE_URL names another database than DATABASE_URL, or the database was re-migrated
    while the app ran)."""


def act_as(session: OrmSession, user_id: int) -> OrmSession:
    """Mark `session` so its transactions run as `user_id` under row-level security; returns it.
    Call before the session's first query (a transaction already open is switched too)."""
    session.info[_KEY] = int(user_id)
    if session.in_transaction():
        apply_acting_user(session.connection(), int(user_id))
    return session


def acting_user_id(session: OrmSession) -> int | None:
    return session.info.get(_KEY)


def acting_proof(key: bytes, user_id: int, challenge: str) -> str:
    """What crm_acting_user() recomputes (migration 0016): sha256(key || sha256(key || message)), the
    nested form so a known proof cannot be extended into another (no pgcrypto HMAC is needed)."""
    message = f"{user_id}:{challenge}".encode()
    return hashlib.sha256(key + hashlib.sha256(key + message).digest()).hexdigest()


def read_acting_key(connection) -> bytes:
    """The acting key, read as the tables' owner (the app role may not)."""
    return bytes(connection.exec_driver_sql("SELECT key FROM crm_private.acting_key").scalar_one())


def provide_acting_key(engine: Engine, key_source: Callable[[], bytes]) -> None:
    """Give every new connection of `engine` (the web app's login, which may not read the key) the key
    from `key_source` (a read through the owner's login)."""

    @event.listens_for(engine, "connect")
    def _hold_key(_dbapi_connection, record) -> None:
        record.info[_ACTING_KEY] = key_source()
        record.info[_KEY_SOURCE] = key_source


def _key(connection) -> bytes:
    key = connection.info.get(_ACTING_KEY)
    if key is None:  # the tables' owner acting as someone (tests, the benchmark): read it here
        connection.exec_driver_sql("SET LOCAL ROLE NONE")
        key = connection.info[_ACTING_KEY] = read_acting_key(connection)
    return key


def _prove(connection, user_id: int, key: bytes, challenge: str) -> int | None:
    return connection.exec_driver_sql(
        "SELECT set_config('crm.user_id', %(user)s, true), set_config('crm.acting_proof', %(proof)s, true);"
        " SELECT crm_acting_user()",
        {"user": str(user_id), "proof": acting_proof(key, user_id, challenge)},
    ).scalar_one()


def apply_acting_user(connection, user_id: int) -> None:
    """Inside an open transaction of a Core connection: act as `user_id` until it ends. Two round
    trips, as before the proof: the role and this transaction's challenge, then the proven user."""
    key = _key(connection)
    challenge = connection.exec_driver_sql(f"SET LOCAL ROLE {APP_ROLE}; SELECT crm_acting_challenge()").scalar_one()
    if _prove(connection, user_id, key, challenge) == user_id:
        return
    source = connection.info.get(_KEY_SOURCE)
    if source is not None:  # re-migrated while running: fetch the new key once
        key = connection.info[_ACTING_KEY] = source()
        if _prove(connection, user_id, key, challenge) == user_id:
            return
    raise ActingUserRefused(
        "The database refused the acting user: the app's acting key does not match this database's "
        "(CRM_APP_DATABASE_URL must name the same database as DATABASE_URL)."
    )


@event.listens_for(OrmSession, "after_begin")
def _after_begin(session: OrmSession, transaction, connection) -> None:
    user_id = session.info.get(_KEY)
    if user_id is not None:
        apply_acting_user(connection, user_id)
