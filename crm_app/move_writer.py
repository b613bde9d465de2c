"""Writing a drag-and-drop move, in a process of its own beside the web worker.

The board shows a move at once and a task of the web worker writes it behind (state/pipeline.py,
`_write_move`). The write is mostly SQLAlchemy in Python (the move, its stage change, the lead's
rescore and risk, the audit row, then the card read back): run in the worker's threads, that Python
competed for the worker's one interpreter lock with the event loop that answers every tab, so a tab's
next drop waited behind other tabs' writes. With CRM_MOVE_WRITERS > 0 each web worker hands its writes
to that many processes of its own (spawned at the first move, each with a connection or two), and its
event loop only answers events. The default, 0, writes in the worker's threads: measured (README,
"Moves written in processes of their own"), the processes did not make the shown move reliably faster
on this 2-core machine, wrote fewer moves a second (12 against 32 with threads) and cost ~160 MB each.

`write_move` never raises: it answers (checked, card, reason), as `_write_move` hands it to the tab.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime

from sqlmodel import Session

from crm_app.db.outage import database_unavailable
from crm_app.db.security import act_as
from crm_app.services import accounts
from crm_app.services.errors import ServiceError
from crm_app.services.leads import move_lead_to_stage
from crm_app.services.pipeline import deal_card

log = logging.getLogger(__name__)

DATABASE_AWAY = "The database did not answer, so the move was not saved. Try again in a moment."
SAVE_FAILED = "The move could not be saved."
# The session check found the session ended (or another user's): the tab says so and signs out.
SESSION_ENDED = object()
_SESSION_ENDED_MARK = "\x00session-ended"  # what crosses the process boundary for SESSION_ENDED


def write_move(move: dict, token: str, check_session: bool, now: datetime) -> tuple:
    """Write one move as `move["user_id"]` (checking the browser's session first when due) and read
    the card back: (checked: () or (the user the check found,), card or None, refusal or None)."""
    from crm_app.db.engine import get_app_engine, get_engine

    checked, card, reason = (), None, None
    try:
        if check_session:
            with Session(get_engine(), expire_on_commit=False) as session:
                user = accounts.session_user(session, token, now) if token else None
            checked = (user,)
            if user is None or user.id != move["user_id"]:
                reason = _SESSION_ENDED_MARK
        if reason is None:
            with act_as(Session(get_app_engine(), expire_on_commit=False), move["user_id"]) as session:
                move_lead_to_stage(session, lead_id=move["lead_id"], to_stage=move["to"], now=now,
                                   user_id=move["user_id"], expected_version=move["version"])
                card = deal_card(session, lead_id=move["lead_id"], now=now)
    except ServiceError as error:
        reason = str(error)
    except Exception as error:  # the user sees why; a bug is logged
        away = database_unavailable(error)
        if not away:
            log.exception("Saving a move of lead %s failed", move["lead_id"])
        reason = DATABASE_AWAY if away else SAVE_FAILED
    return checked, card, reason


# The writer processes ----------------------------------------------------------------------------

def _start_writer(owner_url: str, app_url: str) -> None:
    """A writer process's start: the web worker's databases, a small pool each (one write at a time)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the worker stops us
    from crm_app.db.engine import _owner_acting_key, make_app_engine, make_engine, set_app_engine, set_engine

    set_engine(make_engine(owner_url, pool_size=1, max_overflow=1, pool_pre_ping=True))
    set_app_engine(make_app_engine(app_url, _owner_acting_key, pool_size=1, max_overflow=1, pool_pre_ping=True))


_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def _writers(processes: int) -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            from crm_app.db.engine import get_app_engine, get_engine

            urls = (get_engine().url.render_as_string(hide_password=False),
                    get_app_engine().url.render_as_string(hide_password=False))
            _pool = ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_start_writer, initargs=urls)
        return _pool


def stop_writers() -> None:
    """The web worker stops: its writer processes finish the writes in hand and exit."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=False)


def writer_processes() -> int:
    return max(0, int(os.environ.get("CRM_MOVE_WRITERS", "0")))


async def write(move: dict, token: str, check_session: bool, now: datetime) -> tuple:
    """`write_move` in a writer process (CRM_MOVE_WRITERS > 0) or a thread of the web worker (0).
    Answers SESSION_ENDED as the reason when the session check failed."""
    processes = writer_processes()
    if processes:
        try:
            checked, card, reason = await asyncio.get_running_loop().run_in_executor(
                _writers(processes), write_move, move, token, check_session, now)
        except BrokenProcessPool:  # a writer died (killed): whether it wrote is unknown; the tab redraws
            log.exception("A move writer process died; starting new ones")
            global _pool
            with _pool_lock:
                _pool = None
            checked, card, reason = (), None, SAVE_FAILED
    else:
        checked, card, reason = await asyncio.to_thread(write_move, move, token, check_session, now)
    return checked, card, (SESSION_ENDED if reason == _SESSION_ENDED_MARK else reason)


async def stop_writers_at_exit(app) -> None:  # noqa: ARG001 (Reflex passes the app by name)
    """Lifespan task: the worker's writer processes end with it (they also end when it dies, as
    their queue from it closes)."""
    try:
        await asyncio.Event().wait()
    finally:
        stop_writers()
