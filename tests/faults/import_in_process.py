"""Run one import the way the web process does (an import job with its heartbeat, the app's login
acting as the manager under row-level security), in a process of its own that the fault test kills
mid-way. Usage: import_in_process.py DATABASE_URL FILE MANAGER_ID. Prints the job's id."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from sqlmodel import Session

from crm_app.db.engine import login_role_url, make_app_engine, make_engine
from crm_app.db.security import act_as, read_acting_key
from crm_app.demo.import_load import MAPPING
from crm_app.services import import_runs
from crm_app.services.importing import import_file


def main(url: str, path: str, manager_id: int) -> None:
    owner = make_engine(url)

    def key() -> bytes:
        with owner.connect() as conn:
            return read_acting_key(conn)

    web = make_app_engine(login_role_url(url), key)
    clock = lambda: datetime.now(timezone.utc)  # noqa: E731
    open_owner = lambda: Session(owner, expire_on_commit=False)  # noqa: E731
    with open_owner() as session:
        job_id = import_runs.start_job(session, manager_id, Path(path).name, clock())
    print(job_id, flush=True)
    control = import_runs.ImportControl()
    with import_runs.heartbeat(open_owner, job_id, control, clock), \
            act_as(Session(web, expire_on_commit=False), manager_id) as session:
        import_file(session, Path(path), MAPPING, now=clock(), actor_id=manager_id, file_name=Path(path).name,
                    control=control)
    with open_owner() as session:
        import_runs.finish_job(session, job_id, "succeeded", clock())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
