"""Crafted websocket events against the running app: what a browser's devtools (or a script) can send
without the page's buttons. A signed-out socket, and a rep's socket calling other pages' handlers or
passing another rep's lead, must change nothing.

The client below speaks Socket.IO v5 over Engine.IO v4 on a raw websocket (simple-websocket, already
installed with Reflex): open with the browser's session cookie in the handshake (as a browser sends
its HttpOnly cookie), connect to the `/_event` namespace with the boot (hydrate) event, then emit
events by handler name.
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

    def __init__(self, app_url: str, *, token: str | None = None, path: str = "/",
                 payload: dict | None = None, headers: dict | None = None):
        self.path = path
        self.messages: list[Any] = []
        client_token = str(uuid.uuid4())
        url = app_url.replace("http://", "ws://") + f"/_event/?EIO=4&transport=websocket&token={client_token}"
        self.ws = Client.connect(url, headers={**({"Cookie": f"crm_session={token}"} if token else {}),
                                               **(headers or {})})
        assert (self.ws.receive(timeout=30) or "").startswith("0")  # Engine.IO open (slow when the machine is busy)
        boot = {"name": f"{ROOT}.hydrate_and_load", "payload": payload or {}, "router_data": self._router()}
        self.ws.send(f"40{NS}," + json.dumps({"event": boot}))
        self.drain(seconds=4)

    def _router(self) -> dict:
        return {"pathname": self.path, "asPath": self.path, "query": {}}

    def emit(self, handler: str, **payload) -> list[Any]:
        """Send one event and return what came back within a few seconds."""
        self.messages = []
        self.send(handler, **payload)
        return self.drain(seconds=4)

    def send(self, handler: str, **payload) -> None:
        """Send one event without waiting (json.dumps escapes a lone surrogate as JSON allows)."""
        event = {"name": handler, "payload": payload, "router_data": self._router()}
        self.ws.send(f"42{NS}," + json.dumps(["event", event]))

    def wait_for(self, text: str, seconds: float = 90) -> str:
        """Everything said until `text` is (events queue up behind the ones sent before)."""
        deadline = time.monotonic() + seconds
        while text not in self.said() and time.monotonic() < deadline:
            self.drain(seconds=1)
        return self.said()

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

    def latest(self, state: str, var: str, seconds: float = 90, until=lambda value: True) -> Any:
        """The newest value the server sent for `var` of `state`, once `until(value)` holds."""
        deadline = time.monotonic() + seconds
        while True:
            values = [m[1]["delta"][state][f"{var}_rx_state_"] for m in self.messages
                      if isinstance(m, list) and len(m) > 1 and isinstance(m[1], dict)
                      and f"{var}_rx_state_" in (m[1].get("delta") or {}).get(state, {})]
            if values and until(values[-1]) or time.monotonic() > deadline:
                return values[-1] if values else None
            self.drain(seconds=1)

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
        socket.wait_for("moved to Contacted")  # the board shows a move at once and offers Undo once saved
    finally:
        socket.close()
    assert _lead_row(app_session, pool.id).stage == "contacted"


# --- Crafted values (issue #17, item 12) -----------------------------------------------------------

# What a script can put in any argument: unknown choices, NUL, lone surrogates, wrong types, huge numbers.
HOSTILE = ["bogus", "\x00", "Ada\x00", "\ud800", "x\udfffy", 12345, None, ["team", "x"], {"a": 1}, True,
           "9" * 40, -1, ""]
# (page, state, handler, the argument under attack, the other arguments as the page sends them)
CRAFTED_TARGETS = [
    ("/leads", ("leads", "leads_state"), "set_scope", "value", {}),
    ("/leads", ("leads", "leads_state"), "set_search", "value", {}),
    ("/leads", ("leads", "leads_state"), "set_tier", "value", {}),
    ("/leads", ("leads", "leads_state"), "set_stage", "value", {}),
    ("/leads", ("leads", "leads_state"), "set_source", "value", {}),
    ("/leads", ("leads", "leads_state"), "set_sort", "value", {}),
    ("/leads", ("leads", "leads_state"), "toggle_selected", "lead_id", {}),
    ("/leads", ("leads", "leads_state"), "set_reassign_to", "value", {}),
    ("/leads", ("leads", "leads_state"), "set_bulk_stage", "value", {}),
    ("/leads", ("leads", "leads_state"), "snooze_selected", "choice", {}),
    ("/leads", ("leads", "leads_state"), "claim_one", "lead_id", {}),
    ("/leads", ("leads", "leads_state"), "return_one", "lead_id", {}),
    ("/leads", ("leads", "leads_state"), "start_edit", "lead_id", {}),
    ("/leads", ("leads", "leads_state"), "set_row_field", "name", {"value": "1"}),
    ("/leads", ("leads", "leads_state"), "set_row_field", "value", {"name": "deal_value"}),
    ("/leads", ("new_lead", "new_lead_state"), "set_field", "name", {"value": "x"}),
    ("/leads", ("new_lead", "new_lead_state"), "set_field", "value", {"name": "company"}),
    ("/leads", ("new_lead", "new_lead_state"), "set_form_open", "value", {}),
    ("/pipeline", ("pipeline", "pipeline_state"), "set_owner", "value", {}),
    ("/pipeline", ("pipeline", "pipeline_state"), "set_tier", "value", {}),
    ("/pipeline", ("pipeline", "pipeline_state"), "set_source", "value", {}),
    ("/pipeline", ("pipeline", "pipeline_state"), "set_search", "value", {}),
    ("/pipeline", ("pipeline", "pipeline_state"), "set_risk", "value", {}),
    ("/pipeline", ("pipeline", "pipeline_state"), "set_only_stagnating", "value", {}),
    ("/pipeline", ("pipeline", "pipeline_state"), "load_more", "stage", {}),
    ("/pipeline", ("pipeline", "pipeline_state"), "move_card", "card_id",
     {"to_column": "won", "to_index": 0}),
    ("/pipeline", ("pipeline", "pipeline_state"), "move_card", "to_column", {"card_id": "1", "to_index": 0}),
    ("/pipeline", ("pipeline", "pipeline_state"), "move_from_menu", "to_stage", {"lead_id": 1}),
    ("/", ("dashboard", "dashboard_state"), "set_owner_filter", "value", {}),
    ("/", ("dashboard", "dashboard_state"), "show_group", "group", {}),
    ("/", ("dashboard", "dashboard_state"), "snooze", "choice", {"lead_id": 1}),
    ("/", ("dashboard", "dashboard_state"), "open_log", "kind", {"lead_id": 1}),
    ("/", ("dashboard", "dashboard_state"), "set_log_kind", "value", {}),
    ("/", ("dashboard", "dashboard_state"), "set_log_body", "value", {}),
    ("/", ("dashboard", "dashboard_state"), "set_log_follow_up_days", "value", {}),
    ("/", ("dashboard", "dashboard_state"), "set_log_follow_up_note", "value", {}),
    ("/analytics", ("analytics", "analytics_state"), "set_period", "value", {}),
    ("/analytics", ("analytics", "analytics_state"), "set_owner", "value", {}),
    ("/leads/1", ("lead_detail", "lead_detail_state"), "set_activity_kind", "value", {}),
    ("/leads/1", ("lead_detail", "lead_detail_state"), "set_activity_play", "value", {}),
    ("/leads/1", ("lead_detail", "lead_detail_state"), "set_activity_subject", "value", {}),
    ("/leads/1", ("lead_detail", "lead_detail_state"), "set_activity_body", "value", {}),
    ("/leads/1", ("lead_detail", "lead_detail_state"), "move_to_stage", "stage", {}),
    ("/leads/1", ("lead_detail", "lead_detail_state"), "set_edit_field", "name", {"value": "x"}),
    ("/leads/1", ("lead_detail", "lead_detail_state"), "set_edit_field", "value", {"name": "company"}),
    ("/settings", ("settings", "settings_state"), "type_cost", "source", {"value": "1"}),
    ("/settings", ("settings", "settings_state"), "type_cost", "value", {"source": "referral"}),
    ("/settings", ("settings", "settings_state"), "type_days", "stage", {"value": "1"}),
    ("/model", ("model", "model_state"), "type_blend", "value", {}),
    ("/model", ("model", "model_state"), "choose_mode", "mode", {}),
    ("/audit", ("auth", "audit_state"), "set_action", "value", {}),
    ("/audit", ("auth", "audit_state"), "set_actor", "value", {}),
    ("/account", ("auth", "account_state"), "set_field", "value", {"field": "new"}),
    ("/users", ("auth", "users_state"), "set_draft", "value", {"field": "name"}),
    ("/users", ("auth", "users_state"), "set_draft", "field", {"value": "x"}),
    ("/users", ("auth", "users_state"), "set_active", "active", {"user_id": 1}),
    ("/api-keys", ("api_keys", "api_keys_state"), "revoke", "key_id", {}),
    # Follow-ups, notifications and closing deals (issue #14).
    ("/leads/1", ("next_step", "next_step_state"), "offer", "lead_id", {"lead_name": "x", "origin": "lead"}),
    ("/leads/1", ("next_step", "next_step_state"), "offer", "origin", {"lead_id": 1, "lead_name": "x"}),
    ("/leads/1", ("next_step", "next_step_state"), "offer", "just_logged",
     {"lead_id": 1, "lead_name": "x", "origin": "lead"}),
    ("/leads/1", ("next_step", "next_step_state"), "set_kind", "value", {}),
    ("/leads/1", ("next_step", "next_step_state"), "set_due", "value", {}),
    ("/leads/1", ("next_step", "next_step_state"), "set_note", "value", {}),
    ("/leads/1", ("lead_detail", "lead_detail_state"), "follow_up_done", "follow_up_id", {}),
    ("/leads/1", ("lead_detail", "lead_detail_state"), "follow_up_snooze", "choice", {"follow_up_id": 1}),
    ("/leads/1", ("close_deal", "close_deal_state"), "ask", "lead_ids", {"to_stage": "lost", "origin": "lead"}),
    ("/leads/1", ("close_deal", "close_deal_state"), "ask", "origin", {"lead_ids": [1], "to_stage": "lost"}),
    ("/leads/1", ("close_deal", "close_deal_state"), "set_reason", "value", {}),
    ("/leads/1", ("close_deal", "close_deal_state"), "set_value", "value", {}),
    ("/leads/1", ("close_deal", "close_deal_state"), "set_closed_on", "value", {}),
    ("/leads/1", ("notifications", "notification_state"), "open_one", "notification_id", {}),
    ("/pipeline", ("pipeline", "pipeline_state"), "log_from_card", "kind", {"lead_id": 1}),
    ("/settings", ("settings", "settings_state"), "type_reason", "value", {}),
    ("/settings", ("settings", "settings_state"), "remove_lost_reason", "label", {}),
]


def _new_tracebacks(log_offset: int) -> list[str]:
    """Tracebacks from the app's own code written to the app's log since `log_offset`."""
    from tests.e2e.conftest import ARTIFACTS

    text = (ARTIFACTS / "app.log").read_text(errors="replace")[log_offset:]
    return [block[:2000] for block in text.split("[Reflex Backend Exception]")[1:] if "crm_app/" in block]


def test_crafted_values_never_break_a_tab(app_url, app_session, crafted):
    """Every value a script can send to every choice and text handler of the pages: none makes our
    code raise, and the tab works normally afterwards (a bogus scope used to break every later
    event with a KeyError; NUL or a lone surrogate in a search broke every query)."""
    from tests.e2e.conftest import ARTIFACTS

    token = sign_in_cookie(app_session, app_url, "Ria Rep")["value"]
    log_offset = len((ARTIFACTS / "app.log").read_text(errors="replace"))
    pages: dict[str, CraftedSocket] = {}
    sent = 0
    try:
        for path, state, handler, attacked, others in CRAFTED_TARGETS:
            socket = pages.get(path) or pages.setdefault(path, CraftedSocket(app_url, token=token, path=path))
            for value in HOSTILE:
                socket.send(f"{_state(*state)}.{handler}", **{**others, attacked: value})
                sent += 1
            for open_socket in pages.values():  # answer the server's pings: a busy machine is slow here
                open_socket.drain(seconds=0.05)
        leads, pipeline = pages["/leads"], pages["/pipeline"]
        leads_state = _state("leads", "leads_state")
        names = lambda rows: sorted(r["name"] for r in rows or [])  # noqa: E731
        # The tabs still work: their own pages load with the rep's leads, and the filters still filter.
        leads.messages = []
        leads.send(f"{leads_state}.set_search", value="Grace")
        rows = leads.latest(leads_state, "rows", until=lambda rows: names(rows) == ["Grace Hopper"])
        assert names(rows) == ["Grace Hopper"]
        leads.send(f"{leads_state}.set_search", value="")
        rows = leads.latest(leads_state, "rows", until=lambda rows: "Ada Lovelace" in names(rows))
        assert names(rows) == ["Ada Lovelace", "Grace Hopper"]  # her own leads: the scope is still "mine"
        pipeline.send(f"{_state('pipeline', 'pipeline_state')}.clear_filters")
        assert "Ada Lovelace" in pipeline.wait_for("Ada Lovelace")
        for socket in pages.values():
            socket.drain(seconds=2)
    finally:
        for socket in pages.values():
            socket.close()
    assert sent == len(CRAFTED_TARGETS) * len(HOSTILE)
    assert _new_tracebacks(log_offset) == []
