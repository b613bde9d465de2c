"""The frame around every page: sidebar navigation with "+ Lead", whose view this is, and the page body."""

from __future__ import annotations

import reflex as rx

from crm_app.components.close_deal import close_deal_dialog
from crm_app.components.notifications import notification_bell
from crm_app.components.quick_add import quick_add_button, quick_add_dialog
from crm_app.state.base import AppState
from crm_app.state.database import DatabaseState, reconnecting_notice

NAV = [
    ("Today", "/", "layout-dashboard"),
    ("Pipeline", "/pipeline", "columns-3"),
    ("Leads", "/leads", "list-ordered"),
    ("Analytics", "/analytics", "chart-column"),
    ("Settings", "/settings", "settings"),
]
# Pages only managers (and admins) may open: not offered to reps, and refused if typed in.
MANAGER_NAV = [
    ("Import", "/import", "upload"),
    ("Model", "/model", "brain-circuit"),
    ("Audit log", "/audit", "history"),
]
ADMIN_NAV = [
    ("Users", "/users", "users"),
    ("API keys", "/api-keys", "key-round"),
]


def _nav_link(label: str, href: str, icon: str) -> rx.Component:
    return rx.link(
        rx.hstack(rx.icon(icon, size=18), rx.text(label, size="3"), align="center", spacing="3"),
        href=href,
        underline="none",
        class_name="nav-link",
        padding="0.5em 0.75em",
        border_radius="8px",
        color=rx.color("gray", 12),
        _hover={"background": rx.color("accent", 3)},
        width="100%",
    )


def _role_link(label: str, href: str, icon: str, visible) -> rx.Component:
    return rx.cond(visible, _nav_link(label, href, icon))


def user_menu() -> rx.Component:
    """Who is signed in, with their account page and sign-out."""
    return rx.vstack(
        rx.text("Signed in as", size="1", color=rx.color("gray", 10), weight="medium"),
        rx.hstack(
            rx.avatar(fallback=AppState.viewer_name.to(str)[:1], size="2", radius="full"),
            rx.vstack(
                rx.text(AppState.viewer_name, size="2", weight="medium", class_name="signed-in-name"),
                rx.text(AppState.viewer_role, size="1", color=rx.color("gray", 10), class_name="signed-in-role"),
                spacing="0",
            ),
            align="center",
            spacing="2",
        ),
        rx.hstack(
            rx.link("Account", href="/account", size="1"),
            rx.text("\u00b7", size="1", color=rx.color("gray", 9)),
            rx.link("Sign out", on_click=AppState.sign_out, size="1", class_name="sign-out", cursor="pointer"),
            spacing="2",
        ),
        spacing="1",
        width="100%",
        class_name="user-menu",
    )


def page_frame(title: str, subtitle, *body: rx.Component, actions=None) -> rx.Component:
    """Sidebar on the left, a titled page on the right."""
    sidebar = rx.vstack(
        rx.hstack(
            rx.center(rx.icon("target", size=20, color="white"), width="32px", height="32px",
                      background=rx.color("accent", 9), border_radius="8px"),
            rx.heading("Pipeline CRM", size="4", white_space="nowrap"),
            rx.spacer(),
            notification_bell(),
            align="center",
            width="100%",
            spacing="2",
            padding_bottom="1em",
        ),
        quick_add_button(),
        *[_nav_link(*item) for item in NAV],
        *[_role_link(*item, AppState.viewer_is_manager) for item in MANAGER_NAV],
        *[_role_link(*item, AppState.viewer_is_admin) for item in ADMIN_NAV],
        rx.spacer(),
        user_menu(),
        width="240px",
        min_width="240px",
        height="100vh",
        position="sticky",
        top="0",
        padding="1.25em 1em",
        background=rx.color("gray", 2),
        border_right=f"1px solid {rx.color('gray', 5)}",
        spacing="1",
    )
    header = rx.hstack(
        rx.vstack(
            rx.heading(title, size="6"),
            rx.text(subtitle, color=rx.color("gray", 10), size="2"),
            spacing="1",
        ),
        rx.spacer(),
        actions or rx.fragment(),
        align="end",
        width="100%",
        padding_bottom="1em",
    )
    # While the database is away the page's content is hidden (not removed: drafts typed in it stay).
    content = rx.box(*body, display=rx.cond(DatabaseState.reconnecting, "none", "block"), width="100%")
    return rx.hstack(
        sidebar,
        rx.box(header, reconnecting_notice(), content, quick_add_dialog(), close_deal_dialog(),
               padding="1.5em 2em", width="100%", min_width="0"),
        spacing="0",
        align="start",
        width="100%",
        background=rx.color("gray", 1),
    )
