"""The frame around every page: sidebar navigation, whose view this is, and the page body."""

from __future__ import annotations

import reflex as rx

from crm_app.state.base import AppState

NAV = [
    ("Today", "/", "layout-dashboard"),
    ("Pipeline", "/pipeline", "columns-3"),
    ("Leads", "/leads", "list-ordered"),
    ("Analytics", "/analytics", "chart-column"),
    ("Import", "/import", "upload"),
    ("Model", "/model", "brain-circuit"),
    ("Settings", "/settings", "settings"),
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


def viewer_picker(on_change) -> rx.Component:
    return rx.vstack(
        rx.text("Viewing as", size="1", color=rx.color("gray", 10), weight="medium"),
        rx.select.root(
            rx.select.trigger(placeholder="Choose a rep", width="100%", class_name="viewer-trigger"),
            rx.select.content(
                rx.foreach(
                    AppState.viewer_options,
                    lambda option: rx.select.item(option[1], value=option[0]),
                )
            ),
            value=AppState.viewer_id,
            on_change=on_change,
            size="2",
        ),
        spacing="1",
        width="100%",
        class_name="viewer-picker",
    )


def page_frame(title: str, subtitle, *body: rx.Component, on_viewer_change, actions=None) -> rx.Component:
    """Sidebar on the left, a titled page on the right."""
    sidebar = rx.vstack(
        rx.hstack(
            rx.center(rx.icon("target", size=20, color="white"), width="32px", height="32px",
                      background=rx.color("accent", 9), border_radius="8px"),
            rx.heading("Pipeline CRM", size="4"),
            align="center",
            spacing="2",
            padding_bottom="1em",
        ),
        *[_nav_link(*item) for item in NAV],
        rx.spacer(),
        viewer_picker(on_viewer_change),
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
    return rx.hstack(
        sidebar,
        rx.box(header, *body, padding="1.5em 2em", width="100%", min_width="0"),
        spacing="0",
        align="start",
        width="100%",
        background=rx.color("gray", 1),
    )
