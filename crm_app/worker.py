"""A job worker: `python -m crm_app.worker` takes jobs from the queue in PostgreSQL (crm_app/tasks.py)
and runs them: training, bulk rescoring, and the periodic sweeps. Any number of them, on any number
of machines, can work against the same database; scripts/start.sh and scripts/serve.sh start them
beside the web workers, and scripts/supervise.py restarts one that dies.

It connects as the tables' owner (DATABASE_URL; the embedded server when unset), as the jobs did
when they ran inside the web process: training and rescoring write every team's leads, which the web
app's row-level-security login may not. CRM_WORKER_CONCURRENCY jobs run at once (default 2: a
training does not hold up the sweeps); still one training and one rescoring at a time (task locks).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from crm_app import tasks


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m crm_app.worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=int(os.environ.get("CRM_WORKER_CONCURRENCY", "2")))
    parser.add_argument("--queue", action="append", dest="queues",
                        help=f"a queue to take jobs from (repeatable; default: all of {', '.join(tasks.QUEUES)})")
    parser.add_argument("--name", default=os.environ.get("CRM_WORKER_NAME", f"crm-worker-{os.getpid()}"))
    return parser.parse_args(argv)


async def _run(options: argparse.Namespace) -> None:
    async with tasks.app.open_async():
        await tasks.app.run_worker_async(
            queues=options.queues or list(tasks.QUEUES),
            concurrency=max(1, options.concurrency),
            name=options.name,
            # Within the supervisor's CRM_STOP_SECONDS, leaving time to mark cut-off jobs interrupted.
            shutdown_graceful_timeout=max(1.0, float(os.environ.get("CRM_STOP_SECONDS", "30")) - 5),
            delete_jobs="successful",
            install_signal_handlers=True,
        )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("CRM_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = _options(argv)
    from crm_app.db.engine import database_url, get_engine
    from crm_app.lifecycle import release_on_shutdown

    url = database_url()  # starts (or joins) the embedded server when DATABASE_URL is not set
    get_engine()
    with tasks.app.replace_connector(tasks.queue_connector(url)):
        try:
            asyncio.run(_run(options))
        finally:
            release_on_shutdown()
    # A training still running in a thread after the graceful timeout was released above: do not
    # wait for it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
