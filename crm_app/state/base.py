"""The base state: who is looking (a rep picker until accounts exist) and the team list."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import reflex as rx
from sqlmodel import Session

from crm_app.db.engine import get_engine
from crm_app.db.models import utcnow
from crm_app.db.queries import UserOption, list_users

T = TypeVar("T")

# The app's one clock (db.models.utcnow), under the name the states use.
now_utc = utcnow


def open_session() -> Session:
    return Session(get_engine(), expire_on_commit=False)


def _in_session(work: Callable[[Session], T]) -> T:
    with open_session() as session:
        return work(session)


async def run_db(work: Callable[[Session], T]) -> T:
    """Run database work in a thread so a slow query never blocks other users' events."""
    return await asyncio.to_thread(_in_session, work)


class AppState(rx.State):
    """Shared by every page: the team and whose view this is."""

    # Chosen in the sidebar and remembered in the browser; "" until the team has loaded.
    viewer_id: str = rx.LocalStorage("", name="crm_viewer_id")
    users: list[UserOption] = []

    @rx.var
    def viewer_options(self) -> list[list[str]]:
        return [[str(u.id), f"{u.name} ({u.role})"] for u in self.users]

    @rx.var
    def viewer_name(self) -> str:
        for user in self.users:
            if str(user.id) == self.viewer_id:
                return user.name
        return ""

    @rx.var
    def viewer_is_manager(self) -> bool:
        return any(str(u.id) == self.viewer_id and u.role != "rep" for u in self.users)

    async def _load_team(self) -> None:
        if not self.users:
            self.users = await run_db(list_users)
        ids = {str(u.id) for u in self.users}
        if self.viewer_id not in ids and self.users:
            reps = [u for u in self.users if u.role == "rep"]
            self.viewer_id = str((reps or self.users)[0].id)

    def viewer_int(self) -> int | None:
        return int(self.viewer_id) if self.viewer_id.isdecimal() else None
