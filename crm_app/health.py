"""`GET /health` for a load balancer: 200 when this web worker can serve, 503 when it cannot.

It can serve when both database logins answer (the web app's, which pages use, and the owner's, which
signing in uses) and, with REFLEX_REDIS_URL set, Redis answers (users' state lives there). The body
also says how many job workers beat recently (procrastinate's worker heartbeats), for a person or a
monitor: no job worker does not make a web worker unhealthy (pages serve; training waits in the
queue). Reflex's own `/_health` checks only Redis here (the app owns its engine, not Reflex).
"""

from __future__ import annotations

import os

from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

HEALTH_PATH = "/health"
# A job worker beats every 10 s (procrastinate's default); one silent for longer is not counted.
WORKER_SILENT_SECONDS = 30


def _database() -> tuple[bool, int | None]:
    from crm_app.db.engine import get_app_engine, get_engine

    try:
        with get_app_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        with get_engine().connect() as connection:
            workers = connection.execute(text(
                "SELECT count(*) FROM procrastinate_workers "
                "WHERE last_heartbeat > now() - make_interval(secs => :s)"), {"s": WORKER_SILENT_SECONDS}
            ).scalar_one()
        return True, workers
    except Exception:
        return False, None


def _redis() -> bool | str:
    url = os.environ.get("REFLEX_REDIS_URL", "").strip()
    if not url:
        return "NA"
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


async def health(_request: Request) -> JSONResponse:
    database, workers = await run_in_threadpool(_database)
    redis_ok = await run_in_threadpool(_redis)
    ok = database and redis_ok is not False
    return JSONResponse({"status": ok, "db": database, "redis": redis_ok, "job_workers": workers},
                        status_code=200 if ok else 503, headers={"Cache-Control": "no-store"})
