"""Run one training job the way the web process does (start_job, then run_training_job with its
heartbeat), in a process of its own that the fault test kills mid-way. Prints the job's id."""

from __future__ import annotations

import sys
from datetime import datetime, timezone

from sqlmodel import Session

from crm_app.db.engine import make_engine
from crm_app.services.scoring_jobs import TRAIN, run_training_job, start_job


def main(url: str) -> None:
    engine = make_engine(url)
    clock = lambda: datetime.now(timezone.utc)  # noqa: E731
    with Session(engine) as session:
        job_id = start_job(session, kind=TRAIN, now=clock(), actor=None)
    print(job_id, flush=True)
    run_training_job(lambda: Session(engine, expire_on_commit=False), job_id, clock=clock)


if __name__ == "__main__":
    main(sys.argv[1])
