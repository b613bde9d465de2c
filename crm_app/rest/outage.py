"""The API's answer while the database is away: 503 with the usual JSON error and Retry-After.

Without it the error reached the server's last resort, a text/plain 500, and a client could not tell
"try again in a moment" from a bug. A write cut off by the outage may or may not have committed;
a retry with the same Idempotency-Key is answered from the store if it did, and applied if not.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

from crm_app.db.outage import database_unavailable

RETRY_AFTER_SECONDS = 2
UNAVAILABLE = ("The database is not reachable right now (it may be restarting). Retry in a few seconds; "
               "a retry with the same Idempotency-Key is never applied twice.")

log = logging.getLogger(__name__)


def install(app: FastAPI, error_response) -> None:
    """Answer database outages on `app` with 503; `error_response(status, message, fields, headers)`
    builds the API's usual error body."""

    async def _database_error(request: Request, error: Exception) -> JSONResponse:
        if not database_unavailable(error):
            raise error  # a real bug: the server's own 500 handling
        log.warning("%s %s: database unavailable (%s: %s)", request.method, request.url.path,
                    type(error).__name__, str(error).split("\n", 1)[0])
        headers = {**getattr(request.state, "rate_headers", {}), "Retry-After": str(RETRY_AFTER_SECONDS)}
        return error_response(503, UNAVAILABLE, [], headers)

    for kind in (sa_exc.DBAPIError, sa_exc.TimeoutError):
        app.add_exception_handler(kind, _database_error)
    try:
        import psycopg2

        app.add_exception_handler(psycopg2.Error, _database_error)  # raw driver connections
    except ImportError:  # pragma: no cover - psycopg2 is in requirements.txt
        pass
