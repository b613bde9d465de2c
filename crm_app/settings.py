"""All configuration, read once from the environment. Every variable is listed in README.md."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    # An external PostgreSQL; when empty the app starts an embedded one in `data_dir`. The tables'
    # owner connects with it: migrations, seeding, the command line, sign-in and background work.
    database_url: str
    # The web app's login for the signed-in users' work: a role that owns nothing and can only become
    # the app role (crm_app/db/security.py). Empty: `database_url` with the role `crm_web`, no password.
    app_database_url: str
    # Where the embedded PostgreSQL keeps its data (and other local state).
    data_dir: Path
    # Size of the SQLAlchemy connection pool per app worker.
    db_pool_size: int
    # Rows per page in lists.
    page_size: int
    # Signs short-lived links (CSV export). Random per process when CRM_SECRET_KEY is unset, which is
    # fine for one worker; several workers (or machines) need the same key.
    secret_key: bytes
    # The REST API refuses a request body larger than this (413), before reading it when the
    # Content-Length says so, else while it streams in.
    api_max_body_bytes: int
    # The largest CSV the Import page accepts: refused at once when the upload says it is larger, else
    # cut off as it streams past this (crm_app/upload_guard.py).
    import_max_bytes: int
    # API requests a minute one client address may make without a valid key; more answer 429.
    api_failed_key_rate: int
    # Mark the session cookie Secure (sent over HTTPS only): set it when the app is served over HTTPS.
    secure_cookies: bool
    # Other origins (scheme://host[:port]) whose pages may call this app with the user's cookies;
    # empty: only the app's own origin.
    allowed_origins: tuple[str, ...]
    # A closed tab's state leaves the web worker's memory this long after its websocket closed, unless
    # it connected again (it stays on disk for CRM_STATE_EXPIRY_SECONDS; crm_app/closed_tabs.py);
    # 0 keeps it in memory for CRM_STATE_EXPIRY_SECONDS too. One worker without Redis only.
    closed_tab_seconds: int


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def load_settings() -> Settings:
    return Settings(
        database_url=os.environ.get("DATABASE_URL", "").strip(),
        app_database_url=os.environ.get("CRM_APP_DATABASE_URL", "").strip(),
        data_dir=Path(os.environ.get("CRM_DATA_DIR", REPO_ROOT / ".data")).expanduser(),
        db_pool_size=int(os.environ.get("CRM_DB_POOL_SIZE", "10")),
        page_size=int(os.environ.get("CRM_PAGE_SIZE", "25")),
        secret_key=(os.environ.get("CRM_SECRET_KEY", "").strip().encode() or secrets.token_bytes(32)),
        api_max_body_bytes=int(float(os.environ.get("CRM_API_MAX_BODY_MB", "16")) * 1024 * 1024),
        import_max_bytes=int(float(os.environ.get("CRM_IMPORT_MAX_MB", "200")) * 1024 * 1024),
        api_failed_key_rate=int(os.environ.get("CRM_API_FAILED_KEY_RATE", "30")),
        secure_cookies=_flag("CRM_SECURE_COOKIES"),
        allowed_origins=tuple(origin.strip().rstrip("/") for origin in
                              os.environ.get("CRM_ALLOWED_ORIGINS", "").split(",") if origin.strip()),
        closed_tab_seconds=max(0, int(os.environ.get("CRM_CLOSED_TAB_SECONDS", "120"))),
    )


settings = load_settings()
