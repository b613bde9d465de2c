import os

import reflex as rx

config = rx.Config(
    app_name="crm_app",
    telemetry_enabled=False,
    show_built_with_reflex=False,
    # Several workers share user state through Redis when REFLEX_REDIS_URL is set (see README).
    redis_url=os.environ.get("REFLEX_REDIS_URL") or None,
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
