"""Form controls that look and behave the same on every page."""

from __future__ import annotations

import reflex as rx

MUTED = rx.color("gray", 10)
ERROR = rx.color("tomato", 11)


def choice(value, on_change, options: list[tuple[str, str]], label: str, width: str = "150px") -> rx.Component:
    """A labelled select over (value, text) options, as the filter bars use it."""
    return rx.select.root(
        rx.select.trigger(width=width, aria_label=label),
        rx.select.content(*[rx.select.item(text, value=key) for key, text in options]),
        value=value,
        on_change=on_change,
    )


def form_field(label: str, name: str, value, on_change, errors, *, kind: str = "text", hint="",
           autocomplete="off") -> rx.Component:
    """A labelled input whose error (errors[name]) shows right under it, else the hint."""
    error = errors.get(name, "")
    return rx.vstack(
        rx.text(label, size="2", weight="medium", as_="label", html_for=f"field-{name}"),
        rx.input(
            id=f"field-{name}",
            name=name,
            type=kind,
            value=value,
            on_change=on_change,
            auto_complete=autocomplete,
            width="100%",
            size="3",
            color_scheme=rx.cond(error != "", "tomato", "indigo"),
            class_name=f"input-{name}",
        ),
        rx.cond(error != "", rx.text(error, size="1", color=ERROR, class_name=f"error-{name}"),
                rx.text(hint, size="1", color=MUTED)),
        spacing="1",
        width="100%",
        align="start",
    )


def select_field(label: str, name: str, value, on_change, errors, options=None, *, items=None) -> rx.Component:
    """A labelled select whose error (errors[name]) shows right under it: `options` as static
    (value, text) pairs, or `items` a Var of [value, text] lists (choices that depend on the user)."""
    error = errors.get(name, "")
    content = (rx.foreach(items, lambda pair: rx.select.item(pair[1], value=pair[0])) if items is not None
               else rx.fragment(*[rx.select.item(text, value=key) for key, text in options]))
    return rx.vstack(
        rx.text(label, size="2", weight="medium", as_="label", id=f"label-{name}"),
        rx.select.root(
            rx.select.trigger(width="100%", aria_labelledby=f"label-{name}", class_name=f"select-{name}"),
            rx.select.content(content),
            value=value,
            on_change=on_change,
            size="3",
        ),
        rx.cond(error != "", rx.text(error, size="1", color=ERROR, class_name=f"error-{name}")),
        spacing="1",
        width="100%",
        align="start",
    )
