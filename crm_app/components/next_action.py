"""The next best action, drawn the same way in the action queue and on the lead page."""

from __future__ import annotations

import reflex as rx


def _basis_color(basis) -> rx.Var:
    # Learned from the team's history: violet; a rule of thumb: gray.
    return rx.cond(basis == "history", "violet", "gray")


def suggestion_line(headline, why, basis) -> rx.Component:
    """One line under a queue item: "Suggested: Case study · High confidence", the why on hover."""
    return rx.tooltip(
        rx.hstack(
            rx.icon("lightbulb", size=14, color=rx.color(_basis_color(basis), 10)),
            rx.text("Suggested: ", rx.text.strong(headline), size="1", color=rx.color("gray", 11)),
            spacing="1",
            align="center",
            class_name="queue-suggestion",
            width="fit-content",
        ),
        content=why,
    )


def next_action_card(action, title: rx.Component) -> rx.Component:
    """The lead page's card: the play, how sure, and why in words. `action` is a NextAction var."""
    return rx.card(
        rx.vstack(
            title,
            rx.hstack(
                rx.center(rx.icon("lightbulb", size=20), width="40px", height="40px", min_width="40px",
                          border_radius="50%", background=rx.color(_basis_color(action.basis), 3),
                          color=rx.color(_basis_color(action.basis), 11)),
                rx.vstack(
                    rx.hstack(
                        rx.text(action.label, size="4", weight="bold", class_name="next-action-play"),
                        rx.badge(
                            rx.cond(action.basis == "history", action.confidence + " confidence",
                                    "Rule of thumb"),
                            color_scheme=_basis_color(action.basis), variant="soft",
                            class_name="next-action-confidence",
                        ),
                        align="center",
                        wrap="wrap",
                    ),
                    rx.text(action.why, size="2", color=rx.color("gray", 11), class_name="next-action-why"),
                    spacing="1",
                ),
                spacing="3",
                align="start",
                width="100%",
            ),
            spacing="3",
            width="100%",
        ),
        size="2",
        width="100%",
        class_name="next-action",
    )
