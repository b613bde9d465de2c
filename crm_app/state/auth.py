"""Signing in, the first admin, one's own password, the team's accounts (admin) and the audit log."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import reflex as rx

from crm_app.domain import Role
from crm_app.services import accounts, audit
from crm_app.services.errors import Forbidden, InvalidInput, ServiceError
from crm_app.state.base import SESSION_ENDED, SIGN_IN, AppState, now_utc, run_system_db, typed_into


def _safe_next(url: str) -> str:
    """Where to go after signing in: a path of this app only (never another site)."""
    query = parse_qs(urlsplit(url).query)
    target = (query.get("next") or ["/"])[0]
    if not target.startswith("/") or target.startswith("//") or "\\" in target or target.startswith(SIGN_IN):
        return "/"
    return target


class SignInState(AppState):
    first_run: bool = False
    email: str = ""
    name: str = ""
    password: str = ""
    confirm: str = ""
    errors: dict[str, str] = {}
    message: str = ""
    busy: bool = False

    @rx.event
    async def load(self):
        if await self._current_user() is not None:
            return rx.redirect(_safe_next(str(self.router.url)))
        self.first_run = await run_system_db(accounts.needs_first_admin)
        # What was typed stays (a fast typist may be ahead of this event); only old messages go. A
        # token the browser still holds belonged to a session that ended (expired, idle, revoked).
        ended = bool(self.auth_token) and self.auth_token != self._signed_out_token
        if self.auth_token and not ended:
            self.auth_token = ""  # the token signed out of, handed back by the browser: forget it again
        self.errors, self.message = {}, SESSION_ENDED if ended else ""

    @rx.event
    def set_field(self, field: str, value: str):
        if field in ("email", "name", "password", "confirm"):
            setattr(self, field, value[:300])
            self.errors = {k: v for k, v in self.errors.items() if k != field}

    @rx.event
    async def submit(self):
        self.errors, self.message, self.busy = {}, "", True
        yield
        email, password, name, now = self.email, self.password, self.name, now_utc()
        try:
            if self.first_run:
                if password != self.confirm:
                    raise InvalidInput("The two passwords differ.", field="confirm")
                await run_system_db(
                    lambda s: accounts.create_first_admin(s, email=email, name=name, password=password, now=now)
                )
            token, user = await run_system_db(
                lambda s: accounts.sign_in(s, email=email, password=password, now=now)
            )
        except InvalidInput as error:
            self.errors = {error.field or "form": str(error)}
            self.busy = False
            return
        except ServiceError as error:
            self.message, self.busy = str(error), False
            if isinstance(error, Forbidden):  # someone else created the admin meanwhile
                self.first_run = False
            return
        self.auth_token = token
        self._set_user(user)
        self.password = self.confirm = ""
        self.busy = False
        yield rx.redirect(_safe_next(str(self.router.url)))


class AccountState(AppState):
    current: str = ""
    new: str = ""
    confirm: str = ""
    errors: dict[str, str] = {}
    saved: bool = False

    @rx.event
    async def load(self):
        if not await self._load_team():
            return self._sign_in_redirect()
        self.current = self.new = self.confirm = ""
        self.errors, self.saved = {}, False

    @rx.event
    def set_field(self, field: str, value: str):
        if field in ("current", "new", "confirm"):
            setattr(self, field, value[:300])
            self.saved = False

    @rx.event
    async def change_password(self):
        user = await self._actor()
        self.errors, self.saved = {}, False
        if self.new != self.confirm:
            self.errors = {"confirm": "The two new passwords differ."}
            return
        current, new, token, now = self.current, self.new, self.auth_token, now_utc()
        try:  # as the owner: the app role may not read the hash the current password is checked against
            await run_system_db(lambda s: accounts.change_password(s, user, current=current, new=new, now=now,
                                                                   keep_token=token))
        except InvalidInput as error:
            self.errors = {error.field or "form": str(error)}
            return
        self.current = self.new = self.confirm = ""
        self.saved = True


class UsersState(AppState):
    """Admin: the team's accounts."""

    accounts: list[accounts.UserRow] = []
    draft: dict[str, str] = {"name": "", "email": "", "role": "rep", "password": ""}
    errors: dict[str, str] = {}
    message: str = ""

    async def _refresh(self) -> None:
        user = await self._actor()
        self.accounts = await self._db(lambda s: accounts.list_accounts(s, user))

    @rx.event
    async def load(self):
        if not await self._load_team():
            return self._sign_in_redirect()
        if not self.viewer_is_admin:
            self.accounts, self.message = [], "Only an admin can manage users."
            return
        self.message = ""
        await self._refresh()

    @rx.event
    def set_draft(self, field: str, value: str):
        self.draft, self.errors = typed_into(self.draft, self.errors, field, value)

    @rx.event
    async def add_user(self):
        user, draft, now = await self._actor(), dict(self.draft), now_utc()
        try:
            await self._db(lambda s: accounts.create_user(
                s, user, email=draft["email"], name=draft["name"], role=draft["role"], password=draft["password"], now=now))
        except InvalidInput as error:
            self.errors = {error.field or "form": str(error)}
            return
        self.draft = {"name": "", "email": "", "role": "rep", "password": ""}
        self.errors, self.message = {}, f"Added {draft['name'].strip()}: hand them their first password."
        await self._refresh()

    @rx.event
    async def set_role(self, user_id: int, role: str):
        actor, now = await self._actor(), now_utc()
        try:
            await self._db(lambda s: accounts.set_role(s, actor, int(user_id), role, now))
            self.message = "Role changed; it applies from their next sign-in."
        except ServiceError as error:
            self.message = str(error)
        await self._refresh()

    @rx.event
    async def set_active(self, user_id: int, active: bool):
        actor, now = await self._actor(), now_utc()
        try:
            await self._db(lambda s: accounts.set_active(s, actor, int(user_id), bool(active), now))
            self.message = "Reactivated." if active else "Deactivated and signed out everywhere."
        except ServiceError as error:
            self.message = str(error)
        await self._refresh()

    @rx.var
    def role_options(self) -> list[str]:
        return [r.value for r in Role]


class AuditState(AppState):
    """Managers: who changed what, newest first, filterable by action and by person."""

    rows: list[audit.AuditRow] = []
    action: str = "all"
    actor: str = "all"
    has_more: bool = False
    message: str = ""
    PAGE = 50

    async def _fetch(self, before_id: int | None = None) -> list[audit.AuditRow]:
        user = await self._actor()
        action = None if self.action == "all" else self.action
        actor_id = int(self.actor) if self.actor.isdecimal() else None
        return await self._db(lambda s: audit.entries(s, actor=user, actor_id=actor_id, action=action,
                                                      before_id=before_id, limit=self.PAGE + 1))

    async def _refresh(self) -> None:
        rows = await self._fetch()
        self.rows, self.has_more = rows[: self.PAGE], len(rows) > self.PAGE

    @rx.event
    async def load(self):
        if not await self._load_team():
            return self._sign_in_redirect()
        if not self.viewer_is_manager:
            self.rows, self.message = [], "Only a manager can read the audit log."
            return
        self.message = ""
        await self._refresh()

    @rx.event
    async def set_action(self, value: str):
        self.action = value
        await self._refresh()

    @rx.event
    async def set_actor(self, value: str):
        self.actor = value
        await self._refresh()

    @rx.event
    async def older(self):
        if self.rows:
            rows = await self._fetch(self.rows[-1].id)
            self.rows, self.has_more = self.rows + rows[: self.PAGE], len(rows) > self.PAGE

    @rx.var
    def action_options(self) -> list[list[str]]:
        return [["all", "All changes"]] + [[a, label] for a, label in audit.ACTION_LABELS.items()]
