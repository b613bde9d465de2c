"""The frame around every page: sidebar navigation with "+ Lead", whose view this is, and the page body."""

from __future__ import annotations

import reflex as rx

from crm_app.components.command_search import search_button, search_dialog, shortcuts_button, shortcuts_dialog
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
    ("Forecast", "/forecast", "trending-up"),
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
    """Who is signed in, with their account page and sign-out. Until the page's first answer says who
    it is (a fresh load), a placeholder holds the place instead of an empty name."""
    return rx.cond(AppState.viewer_name == "", _user_menu_placeholder(), _user_menu())


def _user_menu_placeholder() -> rx.Component:
    return rx.vstack(
        rx.skeleton(rx.text("Signed in as", size="1")),
        rx.skeleton(rx.box(height="32px", width="140px")),
        spacing="2",
        width="100%",
        class_name="user-menu-loading",
    )


def _user_menu() -> rx.Component:
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
        rx.hstack(
            shortcuts_button(),
            spacing="2",
        ),
        spacing="1",
        width="100%",
        class_name="user-menu",
    )


def _logo() -> rx.Component:
    return rx.hstack(
        rx.center(rx.icon("target", size=20, color="white"), width="32px", height="32px",
                  background=rx.color("accent", 9), border_radius="8px"),
        rx.heading("Pipeline CRM", size="4"),
        align="center",
        spacing="2",
    )


def _nav_links() -> list[rx.Component]:
    return [
        *[_nav_link(*item) for item in NAV],
        *[_role_link(*item, AppState.viewer_is_manager) for item in MANAGER_NAV],
        *[_role_link(*item, AppState.viewer_is_admin) for item in ADMIN_NAV],
    ]


def _phone_bar() -> rx.Component:
    """Below 768 px the sidebar folds away (assets/crm.css) and this bar takes its place: the logo,
    "+ Lead", and a menu button that slides the same links and user menu in from the left."""
    # A Radix dialog pinned to the left edge (assets/crm.css), not a drawer library: nothing new to ship.
    menu = rx.dialog.root(
        rx.dialog.trigger(rx.icon_button(rx.icon("menu", size=20), variant="ghost", size="3",
                                         aria_label="Menu", class_name="phone-menu-button")),
        rx.dialog.content(
            rx.vstack(
                rx.hstack(rx.dialog.title(_logo(), margin="0"), rx.spacer(),
                          rx.dialog.close(rx.icon_button(rx.icon("x", size=18), variant="ghost",
                                                         aria_label="Close menu")),
                          width="100%", align="center", padding_bottom="0.75em"),
                *_nav_links(),
                rx.spacer(),
                user_menu(),
                spacing="1",
                height="100%",
                width="100%",
            ),
            class_name="phone-menu",
        ),
    )
    return rx.hstack(
        menu,
        _logo(),
        rx.spacer(),
        notification_bell(phone=True),
        quick_add_button(compact=True),
        class_name="app-topbar",
        align="center",
        spacing="2",
        width="100%",
        padding="0.5em 0.75em",
        position="sticky",
        top="0",
        z_index="30",
        background=rx.color("gray", 2),
        border_bottom=f"1px solid {rx.color('gray', 5)}",
    )


def page_frame(title: str, subtitle, *body: rx.Component, actions=None) -> rx.Component:
    """Sidebar on the left, a titled page on the right; on a phone, a top bar over the page."""
    sidebar = rx.vstack(
        rx.hstack(_logo(), rx.spacer(), notification_bell(), align="center", width="100%", padding_bottom="1em"),
        quick_add_button(),
        search_button(),
        *_nav_links(),
        rx.spacer(),
        user_menu(),
        class_name="app-sidebar",
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
        class_name="page-header",
    )
    # While the database is away the page's content is hidden (not removed: drafts typed in it stay).
    content = rx.box(*body, display=rx.cond(DatabaseState.reconnecting, "none", "block"), width="100%")
    return rx.box(
        _phone_bar(),
        rx.hstack(
            sidebar,
            rx.box(header, reconnecting_notice(), content, quick_add_dialog(), search_dialog(),
                   shortcuts_dialog(), close_deal_dialog(), padding="1.5em 2em", width="100%",
                   min_width="0", class_name="app-main"),
            spacing="0",
            align="start",
            width="100%",
        ),
        width="100%",
        background=rx.color("gray", 1),
        # The web worker holding this tab's live connection (an opaque name): which worker serves
        # whom, for an operator of several workers (README, "Several web workers and machines").
        custom_attrs={"data-worker": AppState.served_by},
    )
