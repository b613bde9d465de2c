"""The REST API served over real HTTP (granian, the server Reflex itself runs on) against a database of
its own, with a small team and one key per kind of caller."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from sqlmodel import Session

from crm_app.db.engine import make_engine
from crm_app.settings import REPO_ROOT
from tests.conftest import scratch_database
from tests.servers import free_port, serve

# The server's own clock runs, so data is placed relative to real now.
NOW = datetime.now(timezone.utc)
LOG = REPO_ROOT / "test-artifacts" / "api-server.log"
MAX_BODY_MB = 4
FAILED_KEY_RATE = 100
SERVER_APP_NAME = "crm-api-under-test"


@pytest.fixture(scope="session")
def api_database_url(database_url: str) -> Iterator[str]:
    with scratch_database(database_url, "crm_api") as url:
        yield url


@pytest.fixture(scope="session")
def api_engine(api_database_url: str):
    eng = make_engine(api_database_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def api_db(api_engine) -> Iterator[Session]:
    """The server's database as its owner (not rolled back: the server sees what is committed)."""
    with Session(api_engine, expire_on_commit=False) as session:
        yield session


@dataclass
class Team:
    rep: object
    other_rep: object
    manager: object
    admin: object
    keys: dict[str, str]  # "rep_write", "rep_read", "manager_write", "other_rep_write", "slow" -> secret
    key_ids: dict[str, int]


@pytest.fixture(scope="session")
def team(api_db: Session) -> Team:
    from crm_app.domain import Role
    from crm_app.services.api_keys import create_key
    from crm_app.services.permissions import CurrentUser
    from tests.factories import make_user

    rep, other = make_user(api_db, "Rhea Rep"), make_user(api_db, "Otto Other")
    contract = make_user(api_db, "Connie Contract")  # the contract test's own rep: its junk stays apart
    manager, admin = make_user(api_db, "Mona Manager", role="manager"), make_user(api_db, "Ada Admin", role="admin")
    acting_admin = CurrentUser(admin.id, admin.email, admin.name, Role.ADMIN)
    keys, ids = {}, {}
    for label, user, scope, rate in (
        ("rep_write", rep, "write", 100_000), ("rep_read", rep, "read", 100_000),
        ("manager_write", manager, "write", 100_000), ("other_rep_write", other, "write", 100_000),
        ("slow", rep, "read", 3), ("contract", contract, "write", 100_000),
    ):
        keys[label], ids[label] = create_key(api_db, acting_admin, name=label, scope=scope, user_id=user.id,
                                             now=NOW, rate_per_minute=rate)
    return Team(rep, other, manager, admin, keys, ids)


@pytest.fixture(scope="session")
def api_url(api_database_url: str, team: Team) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = ["granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port), "crm_app.api:api"]
    env = {**os.environ, "DATABASE_URL": api_database_url,
           # Small limits the tests can reach quickly; one proxy hop lets a test speak for other addresses.
           "CRM_API_MAX_BODY_MB": str(MAX_BODY_MB), "CRM_API_FAILED_KEY_RATE": str(FAILED_KEY_RATE),
           "REFLEX_TRUSTED_PROXY_HOPS": "1",
           # PGAPPNAME names the server's connections, so a test can cut exactly those (test_outage.py).
           "PGAPPNAME": SERVER_APP_NAME}
    with serve(command, env=env,
               ready_url=f"{url}/api/v1/openapi.json", log_path=LOG, what="The API server", timeout=60):
        yield url


@pytest.fixture(scope="session")
def http(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{api_url}/api/v1", timeout=60) as client:
        yield client


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def ago(**kw) -> str:
    return (datetime.now(timezone.utc) - timedelta(**kw)).isoformat()
