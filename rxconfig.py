import os

import reflex as rx


def _state_expiry_seconds() -> int:
    """CRM_STATE_EXPIRY_SECONDS: how long a tab's state stays in the worker (or Redis) after its last
    event."""
    raw = os.environ.get("CRM_STATE_EXPIRY_SECONDS", "").strip() or "1800"
    try:
        seconds = int(raw)
    except ValueError:
        seconds = 0
    if seconds < 60:
        raise SystemExit(
            f"CRM_STATE_EXPIRY_SECONDS must be a whole number of seconds, at least 60 (got {raw!r}).")
    return seconds


config = rx.Config(
    app_name="crm_app",
    telemetry_enabled=False,
    show_built_with_reflex=False,
    # Several workers share user state through Redis when REFLEX_REDIS_URL is set (see README).
    redis_url=os.environ.get("REFLEX_REDIS_URL") or None,
    # Every tab's state stays in the web worker's memory (or in Redis) until it has had no event for
    # this long; Reflex's default is an hour, so a busy hour of sign-ins stayed resident. The disk/memory
    # managers evict it then (and delete its file); a tab silent for longer (a laptop that slept)
    # reconnects, rehydrates and loads its page afresh: the sign-in cookie is kept, unsaved typing is
    # lost. Every signed-in page's notification bell polls every few seconds, so an open tab keeps its
    # state: what expires is closed tabs and the sign-ins that never came back.
    redis_token_expiration=_state_expiry_seconds(),
    # Cross-origin calls with the user's cookies (CORS): only from the origins listed in
    # CRM_ALLOWED_ORIGINS; none by default, so only the app's own pages (same origin) reach it.
    # Reflex's default ("*" with credentials) let any site read answers meant for the signed-in user.
    cors_allowed_origins=[o.strip().rstrip("/") for o in os.environ.get("CRM_ALLOWED_ORIGINS", "").split(",")
                          if o.strip()],
    plugins=[
        rx.plugins.RadixThemesPlugin(
            theme=rx.theme(appearance="light", accent_color="indigo", gray_color="slate", radius="medium")
        ),
    ],
    disable_plugins=[rx.plugins.SitemapPlugin],
)
