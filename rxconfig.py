import os

import reflex as rx

config = rx.Config(
    app_name="crm_app",
    telemetry_enabled=False,
    show_built_with_reflex=False,
    # Several workers share user state through Redis when REFLEX_REDIS_URL is set (see README).
    redis_url=os.environ.get("REFLEX_REDIS_URL") or None,
    plugins=[
        rx.plugins.RadixThemesPlugin(
            theme=rx.theme(appearance="light", accent_color="indigo", gray_color="slate", radius="medium")
        ),
    ],
    disable_plugins=[rx.plugins.SitemapPlugin],
)
