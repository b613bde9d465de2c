"""Closed tabs leave the web worker's memory (crm_app/closed_tabs.py), run against Reflex's own disk state
manager and event namespace: a tab whose websocket closed is dropped from memory once the grace has
passed, and comes back from disk with what it held; an open tab, a tab that reconnected, and a change
not yet written to disk stay."""

from __future__ import annotations

import asyncio
import time
import uuid
from types import SimpleNamespace

import pytest
from reflex.app import EventNamespace
from reflex.istate.manager.disk import StateManagerDisk
from reflex.istate.manager.token import BaseStateToken

from crm_app.closed_tabs import ClosedTabs, forget_tab
from crm_app.state.search import ShortcutsState
from tests.conftest import run_async

GRACE = 60.0


@pytest.fixture
def states_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("REFLEX_STATES_WORKDIR", str(tmp_path))
    return tmp_path


def _token(ident: str) -> BaseStateToken:
    return BaseStateToken(ident=ident, cls=ShortcutsState)


def _shortcuts(root) -> ShortcutsState:
    return root.get_substate(ShortcutsState.get_full_name().split(".")[1:])


async def _open_tab(namespace, manager, sid: str) -> str:
    """A connected tab that opened the shortcuts list (a change of its state)."""
    token = str(uuid.uuid4())
    await namespace._token_manager.link_token_to_sid(token, sid)
    async with manager.modify_state(_token(token)) as root:
        _shortcuts(root).shortcuts_open = True
    return token


async def _shortcuts_open(manager, token: str) -> bool:
    return _shortcuts(await manager.get_state(_token(token))).shortcuts_open


def test_a_closed_tab_leaves_memory_after_the_grace_and_comes_back_from_disk(states_dir):
    async def scenario():
        manager = StateManagerDisk(_write_debounce_seconds=0)  # every change written at once
        namespace = EventNamespace("/_event", SimpleNamespace(_event_processor=None))
        tabs = ClosedTabs(namespace, manager, GRACE)
        tabs.install()
        try:
            closed = await _open_tab(namespace, manager, "sid-closed")
            still_open = await _open_tab(namespace, manager, "sid-open")
            back = await _open_tab(namespace, manager, "sid-back")
            namespace.on_disconnect("sid-closed")  # as Socket.IO calls it when the socket goes
            namespace.on_disconnect("sid-back")
            await asyncio.sleep(0.05)  # Reflex's own disconnect bookkeeping runs as a task
            await namespace._token_manager.link_token_to_sid(back, "sid-back-again")  # reconnected

            assert tabs.sweep(time.monotonic()) == 0  # within the grace: kept
            assert closed in manager.states
            assert tabs.sweep(time.monotonic() + GRACE + 1) == 1
            assert closed not in manager.states
            assert still_open in manager.states and back in manager.states
            # The tab returns (a laptop woke up): its state is read back from disk as it was.
            assert await _shortcuts_open(manager, closed) is True
        finally:
            await manager.close()

    run_async(scenario())


def test_a_change_not_yet_on_disk_is_not_dropped(states_dir):
    async def scenario():
        manager = StateManagerDisk(_write_debounce_seconds=30)  # the write waits in the queue
        namespace = EventNamespace("/_event", SimpleNamespace(_event_processor=None))
        try:
            token = await _open_tab(namespace, manager, "sid")
            assert forget_tab(manager, token) is False
            assert token in manager.states and await _shortcuts_open(manager, token) is True
        finally:
            await manager.close()

    run_async(scenario())
