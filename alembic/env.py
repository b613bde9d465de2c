"""Alembic environment: the URL comes from the app (or `-x url=...`), never from alembic.ini."""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool
from sqlmodel import SQLModel

import crm_app.db.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from crm_app.db.engine import database_url, normalize_url

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = SQLModel.metadata


def _url() -> str:
    override = context.get_x_argument(as_dictionary=True).get("url") or config.attributes.get("url")
    return normalize_url(override) if override else database_url()


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            # Several machines starting at once (scripts/serve.sh --migrate) migrate one after the
            # other: the later ones find the schema at head and do nothing.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7261203)")
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
