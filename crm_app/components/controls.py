"""Form controls that look and behave the same on every page."""

from __future__ import annotations

import reflex as rx


def choice(value, on_change, options: list[tuple[str, str]], label: str, width: str = "150px") -> rx.Component:
    """A labelled select over (value, text) options, as the filter bars use it."""
    return rx.select.root(
        rx.select.trigger(width=width, aria_label=label),
        rx.select.content(*[rx.select.item(text, value=key) for key, text in options]),
        value=value,
        on_change=on_change,
    )
