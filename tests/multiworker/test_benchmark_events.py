"""scripts/benchmark_events.py still speaks the app's websocket protocol: a second of each event kind
against the several-workers app, by a rep of its own, and every move it made is found in the database.
Only that it ran is checked; its figures are printed, never asserted (a benchmark is not a test)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from sqlmodel import Session

from crm_app.db.models import utcnow
from crm_app.settings import REPO_ROOT
from tests.factories import TEST_PASSWORD, make_lead, make_user

pytestmark = pytest.mark.multiworker

ROW = re.compile(r"^\|\s+(\d+) \| (\w+)\s+\|\s+(\d+) \|.*\|\s+(\d+) \|\s+\d+% \|", re.MULTILINE)


def test_the_events_benchmark_runs_against_the_app_and_its_moves_persist(cluster):
    now = utcnow()
    with Session(cluster.engine, expire_on_commit=False) as session:
        bench = make_user(session, "Bella Bench")
        for i in range(2):  # a card for each of the two tabs
            make_lead(session, f"Bench Deal {i}", now=now, owner=bench, company=f"Bench {i} GmbH")
    result = subprocess.run(
        [sys.executable, "scripts/benchmark_events.py", "--url", cluster.url, "--database-url", cluster.database_url,
         "--users", "bella@test.crm", "--password", TEST_PASSWORD, "--clients", "1", "2", "--seconds", "1",
         "--max-events", "5", "--timeout", "60"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    rows = {(int(clients), kind): (int(n), int(errors)) for clients, kind, n, errors in ROW.findall(result.stdout)}
    # A move is timed until shown and, on a row of its own, until saved.
    assert set(rows) == {(c, k) for c in (1, 2) for k in ("floor", "move", "saved", "search", "today")}, result.stdout
    assert all(n > 0 and errors == 0 for n, errors in rows.values()), result.stdout
    assert "(every move persisted)" in result.stdout, result.stdout
