"""Acting as a user inside PostgreSQL: every transaction of a session marked with `act_as` runs under
the app's non-owner role with the acting user's id, so row-level security (migration 0009) limits
what it can read and write to what that user may see.

The setting is re-applied at the start of every transaction of the session (services commit and go
on), and `SET LOCAL` ends with each transaction, so a pooled connection never carries one user's
identity into another's work.
"""

from __future__ import annotations

from sqlalchemy import event, text
from sqlalchemy.orm import Session as OrmSession

APP_ROLE = "crm_app_user"
_KEY = "crm_acting_user_id"


def act_as(session: OrmSession, user_id: int) -> OrmSession:
    """Mark `session` so its transactions run as `user_id` under row-level security; returns it.
    Call before the session's first query (a transaction already open is switched too)."""
    session.info[_KEY] = int(user_id)
    if session.in_transaction():
        apply_acting_user(session.connection(), int(user_id))
    return session


def acting_user_id(session: OrmSession) -> int | None:
    return session.info.get(_KEY)


def apply_acting_user(connection, user_id: int) -> None:
    """Inside an open transaction of a Core connection: act as `user_id` until it ends."""
    connection.execute(text(f"SET LOCAL ROLE {APP_ROLE}"))
    connection.execute(text("SELECT set_config('crm.user_id', :id, true)"), {"id": str(user_id)})


@event.listens_for(OrmSession, "after_begin")
def _after_begin(session: OrmSession, transaction, connection) -> None:
    user_id = session.info.get(_KEY)
    if user_id is not None:
        apply_acting_user(connection, user_id)
