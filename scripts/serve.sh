#!/usr/bin/env bash
# Production on one machine or many behind a load balancer: N web workers (granian; users' state in
# Redis, so any worker on any machine serves any user) and M job workers (training, rescoring,
# sweeps; they take jobs from the queue in PostgreSQL) against an external PostgreSQL and Redis,
# all under scripts/supervise.py (a process that dies is started again).
#
#   DATABASE_URL=postgresql://crm_owner:...@db/crm \
#   CRM_APP_DATABASE_URL=postgresql://crm_web:...@db/crm \
#   REFLEX_REDIS_URL=redis://redis:6379/0 CRM_SECRET_KEY=<the same long random string everywhere> \
#   CRM_WEB_WORKERS=4 CRM_JOB_WORKERS=1 bash scripts/serve.sh [--migrate]
#
# --migrate brings the database to the newest schema first. Run it once per release (one machine,
# or `python -m crm_app.cli migrate` from anywhere); machines that start together with --migrate
# migrate one after the other (an advisory lock) and the later ones find nothing to do.
# The load balancer checks GET /health on CRM_PORT (200: this machine serves; 503: it cannot reach
# the database or Redis). See README, "Several web workers and machines".
source "$(dirname "$0")/env.sh"
: "${DATABASE_URL:?set DATABASE_URL: the tables owner login of the external PostgreSQL}"
: "${REFLEX_REDIS_URL:?set REFLEX_REDIS_URL: several web workers share users state in Redis}"
: "${CRM_SECRET_KEY:?set CRM_SECRET_KEY to the same long random string on every machine}"
if [ "${1:-}" = "--migrate" ]; then
  python -m crm_app.cli migrate
  shift
fi
export GRANIAN_WORKERS="${CRM_WEB_WORKERS:-2}"
# Reflex's Redis state manager keeps a tab's state in the worker between its events (an optimistic
# lock Redis revokes when another worker needs it) instead of a Redis round trip and lock per event:
# measured here, an empty handler 2 ms instead of ~200 ms, and 3 workers 394 events/s instead of 4.
export REFLEX_OPLOCK_ENABLED="${REFLEX_OPLOCK_ENABLED:-1}"
# A tab's lock in Redis lasts 60 s instead of Reflex's 10 s: a handler still running when its lock
# expires loses its result ("Lock expired ... while processing") and the tab's next events find the
# lock owned by another event. Measured here (scripts/benchmark_events.py, 3 workers, 100,000 leads,
# load 15-25 on 2 cores): with 10 s, opening 50 tabs at once (sign-in, Pipeline board load) hit it
# ~900 times; with 60 s, 6 times (handlers held it up to 21 s). A worker that dies holding a lock
# delays only that tab, up to this long.
export REFLEX_REDIS_LOCK_EXPIRATION="${REFLEX_REDIS_LOCK_EXPIRATION:-60000}"
# The lease a worker keeps on a busy tab's state lasts 30 s: at its end the worker writes the state
# to Redis and gives the lock up, and the tab's next event takes them again, which is where events
# of the same tab waited (lock hand-overs inside the worker). Another worker that needs the tab
# breaks the lease at once, so a longer lease costs nothing there. Measured (benchmark_events.py,
# 3 workers, 100,000 leads, load 12-16): 5 s -> 30 s took 50 tabs' do-nothing events from 432 to
# 1,502 events/s and drag-and-drop moves from 7 to 40 saved moves/s. A worker that dies loses at
# most this much of its tabs' screen state (what the database has is not affected).
export REFLEX_OPLOCK_HOLD_TIME="${REFLEX_OPLOCK_HOLD_TIME:-30}"
exec python scripts/supervise.py --port "${CRM_PORT:-3000}" --job-workers "${CRM_JOB_WORKERS:-1}" "$@"
