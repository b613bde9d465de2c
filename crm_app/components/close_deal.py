"""The Won / Lost dialog (state/close_deal.py), on every page that moves deals."""

from __future__ import annotations

import reflex as rx

from crm_app.state.close_deal import OTHER
from crm_app.state.close_deal import CloseDealState as C


def _error(field: str) -> rx.Component:
    return rx.cond(C.errors.contains(field),
                   rx.text(C.errors[field], color=rx.color("red", 11), size="1", class_name=f"error-{field}"))


def _lost_fields() -> rx.Component:
    return rx.vstack(
        rx.text("Why was it lost?", size="2", weight="medium"),
        rx.select.root(
            rx.select.trigger(placeholder="Choose a reason", width="100%", aria_label="Lost reason"),
            rx.select.content(
                rx.foreach(C.reasons, lambda reason: rx.select.item(reason, value=reason)),
                rx.select.item("Other (say below)", value=OTHER),
            ),
            value=C.reason,
            on_change=C.set_reason,
        ),
        _error("lost_reason"),
        rx.text_area(placeholder=rx.cond(C.reason == OTHER, "The reason, in a few words", "Anything to add? (optional)"),
                     value=C.note, on_change=C.set_note, max_length=500, rows="3", width="100%", name="lost_note"),
        _error("lost_note"),
        spacing="2",
        width="100%",
    )


def _won_fields() -> rx.Component:
    return rx.vstack(
        rx.cond(
            C.bulk,
            rx.text("Each deal keeps its own value: ", C.bulk_value, ".", size="2", class_name="bulk-won-value"),
            rx.vstack(
                rx.text("Close value", size="2", weight="medium"),
                rx.input(value=C.value, on_change=C.set_value, name="won_value", input_mode="decimal",
                         width="100%", max_length=20),
                _error("won_value"),
                spacing="2",
                width="100%",
            ),
        ),
        rx.text("Closed on", size="2", weight="medium"),
        rx.input(type="date", value=C.closed_on, on_change=C.set_closed_on, name="closed_on", width="100%"),
        _error("closed_at"),
        spacing="2",
        width="100%",
    )


def close_deal_dialog() -> rx.Component:
    lost = C.stage == "lost"
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title(rx.cond(lost, "Mark as Lost", "Mark as Won")),
            rx.dialog.description(C.title, size="2", margin_bottom="0.75em", color=rx.color("gray", 11)),
            rx.cond(lost, _lost_fields(), _won_fields()),
            _error("form"),
            rx.hstack(
                rx.dialog.close(rx.button("Cancel", variant="soft", color_scheme="gray", type="button")),
                rx.button(rx.cond(lost, "Mark as Lost", "Mark as Won"), on_click=C.confirm, loading=C.saving,
                          color_scheme=rx.cond(lost, "red", "grass"), class_name="confirm-close", type="button"),
                justify="end",
                spacing="3",
                margin_top="1em",
            ),
            max_width="440px",
            class_name="close-deal-dialog",
            custom_attrs={"data-stage": C.stage},
        ),
        open=C.open,
        on_open_change=C.set_open,
    )
