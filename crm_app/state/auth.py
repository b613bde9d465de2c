"""Signing in, the first admin, one's own password, the team's accounts (admin) and the audit log."""

from __future__ import annotations

import json
from urllib.parse import quote

import reflex as rx

from crm_app.auth_routes import SESSION_PATH
from crm_app.domain import Role
from crm_app.http_security import next_from_url
from crm_app.services import accounts, audit
from crm_app.services.errors import Forbidden, InvalidInput, NotFound, ServiceError
from crm_app.state.base import (
    SESSION_ENDED,
    SIGN_IN,
    AppState,
    now_utc,
    picked,
    run_system_db,
    submitted,
    typed_into,
    typed_text,
    whole_number,
)


def _safe_next(url: str) -> str:
    """Where to go after signing in: a path of this app only (never another site)."""
    return next_from_url(url)


def _handoff(ticket: str, next_path: str):
    """The browser swaps the sign-in ticket for its HttpOnly session cookie (crm_app/auth_routes.py),
    then loads the page it came for: a new page opens a new websocket, which carries the cookie."""
    again = f"{SIGN_IN}?next={quote(next_path)}"
    return rx.call_script(
        f"fetch({json.dumps(SESSION_PATH)}, {{method: 'POST', credentials: 'same-origin', "
        f"headers: {{'Content-Type': 'application/json'}}, "
        f"body: JSON.stringify({{ticket: {json.dumps(ticket)}}})}})"
        f".then(r => window.location.replace(r.ok ? {json.dumps(next_path)} : {json.dumps(again)}))"
        f".catch(() => window.location.replace({json.dumps(again)}))"
    )


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
        # token the browser still holds belonged to a session that ended (expired, idle, revoked),
        # unless it is the one this tab just signed out of.
        token = self._session_token()
        ended = bool(token) and token != self._signed_out_token
        self.errors, self.message, self.busy = {}, SESSION_ENDED if ended else "", False

    @rx.event
    def set_field(self, field: str, value: str):
        if field in ("email", "name", "password", "confirm"):
            setattr(self, field, typed_text(value, 300))
            self.errors = {k: v for k, v in self.errors.items() if k != field}

    @rx.event
    async def submit(self, form: dict | None = None):
        typed = submitted({"name": self.name, "email": self.email, "password": self.password,
                           "confirm": self.confirm}, form)
        self.name, self.email, self.password, self.confirm = (typed["name"], typed["email"], typed["password"],
                                                              typed["confirm"])
        self.errors, self.message, self.busy = {}, "", True
        yield
        email, password, name, now = self.email, self.password, self.name, now_utc()
        source = self.router.session.client_ip  # throttles count per address (accounts.sign_in)
        try:
            if self.first_run:
                if password != self.confirm:
                    raise InvalidInput("The two passwords differ.", field="confirm")
                await run_system_db(
                    lambda s: accounts.create_first_admin(s, email=email, name=name, password=password, now=now)
                )
            ticket, _user = await run_system_db(
                lambda s: accounts.sign_in_ticket(s, email=email, password=password, now=now, source=source)
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
        self.password = self.confirm = ""
        yield _handoff(ticket, _safe_next(str(self.router.url)))


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
            setattr(self, field, typed_text(value, 300))
            self.saved = False

    @rx.event
    async def change_password(self):
        user = await self._actor()
        self.errors, self.saved = {}, False
        if self.new != self.confirm:
            self.errors = {"confirm": "The two new passwords differ."}
            return
        current, new, token, now = self.current, self.new, self._session_token(), now_utc()
        try:  # as the owner: the app role may not read the hash the current password is checked against
            await run_system_db(lambda s: accounts.change_password(s, user, current=current, new=new, now=now,
                                                                   keep_token=token))
        except InvalidInput as error:
            self.errors = {error.field or "form": str(error)}
            return
        self.current = self.new = self.confirm = ""
        self.saved = True


# The add-a-teammate form's input limits: the users table's (services/accounts.py).
USER_LIMITS = {"name": accounts.MAX_NAME, "email": accounts.MAX_EMAIL, "password": accounts.MAX_PASSWORD}


class UsersState(AppState):
    """Admin: the team's accounts."""

    accounts: list[accounts.UserRow] = []
    draft: dict[str, str] = {"name": "", "email": "", "role": "rep", "password": ""}
    errors: dict[str, str] = {}
    message: str = ""
    # Deactivating asks first, saying what it does (their sessions, keys and open leads).
    confirm_open: bool = False
    confirm_title: str = ""
    confirm_impact: str = ""
    confirm_detail: str = ""
    _deactivating: int = 0

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
        if not isinstance(field, str):  # a crafted event: only the form's own fields are typed into
            return
        self.draft, self.errors = typed_into(self.draft, self.errors, field, value, USER_LIMITS.get(field, 20))

    @rx.event
    async def add_user(self, form: dict | None = None):
        self.draft = submitted(self.draft, form, USER_LIMITS)
        user, draft, now = await self._actor(), dict(self.draft), now_utc()
        try:
            await self._db(lambda s: accounts.create_user(
                s, user, email=draft["email"], name=draft["name"], role=draft["role"], password=draft["password"], now=now))
        except InvalidInput as error:  # every bad field at once, each under its input
            self.errors = dict(error.errors) or {"form": str(error)}
            return
        self.draft = {"name": "", "email": "", "role": "rep", "password": ""}
        self.errors, self.message = {}, f"Added {draft['name'].strip()}: hand them their first password."
        await self._refresh()

    @rx.event
    async def set_role(self, user_id: int, role: str):
        actor, now = await self._actor(), now_utc()
        user_id, role = whole_number(user_id), typed_text(role, 20)
        try:
            if user_id is None:
                raise NotFound("That user does not exist.")
            await self._db(lambda s: accounts.set_role(s, actor, user_id, role, now))
            self.message = "Role changed; it applies from their next sign-in."
        except ServiceError as error:
            self.message = str(error)
        await self._refresh()

    @rx.event
    async def set_active(self, user_id: int, active: bool):
        """Reactivate at once; deactivating signs someone out of everything, so it says so and asks."""
        user_id = whole_number(user_id)
        row = next((u for u in self.accounts if u.id == user_id), None)
        if active is True or row is None or not self.viewer_is_admin:
            return await self._set_active(user_id, active)
        leads, value = await self._db(lambda s: accounts.open_leads_of(s, row.id))
        self._deactivating, self.confirm_open = row.id, True
        self.confirm_title = f"Deactivate {row.name}?"
        self.confirm_impact = (f"{row.name} is signed out everywhere and can no longer sign in; "
                               f"API keys acting as them are refused.")
        self.confirm_detail = (f"Their {leads:,} open lead{'s' if leads != 1 else ''} ({value}) stay assigned to them: "
                               "reassign them on the Leads page. You can reactivate them later.")

    @rx.event
    def set_confirm_open(self, value: bool):
        self.confirm_open = value is True
        if not self.confirm_open:
            self._deactivating = 0

    @rx.event
    async def confirm_deactivate(self):
        user_id, self._deactivating, self.confirm_open = self._deactivating, 0, False
        if user_id:
            await self._set_active(user_id, False)

    async def _set_active(self, user_id: int | None, active: bool):
        actor, now, active = await self._actor(), now_utc(), active is True
        try:
            if user_id is None:
                raise NotFound("That user does not exist.")
            await self._db(lambda s: accounts.set_active(s, actor, user_id, active, now))
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
        self.action = picked(value, {"all", *audit.ACTION_LABELS}, self.action)
        await self._refresh()

    @rx.event
    async def set_actor(self, value: str):
        self.actor = picked(value, {"all", *(str(u.id) for u in self.users)}, self.actor)
        await self._refresh()

    @rx.event
    async def older(self):
        if self.rows:
            rows = await self._fetch(self.rows[-1].id)
            self.rows, self.has_more = self.rows + rows[: self.PAGE], len(rows) > self.PAGE

    @rx.var
    def action_options(self) -> list[list[str]]:
        return [["all", "All changes"]] + [[a, label] for a, label in audit.ACTION_LABELS.items()]

    @rx.var
    def actor_options(self) -> list[list[str]]:
        """The team as [id, name] pairs, for the "who" filter."""
        return [[str(u.id), u.name] for u in self.users]
