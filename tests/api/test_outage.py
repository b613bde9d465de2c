"""The API while its database is away: clean 503 answers a client can act on, and recovery by itself.

The outage is made for this server alone: its database stops accepting connections and the
server's own connections are cut (what a restart of PostgreSQL does to it), while every other
database on the machine's server goes on. The fault suite (tests/faults) kills real servers."""

from __future__ import annotations

import time
import uuid

from tests.api.conftest import SERVER_APP_NAME, auth
from tests.conftest import database_away


def _assert_unavailable(response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert int(response.headers["Retry-After"]) > 0
    error = response.json()["error"]
    assert error["status"] == 503 and "retry" in error["message"].lower()


def test_while_the_database_is_away_the_api_answers_503_json_and_recovers_without_restart(
        http, team, api_database_url):
    # New leads come in through a manager's key (a rep's key creates none: issue #17, item 11).
    reader, writer = auth(team.keys["rep_read"]), auth(team.keys["manager_write"])
    assert http.get("/me", headers=reader).status_code == 200  # the server holds pooled connections
    email = f"outage-{uuid.uuid4().hex[:8]}@example.com"
    with database_away(api_database_url, SERVER_APP_NAME):
        _assert_unavailable(http.get("/leads", headers=reader))
        _assert_unavailable(http.post("/leads", json={"email": email, "name": "Out Age"}, headers=writer))
    # Back: the same server answers again, no restart; the refused write was not half-applied.
    deadline = time.monotonic() + 10
    while (answer := http.get("/me", headers=reader)).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert answer.status_code == 200, answer.text
    found = http.get("/leads", params={"q": email}, headers=reader).json()["items"]
    assert found == []
    created = http.post("/leads", json={"email": email, "name": "Out Age"}, headers=writer)
    assert created.status_code == 201, created.text
