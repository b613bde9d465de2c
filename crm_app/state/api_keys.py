"""Admin: API keys for the REST API (create, see, revoke)."""

from __future__ import annotations

import reflex as rx

from crm_app.services import accounts, api_keys
from crm_app.services.errors import InvalidInput, ServiceError
from crm_app.state.base import AppState, now_utc, submitted, typed_into, whole_number

BLANK = {"name": "", "scope": "write", "user": "", "rate": str(api_keys.DEFAULT_RATE)}


class ApiKeysState(AppState):
    keys: list[api_keys.KeyRow] = []
    # [user id, "Name (role)"] for the people a key can act as.
    people: list[list[str]] = []
    draft: dict[str, str] = dict(BLANK)
    errors: dict[str, str] = {}
    message: str = ""
    # The secret of the key just created: shown once, never stored in clear anywhere.
    new_secret: str = ""
    new_secret_name: str = ""

    async def _refresh(self) -> None:
        actor, now = await self._actor(), now_utc()

        def load(session):
            return (api_keys.list_keys(session, actor, now),
                    [u for u in accounts.list_accounts(session, actor) if u.is_active])

        self.keys, active = await self._db(load)
        self.people = [[str(u.id), f"{u.name} ({u.role})"] for u in active]

    @rx.event
    async def load(self):
        if not await self._load_team():
            return self._sign_in_redirect()
        self.new_secret, self.new_secret_name = "", ""
        if not self.viewer_is_admin:
            self.keys, self.people, self.message = [], [], "Only an admin can manage API keys."
            return
        self.message = ""
        await self._refresh()

    @rx.event
    def set_draft(self, field: str, value: str):
        self.draft, self.errors = typed_into(self.draft, self.errors, field, value)

    @rx.event
    async def create(self, form: dict | None = None):
        self.draft = submitted(self.draft, form)
        actor, draft, now = await self._actor(), dict(self.draft), now_utc()
        user_id = int(draft["user"]) if draft["user"].isdecimal() else None
        try:
            secret, _ = await self._db(lambda s: api_keys.create_key(
                s, actor, name=draft["name"], scope=draft["scope"], user_id=user_id, now=now,
                rate_per_minute=draft["rate"]))
        except InvalidInput as error:
            self.errors = {error.field or "name": str(error)}
            return
        self.new_secret, self.new_secret_name = secret, draft["name"].strip()
        self.draft, self.errors, self.message = dict(BLANK), {}, ""
        await self._refresh()

    @rx.event
    def forget_secret(self):
        self.new_secret, self.new_secret_name = "", ""

    # Revoking is irreversible and stops whatever sends with the key: the button asks first.
    confirm_open: bool = False
    confirm_title: str = ""
    confirm_impact: str = ""
    confirm_detail: str = ""
    _revoking: int = 0

    @rx.event
    def revoke(self, key_id: int):
        """The Revoke button: say what revoking this key stops, and ask."""
        key = next((k for k in self.keys if k.id == whole_number(key_id) and not k.revoked), None)
        if key is None or not self.viewer_is_admin:
            return
        self._revoking, self.confirm_open = key.id, True
        self.confirm_title = f"Revoke “{key.name}”?"
        self.confirm_impact = (f"Its next request is refused: whatever sends with it stops, acting as {key.acts_as} "
                               f"({key.scope} access).")
        self.confirm_detail = (f"Last used: {key.last_used_label}. This cannot be undone: the system that uses it "
                               "needs a new key.")

    @rx.event
    def set_confirm_open(self, value: bool):
        self.confirm_open = value is True
        if not self.confirm_open:
            self._revoking = 0

    @rx.event
    async def confirm_revoke(self):
        key_id, self._revoking, self.confirm_open = self._revoking, 0, False
        if not key_id:
            return
        actor, now = await self._actor(), now_utc()
        try:
            await self._db(lambda s: api_keys.revoke_key(s, actor, key_id, now))
            name = next((k.name for k in self.keys if k.id == key_id), "The key")
            self.message = f"Revoked \u201c{name}\u201d: its next request is refused."
        except ServiceError as error:
            self.message = str(error)
        await self._refresh()
