"""Who is acting and what their role allows: checked by every service that reads or changes what a
role may not see. Row-level security in PostgreSQL (migration 0009) enforces lead visibility again."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlmodel import Session

from crm_app.db.models import User
from crm_app.db.security import APP_ROLE, acting_user_id
from crm_app.domain import Role
from crm_app.services.errors import Forbidden

_RANK = {Role.REP: 0, Role.MANAGER: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class CurrentUser:
    """Who is acting: what every service that checks permissions receives."""

    id: int
    email: str
    name: str
    role: Role

    @property
    def is_manager(self) -> bool:
        """Managers and admins see and edit the whole team."""
        return _RANK[self.role] >= _RANK[Role.MANAGER]

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


def require_role(user: CurrentUser | None, role: Role, doing: str) -> CurrentUser:
    """The user, if their role is at least `role`; else Forbidden naming what was refused."""
    if user is None:
        raise Forbidden(f"Sign in to {doing}.")
    if _RANK[user.role] < _RANK[role]:
        article = "an" if role is Role.ADMIN else "a"
        raise Forbidden(f"Only {article} {role.value} can {doing}.")
    return user


def require_manager(session: Session, actor: CurrentUser | None, doing: str) -> CurrentUser | None:
    """For team-wide changes only a manager makes (how leads are scored, team settings): `actor` must
    be a manager or admin, and the user `session` acts as when it acts as one. `actor=None` means the
    tables' owner (the command line, background jobs, tests) and is refused on a session under the
    app's database role, so a page that forgot to pass its signed-in user gets Forbidden, not the
    owner's rights. A session under the app's role that acts as nobody is refused whatever `actor`
    says, and so is an `actor` other than the user the session acts as."""
    acting = acting_user_id(session)
    if acting is None and session.execute(text("SELECT current_user")).scalar_one() == APP_ROLE:
        raise Forbidden(f"Sign in to {doing}.")
    if actor is None:
        if acting is not None:
            raise Forbidden(f"Sign in to {doing}.")
        return None
    require_role(actor, Role.MANAGER, doing)
    if acting is not None and acting != actor.id:
        raise Forbidden(f"You can only {doing} as yourself, not as {actor.name}.")
    return actor


def recorded_as(session: Session, user_id: int | None, doing: str) -> int | None:
    """Whom a change is recorded as (the activity's or stage change's user, the audit entry's actor).
    On a session acting as a user that is the user: `user_id` None means them, and another user's id is
    refused (a rep cannot log a call as another rep). Otherwise (the tables' owner) `user_id` as given."""
    acting = acting_user_id(session)
    if acting is None or user_id is None:
        return user_id if acting is None else acting
    if user_id != acting:
        raise Forbidden(f"You can only {doing} as yourself.")
    return user_id


def acting_user(session: Session, actor_id: int | None = None) -> CurrentUser | None:
    """Who a service works for: `actor_id` when given, else the user `session` acts as under row-level
    security; None when neither (the tables' owner: the command line, background work). Forbidden when
    `actor_id` is not the user the session acts as."""
    user_id = recorded_as(session, actor_id, "act")
    user = session.get(User, user_id) if user_id is not None else None
    return CurrentUser(user.id, user.email, user.name, Role(user.role)) if user is not None else None
