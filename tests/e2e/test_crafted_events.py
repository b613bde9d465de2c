"""Crafted websocket events against the running app: what a browser's devtools (or a script) can send
without the page's buttons. A signed-out socket, and a rep's socket calling other pages' handlers or
passing another rep's lead, must change nothing.

The client below speaks Socket.IO v5 over Engine.IO v4 on a raw websocket (simple-websocket, already
installed with Reflex): open, connect to the `/_event` namespace with the boot (hydrate) event whose
`vars` carry the browser's cookies, then emit events by handler name.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from simple_websocket import Client
from sqlalchemy import text

from tests.e2e.conftest import sign_in_cookie
from tests.factories import make_lead

pytestmark = pytest.mark.e2e

ROOT = "reflex___state____state"
APP = f"{ROOT}.crm_app___state___base____app_state"
NS = "/_event"


def _state(module: str, cls: str) -> str:
    return f"{APP}.crm_app___state___{module}____{cls}"


class CraftedSocket:
    """One browser tab's websocket, driven by hand."""

    def __init__(self, app_url: str, *, token: str | None = None, path: str = "/"):
        self.path = path
        self.messages: list[Any] = []
        client_token = str(uuid.uuid4())
        url = app_url.replace("http://", "ws://") + f"/_event/?EIO=4&transport=websocket&token={client_token}"
        self.ws = Client.connect(url)
        assert (self.ws.receive(timeout=30) or "").startswith("0")  # Engine.IO open (slow when the machine is busy)
        payload = {"vars": {f"{APP}.auth_token_rx_state_": token}} if token else {}
        boot = {"name": f"{ROOT}.hydrate_and_load", "payload": payload, "router_data": self._router()}
        self.ws.send(f"40{NS}," + json.dumps({"event": boot}))
        self.drain(seconds=4)

    def _router(self) -> dict:
        return {"pathname": self.path, "asPath": self.path, "query": {}}

    def emit(self, handler: str, **payload) -> list[Any]:
        """Send one event and return what came back within a few seconds."""
        self.messages = []
        event = {"name": handler, "payload": payload, "router_data": self._router()}
        self.ws.send(f"42{NS}," + json.dumps(["event", event]))
        return self.drain(seconds=4)

    def drain(self, seconds: float) -> list[Any]:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.ws.receive(timeout=left)
            except Exception:  # the server closed the socket
                break
            if message is None:
                break
            if message == "2":  # Engine.IO ping
                self.ws.send("3")
            elif message.startswith(f"42{NS},"):
                self.messages.append(json.loads(message[len(f"42{NS},"):]))
        return self.messages

    def said(self) -> str:
        return json.dumps(self.messages)

    def close(self) -> None:
        self.ws.close()


@pytest.fixture(scope="module")
def crafted(app_session, seeded_app_data):
    """Sam's lead that Ria will try to reach, and the state of the things she will try to change."""
    return {"sam_lead": seeded_app_data["leads"]["Alan Turing"], "ria": seeded_app_data["users"]["Ria Rep"]}


def _lead_row(app_session, lead_id: int):
    app_session.expire_all()
    return app_session.execute(
        text("SELECT stage, owner_id, version FROM leads WHERE id = :id"), {"id": lead_id}
    ).one()


def test_a_signed_out_socket_cannot_move_a_lead_and_is_sent_to_sign_in(app_url, app_session, crafted):
    lead = crafted["sam_lead"]
    before = _lead_row(app_session, lead.id)
    socket = CraftedSocket(app_url, path="/pipeline")
    try:
        socket.emit(f"{_state('pipeline', 'pipeline_state')}.move_from_menu", lead_id=lead.id, to_stage="won")
        assert "/sign-in" in socket.said()  # the refusal: a redirect to the sign-in page
    finally:
        socket.close()
    assert _lead_row(app_session, lead.id) == before


def test_a_rep_socket_cannot_make_itself_admin(app_url, app_session, crafted):
    ria = crafted["ria"]
    token = sign_in_cookie(app_session, app_url, "Ria Rep")["value"]
    socket = CraftedSocket(app_url, token=token, path="/")
    try:
        socket.emit(f"{_state('auth', 'users_state')}.set_role", user_id=ria.id, role="admin")
        assert "Only an admin can" in socket.said()  # the service refuses; the page says so in a toast
        socket.emit(f"{_state('auth', 'users_state')}.add_user")
        assert "Only an admin can" in socket.said()
    finally:
        socket.close()
    role = app_session.execute(text("SELECT role FROM users WHERE id = :id"), {"id": ria.id}).scalar_one()
    assert role == "rep"


def test_a_rep_socket_cannot_change_manager_settings(app_url, app_session, crafted):
    token = sign_in_cookie(app_session, app_url, "Ria Rep")["value"]
    settings = _state("settings", "settings_state")
    before = app_session.execute(text("SELECT cost FROM source_costs WHERE source = 'referral'")).scalar()
    socket = CraftedSocket(app_url, token=token, path="/settings")
    try:
        socket.emit(f"{settings}.type_cost", source="referral", value="1")
        socket.emit(f"{settings}.save_cost", source="referral")
        assert "Only a manager can change costs." in socket.said()
        socket.emit(f"{_state('model', 'model_state')}.choose_mode", mode="rules")
    finally:
        socket.close()
    app_session.expire_all()
    assert app_session.execute(text("SELECT cost FROM source_costs WHERE source = 'referral'")).scalar() == before
    changes = app_session.execute(text("SELECT count(*) FROM audit_log WHERE action = 'engine_switched'")).scalar()
    assert changes == 0


def test_a_rep_socket_cannot_reach_another_reps_lead_by_id(app_url, app_session, crafted):
    lead = crafted["sam_lead"]
    before = _lead_row(app_session, lead.id)
    token = sign_in_cookie(app_session, app_url, "Ria Rep")["value"]
    detail = _state("lead_detail", "lead_detail_state")
    socket = CraftedSocket(app_url, token=token, path=f"/leads/{lead.id}")
    try:
        socket.emit(f"{detail}.load")
        assert f"There is no lead {lead.id}." in socket.said()
        assert "Bletchley" not in socket.said()  # nothing of the lead reaches the browser
        socket.emit(f"{detail}.move_to_stage", stage="won")
        socket.emit(f"{_state('pipeline', 'pipeline_state')}.move_from_menu", lead_id=lead.id, to_stage="lost")
        assert "That deal is no longer on this board." in socket.said()
    finally:
        socket.close()
    assert _lead_row(app_session, lead.id) == before


def test_an_unassigned_lead_a_rep_may_see_is_still_moved_only_through_the_rules(app_url, app_session, crafted):
    """Control: the same crafted path works for what the rep may do, so the refusals above are real."""
    pool = make_lead(app_session, "Crafted Pool Lead", now=crafted["sam_lead"].created_at, company="Pool Co")
    token = sign_in_cookie(app_session, app_url, "Ria Rep")["value"]
    pipeline = _state("pipeline", "pipeline_state")
    socket = CraftedSocket(app_url, token=token, path="/pipeline")
    try:
        socket.emit(f"{pipeline}.set_owner", value="unassigned")
        socket.emit(f"{pipeline}.move_from_menu", lead_id=pool.id, to_stage="contacted")
    finally:
        socket.close()
    assert _lead_row(app_session, pool.id).stage == "contacted"
