"""The bell in the sidebar (and in the phone's top bar): unread count, the newest notifications (each
opens its lead), "Mark all read" and a switch for browser notifications. The sidebar's bell carries the
live ticker that hears new ones within seconds; the phone's bell shows the same state without a second
ticker (the sidebar is only hidden on a phone, so its ticker still runs)."""

from __future__ import annotations

import reflex as rx

from crm_app.components.live import live_ticker
from crm_app.state.notifications import NotificationState as N


def _line(line) -> rx.Component:
    return rx.link(
        rx.hstack(
            rx.icon(line.icon, size=16, color=rx.cond(line.unread, rx.color("accent", 10), rx.color("gray", 9)),
                    flex_shrink="0", margin_top="2px"),
            rx.vstack(
                rx.text(line.message, size="2", weight=rx.cond(line.unread, "medium", "regular")),
                rx.text(line.when, size="1", color=rx.color("gray", 10)),
                spacing="0",
            ),
            align="start",
            spacing="2",
        ),
        href=line.href,
        on_click=N.open_one(line.id),
        underline="none",
        color=rx.color("gray", 12),
        padding="0.5em",
        border_radius="6px",
        background=rx.cond(line.unread, rx.color("accent", 2), "transparent"),
        _hover={"background": rx.color("accent", 3)},
        class_name="notification",
        custom_attrs={"data-unread": rx.cond(line.unread, "1", "0")},
        width="100%",
    )


def notification_bell(phone: bool = False) -> rx.Component:
    """`phone`: the top bar's copy, with class names of its own (`phone-bell...`) so that one page
    never has two elements answering to `.bell`, and its panel opening downwards."""
    prefix = "phone-bell" if phone else "bell"
    count = rx.cond(N.unread > 99, "99+", N.unread.to_string())
    trigger = rx.box(
        rx.icon_button(rx.icon("bell", size=18), variant="ghost", color_scheme="gray", aria_label="Notifications",
                       class_name=f"{prefix}-button", size="3" if phone else "1"),
        rx.cond(
            N.unread > 0,
            rx.badge(count, color_scheme="red", variant="solid", radius="full", size="1", class_name=f"{prefix}-count",
                     position="absolute", top="-8px", left="14px", padding="0 5px", font_size="10px",
                     line_height="16px", min_width="16px", justify_content="center", pointer_events="none",
                     box_shadow=f"0 0 0 2px {rx.color('gray', 2)}"),
        ),
        position="relative",
        margin_right="8px",
        custom_attrs={"data-unread": N.unread.to_string(), "data-loaded": rx.cond(N.loaded, "1", "0")},
        class_name=prefix,
    )
    panel = rx.vstack(
        rx.hstack(
            rx.text("Notifications", weight="bold", size="3"),
            rx.spacer(),
            rx.cond(N.unread > 0, rx.button("Mark all read", size="1", variant="ghost", on_click=N.mark_all_read,
                                            class_name="mark-all-read")),
            width="100%",
            align="center",
        ),
        rx.cond(
            N.lines.length() > 0,
            rx.vstack(rx.foreach(N.lines, _line), spacing="1", width="100%", max_height="60vh", overflow_y="auto"),
            rx.text("Nothing yet. Requests, Hot leads, new assignments and due follow-ups show here.",
                    size="2", color=rx.color("gray", 10)),
        ),
        rx.link("Show them on my desktop too", size="1", on_click=N.allow_browser_notifications, cursor="pointer",
                class_name="allow-desktop"),
        spacing="2",
        width="100%",
    )
    popover = rx.popover.root(
        rx.popover.trigger(trigger),
        rx.popover.content(panel, width="min(340px, 92vw)", side="bottom" if phone else "right",
                           align="end" if phone else "start", class_name=f"{prefix}-panel"),
    )
    if phone:
        return popover
    return rx.fragment(popover, rx.box(live_ticker(N.refresh_if_changed), display="none"))
