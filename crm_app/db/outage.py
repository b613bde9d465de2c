"""Telling "the database is away for a moment" from a bug, and waiting it out.

The database can go away under a running app: the embedded server restarted by its supervisor
(db/supervisor.py), an external server restarted or failed over. Every layer answers the same way:
the REST API with 503 and Retry-After (rest/outage.py), pages with a "Reconnecting to the
database..." notice that clears itself (state/base.py), background work by trying again with backoff
(`retrying` below). A connection pool with pre-ping replaces dead connections by itself once the
server is back, so nothing needs a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy import text

T = TypeVar("T")
log = logging.getLogger(__name__)

# SQLSTATEs that mean the server or the connection went away: connection exceptions (class 08),
# admin shutdown (a stop or immediate restart), crash shutdown, and "cannot connect now" (starting
# up, shutting down, in recovery).
_GONE_STATES = ("57P01", "57P02", "57P03")
# Waits between attempts; the last one repeats.
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)


def _driver_error_is_outage(error: BaseException) -> bool:
    import psycopg2

    if isinstance(error, psycopg2.InterfaceError):  # "connection already closed"
        return True
    if isinstance(error, psycopg2.OperationalError):
        code = getattr(error, "pgcode", None)
        # No SQLSTATE: the connection itself failed (refused, reset, server closed it unexpectedly).
        return code is None or code.startswith("08") or code in _GONE_STATES
    return False


def database_unavailable(error: BaseException) -> bool:
    """Is `error` the database being unreachable (down, restarting, connection cut), something a
    retry in a moment fixes, rather than a bug or bad input?"""
    if isinstance(error, sa_exc.TimeoutError):  # no pooled connection freed up in time
        return True
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        return error.orig is not None and _driver_error_is_outage(error.orig)
    if _driver_error_is_outage(error):
        return True
    # An error raised because of an outage (e.g. the web login's check could not connect) is one too.
    cause = error.__cause__
    return cause is not None and cause is not error and database_unavailable(cause)


def backoff(attempt: int) -> float:
    return BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)]


def retrying(work: Callable[[], T], *, what: str, give_up_after: float = 300.0,
             sleep: Callable[[float], None] = time.sleep) -> T:
    """Run `work()`; while it fails because the database is away, wait (with backoff) and run it
    again, for up to `give_up_after` seconds. Other errors, and the last outage error, propagate.
    `work` must be safe to run again: a failed attempt's transaction was rolled back."""
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            result = work()
        except Exception as error:
            if not database_unavailable(error) or time.monotonic() - started > give_up_after:
                raise
            wait = backoff(attempt)
            log.warning("%s: the database is not reachable (%s); trying again in %.1f s",
                        what, type(error).__name__, wait)
            attempt += 1
            sleep(wait)
            continue
        if attempt:
            log.warning("%s: the database is back after %.1f s", what, time.monotonic() - started)
        return result


def database_answers(engine) -> bool:
    """One quick `SELECT 1`: True when the database answers."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception as error:
        if database_unavailable(error):
            return False
        raise
