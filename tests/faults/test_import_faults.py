"""An import cut off mid-way: its process killed (the web worker dying) or cancelled with Ctrl-C on
the command line. Nothing is stored, the job says interrupted with the step it was at, the dead
import's query does not run on in the database, and the next import does not wait behind it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from sqlalchemy import text
from sqlmodel import Session

from crm_app.db.engine import make_engine
from crm_app.demo.import_load import MAPPING, seed_stored_leads, seed_team, write_import_file
from crm_app.services import import_runs
from crm_app.services.importing import import_file
from crm_app.settings import REPO_ROOT
from tests.conftest import scratch_database
from tests.faults.conftest import kill, record, wait_until

pytestmark = pytest.mark.faults

STORED = 3_000
ROWS = 60_000  # long enough to be killed inside its transaction on a busy machine
HELPER = REPO_ROOT / "tests" / "faults" / "import_in_process.py"
READING = ("Reading the file", "Checking rows")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@pytest.fixture
def team_url(database_url: str) -> Iterator[str]:
    with scratch_database(database_url, "crm_faults_import") as url:
        engine = make_engine(url)
        seed_team(engine)
        seed_stored_leads(engine, STORED)
        engine.dispose()
        yield url


def _count(engine, sql: str, **params) -> int:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def test_a_killed_import_stores_nothing_is_shown_interrupted_and_the_next_one_does_not_wait(team_url, tmp_path):
    engine = make_engine(team_url)
    manager = _count(engine, "SELECT id FROM users WHERE role = 'manager'")
    path = write_import_file(tmp_path / "killed.csv", ROWS, stored=STORED, tag="killed")
    process = subprocess.Popen([sys.executable, str(HELPER), team_url, str(path), str(manager)],
                               stdout=subprocess.PIPE, text=True, env=_env())
    job_id = int(process.stdout.readline())
    step = lambda: _count(engine, "SELECT step FROM import_jobs WHERE id = :id", id=job_id)  # noqa: E731
    pid = lambda: _count(engine, "SELECT backend_pid FROM import_jobs WHERE id = :id", id=job_id)  # noqa: E731
    assert wait_until(lambda: not step().startswith(READING) and pid() is not None, 300, every=0.2), \
        "the import never reached its transaction"
    backend, at_step = pid(), step()
    kill(process.pid)
    killed_at = time.monotonic()
    process.wait()

    # The dead import's statement ends by itself (its connection checks for its client every second).
    gone = lambda: _count(engine, "SELECT count(*) FROM pg_stat_activity WHERE pid = :p", p=backend) == 0  # noqa: E731
    assert wait_until(gone, 20, every=0.1), "the killed import's query kept running"
    query_ended_after = time.monotonic() - killed_at
    assert _count(engine, "SELECT count(*) FROM leads WHERE email LIKE 'killed%'") == 0
    assert _count(engine, "SELECT count(*) FROM leads") == STORED
    assert _count(engine, "SELECT count(*) FROM imports") == 0

    # The page, once the heartbeat is stale, says what happened (once).
    def message() -> str | None:
        with Session(engine) as session:
            return import_runs.interrupted(session, manager, utcnow())

    shown: list[str] = []
    assert wait_until(lambda: bool(shown.append(message()) or shown[-1]), 60, every=0.5)
    shown_after = time.monotonic() - killed_at
    assert shown[-1].startswith(f"The import of {path.name} was interrupted at \"")
    assert shown[-1].endswith("; nothing was stored. Run it again.")
    assert at_step.rstrip(". ") in shown[-1] or "Checking" not in shown[-1]
    assert _count(engine, "SELECT status FROM import_jobs WHERE id = :id", id=job_id) == "interrupted"
    assert message() is None  # told once

    # A new import runs at once and to the end.
    small = write_import_file(tmp_path / "again.csv", 300, stored=STORED, tag="again")
    started = time.monotonic()
    with Session(engine) as session:
        summary = import_file(session, small, MAPPING, now=utcnow())
    assert summary.created == 100
    record("import_killed", query_ended_after_s=round(query_ended_after, 2),
           shown_interrupted_after_s=round(shown_after, 1), next_import_s=round(time.monotonic() - started, 2))
    engine.dispose()


def test_ctrl_c_cancels_a_command_line_import_and_stores_nothing(team_url, tmp_path):
    engine = make_engine(team_url)
    path = write_import_file(tmp_path / "cancelled.csv", ROWS, stored=STORED, tag="cancelled")
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"columns": MAPPING.columns}))
    process = subprocess.Popen([sys.executable, "-m", "crm_app.cli", "import", str(path), "--mapping", str(mapping)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**_env(), "DATABASE_URL": team_url}, cwd=REPO_ROOT,
                               # Ctrl-C as at a terminal: a run started in the background (nohup, &)
                               # hands its children SIGINT ignored, and Python then never raises
                               # KeyboardInterrupt (the import ran to its end in such a full run).
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in process.stdout:
        seen.append(line)
        if "Writing" in line:  # inside the import's transaction
            process.send_signal(signal.SIGINT)
            break
    out = "".join(seen) + process.communicate(timeout=120)[0]
    assert process.returncode == 130, out
    assert "Import cancelled: nothing was stored." in out
    assert _count(engine, "SELECT count(*) FROM leads") == STORED
    assert _count(engine, "SELECT count(*) FROM leads WHERE version > 1") == 0
    engine.dispose()
