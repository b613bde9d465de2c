"""Run the Alembic migrations from code (start-up script, tests, benchmark)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from crm_app.settings import REPO_ROOT

ALEMBIC_INI = REPO_ROOT / "alembic" / "alembic.ini"


def upgrade_to_head(url: str | None = None) -> None:
    """Bring the database at `url` (default: the app's database) to the newest schema."""
    config = Config(str(ALEMBIC_INI))
    config.attributes["configure_logger"] = False
    if url:
        config.attributes["url"] = url
    command.upgrade(config, "head")
