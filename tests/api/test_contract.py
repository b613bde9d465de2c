"""Contract test: schemathesis, run against the live server, generates requests from the API's own
OpenAPI schema (valid and invalid ones) and checks every answer against it: no server error, only
documented status codes, content types and headers, bodies that match their schema, bad input
refused and valid input accepted. (Its pytest plugin does not load under pytest 9, so the test runs
its command line, as a CI job would, and fails with its report.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.api.conftest import auth

MAX_EXAMPLES = 30
REPORT = Path(__file__).resolve().parents[2] / "test-artifacts" / "schemathesis.txt"


def test_every_operation_keeps_its_contract(api_url, team):
    key = auth(team.keys["contract"])["Authorization"]
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(Path(__file__).with_name("schemathesis.toml")),
         "run", f"{api_url}/api/v1/openapi.json",
         "--header", f"Authorization: {key}", "--checks", "all", "--max-examples", str(MAX_EXAMPLES),
         "--seed", "20261125", "--suppress-health-check", "all", "--no-color"],
        capture_output=True, text=True, timeout=900,
    )
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(run.stdout + run.stderr)
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, f"full report in {REPORT}\n" + report
    assert "7 operations" in report or "7 selected" in report or "/events/batch" in report, report
