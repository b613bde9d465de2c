"""Form controls that look and behave the same on every page."""

from __future__ import annotations

import reflex as rx

MUTED = rx.color("gray", 10)
ERROR = rx.color("tomato", 11)


def choice(value, on_change, options: list[tuple[str, str]] | None, label: str, width: str = "150px", *,
           items=None) -> rx.Component:
    """A select named `label` (for screen readers) over (value, text) `options`, or over `items`, a Var
    of [value, text] lists, after any fixed options: as the filter bars use it."""
    fixed = [rx.select.item(text, value=key) for key, text in options or []]
    more = [rx.foreach(items, lambda pair: rx.select.item(pair[1], value=pair[0]))] if items is not None else []
    return rx.select.root(
        rx.select.trigger(width=width, aria_label=label),
        rx.select.content(*fixed, *more),
        value=value,
        on_change=on_change,
    )


def form_field(label: str, name: str, value, on_change, errors, *, kind: str = "text", hint="",
               autocomplete="off", max_length: int | None = None) -> rx.Component:
    """A labelled input whose error (errors[name]) shows right under it, else the hint. `max_length`:
    the same limit the service checks and the database column holds."""
    error = errors.get(name, "")  # (colours the input)
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
            **({"max_length": max_length} if max_length else {}),
        ),
        field_message(errors, name, hint),
        spacing="1",
        width="100%",
        align="start",
    )


def field_message(errors, name: str, hint="") -> rx.Component:
    """Under a field: its error (errors[name]) if it has one, else the hint (if any)."""
    error = errors.get(name, "")
    return rx.cond(error != "", rx.text(error, size="1", color=ERROR, class_name=f"error-{name}"),
                   rx.text(hint, size="1", color=MUTED) if isinstance(hint, rx.Var) or hint else rx.fragment())


def select_field(label: str, name: str, value, on_change, errors, options=None, *, items=None, hint="",
                 width: str = "100%", placeholder: str | None = None, class_name: str = "") -> rx.Component:
    """A labelled select whose error (errors[name]) shows right under it, else the hint: `options` as
    static (value, text) pairs, or `items` a Var of [value, text] lists (choices that depend on the user)."""
    content = (rx.foreach(items, lambda pair: rx.select.item(pair[1], value=pair[0])) if items is not None
               else rx.fragment(*[rx.select.item(text, value=key) for key, text in options]))
    trigger_props = {"placeholder": placeholder} if placeholder else {}
    return rx.vstack(
        rx.text(label, size="2", weight="medium", as_="label", id=f"label-{name}"),
        rx.select.root(
            rx.select.trigger(width=width, aria_labelledby=f"label-{name}",
                              class_name=f"select-{name} {class_name}".strip(), **trigger_props),
            rx.select.content(content),
            value=value,
            on_change=on_change,
            size="3",
        ),
        field_message(errors, name, hint),
        spacing="1",
        width="100%" if width == "100%" else "auto",
        align="start",
    )


def data_table(headers, rows, render_row, *, empty: rx.Component | None = None, **props) -> rx.Component:
    """The pages' list table: a header row (`headers`: texts, or (text, props) pairs) and one row per
    item of the Var `rows`, drawn by `render_row`; `empty` shows under the headers when there are none
    (the columns still say what the list would hold)."""
    cells = [rx.table.column_header_cell(h) if isinstance(h, str) else rx.table.column_header_cell(h[0], **h[1])
             for h in headers]
    table = rx.table.root(
        rx.table.header(rx.table.row(*cells)),
        rx.table.body(rx.foreach(rows, render_row)),
        **{"width": "100%", "variant": "surface", **props},
    )
    if empty is None:
        return table
    return rx.vstack(table, rx.cond(rows.length() > 0, rx.fragment(), empty), spacing="3", width="100%")


def dialog_footer(*actions: rx.Component, cancel: str = "Cancel") -> rx.Component:
    """A dialog's bottom row: Cancel (closes it, nothing saved), then the dialog's own buttons, on the right."""
    return rx.hstack(
        rx.dialog.close(rx.button(cancel, type="button", variant="soft", color_scheme="gray")),
        *actions,
        justify="end",
        spacing="2",
        width="100%",
        padding_top="0.5em",
    )
