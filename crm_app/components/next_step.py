"""The "Schedule the next step" dialog (state/next_step.py), in every page that logs activities."""

from __future__ import annotations

import reflex as rx

from crm_app.services.follow_ups import DUE_CHOICES, NEXT_STEP_KINDS
from crm_app.state.next_step import NextStepState as N


def next_step_fields(kind, on_kind, due, on_due, note, on_note, error_field) -> rx.Component:
    """Kind, due time and note: the dialog's fields, and the lead page's always-open form."""
    return rx.vstack(
        rx.hstack(
            rx.select.root(
                rx.select.trigger(width="140px", aria_label="Next step"),
                rx.select.content(*[rx.select.item(label, value=key) for key, label in NEXT_STEP_KINDS.items()]),
                value=kind, on_change=on_kind,
            ),
            rx.select.root(
                rx.select.trigger(width="190px", aria_label="Due"),
                rx.select.content(*[rx.select.item(label, value=key) for key, label in DUE_CHOICES.items()]),
                value=due, on_change=on_due,
            ),
            width="100%",
            wrap="wrap",
        ),
        rx.input(placeholder="What for? (optional)", value=note, on_change=on_note, max_length=500, width="100%",
                 name="next_note", color_scheme=rx.cond(error_field == "next_note", "red", "gray")),
        spacing="2",
        width="100%",
    )


def _actions(cancel: rx.Component) -> rx.Component:
    return rx.hstack(
        cancel,
        rx.button(rx.icon("calendar-plus", size=14), "Schedule", on_click=N.schedule, loading=N.saving,
                  class_name="schedule-next-step", type="button"),
        justify="end",
        spacing="3",
    )


def next_step_panel(origin: str) -> rx.Component:
    """Inline, where the activity was logged (the lead page, Today): it never covers the page."""
    return rx.cond(
        N.open & (N.origin == origin),
        rx.card(
            rx.vstack(
                rx.hstack(
                    rx.icon("calendar-plus", size=16, color=rx.color("accent", 10)),
                    rx.text("Schedule the next step", weight="bold", size="2"),
                    rx.text("for ", rx.text.strong(N.lead_name), size="2", color=rx.color("gray", 11)),
                    align="center",
                    spacing="2",
                    wrap="wrap",
                ),
                next_step_fields(N.kind, N.set_kind, N.due, N.set_due, N.note, N.set_note, N.error_field),
                rx.cond(N.error != "", rx.text(N.error, color=rx.color("red", 11), size="2",
                                               class_name="next-step-error")),
                _actions(rx.button("Not now", variant="soft", color_scheme="gray", on_click=N.dismiss,
                                   class_name="skip-next-step", type="button")),
                spacing="2",
                width="100%",
            ),
            width="100%",
            margin_top="0.75em",
            background=rx.color("accent", 2),
            class_name="next-step-panel",
        ),
    )


def next_step_dialog() -> rx.Component:
    """On the board, where the log came from a card's menu."""
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Schedule the next step"),
            rx.dialog.description(rx.text("What happens next with ", rx.text.strong(N.lead_name), "?"), size="2",
                                  margin_bottom="0.75em"),
            next_step_fields(N.kind, N.set_kind, N.due, N.set_due, N.note, N.set_note, N.error_field),
            rx.cond(N.error != "", rx.text(N.error, color=rx.color("red", 11), size="2", class_name="next-step-error")),
            rx.box(_actions(rx.dialog.close(rx.button("Not now", variant="soft", color_scheme="gray"))),
                   margin_top="1em"),
            max_width="460px",
            class_name="next-step-dialog",
        ),
        open=N.open & (N.origin == "pipeline"),
        on_open_change=N.set_open,
    )
