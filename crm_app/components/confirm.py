"""A confirmation that states the impact, for team-wide or irreversible actions (an engine switch, an
API key revoked, a user deactivated): what happens in one line, the detail under it, Cancel first."""

from __future__ import annotations

import reflex as rx


def confirm_dialog(*, open, on_open_change, title, impact, detail, confirm_label, on_confirm,
                   class_name: str, color_scheme: str = "indigo") -> rx.Component:
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title(title),
            rx.alert_dialog.description(
                rx.text(impact, size="3", weight="medium", class_name="confirm-impact"),
                size="2",
            ),
            rx.text(detail, size="2", color=rx.color("gray", 11), class_name="confirm-detail", margin_top="0.5em"),
            rx.hstack(
                rx.alert_dialog.cancel(rx.button("Cancel", variant="soft", color_scheme="gray",
                                                 class_name="confirm-cancel")),
                rx.alert_dialog.action(rx.button(confirm_label, color_scheme=color_scheme, on_click=on_confirm,
                                                 class_name="confirm-ok")),
                justify="end",
                spacing="3",
                margin_top="1.25em",
            ),
            max_width="520px",
            class_name=class_name,
        ),
        open=open,
        on_open_change=on_open_change,
    )
