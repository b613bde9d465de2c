"""What a page shows until its state has arrived: grey placeholders, never an empty state.

A page's state starts from its defaults (no leads, $0, 0 Hot) in the browser; until its on_load
handler has answered (the state's `loaded` flag), "Nothing urgent" or "No leads match" would be a lie.
"""

from __future__ import annotations

import reflex as rx

LOADING_CLASS = "page-loading"  # tests wait for it to go


def _bar(height: str, width: str = "100%") -> rx.Component:
    return rx.skeleton(rx.box(height=height, width=width), loading=True, width=width)


def loading_rows(rows: int = 6, *, stats: int = 0, row_height: str = "56px") -> rx.Component:
    """`stats` stat-card shapes in a row (wrapping on a phone), then `rows` list-row shapes."""
    parts = []
    if stats:
        parts.append(rx.grid(*[_bar("76px") for _ in range(stats)],
                             columns=rx.breakpoints(initial="2", sm="3", md=str(stats)), spacing="3",
                             width="100%"))
    parts += [_bar(row_height) for _ in range(rows)]
    return rx.vstack(*parts, spacing="3", width="100%", class_name=LOADING_CLASS, aria_busy="true",
                     aria_label="Loading")


def loading_columns(columns: int = 4) -> rx.Component:
    """Kanban-column shapes (the board before its first answer)."""
    return rx.hstack(
        *[rx.vstack(_bar("48px"), _bar("92px"), _bar("92px"), spacing="2", width="264px", min_width="264px")
          for _ in range(columns)],
        spacing="3",
        width="100%",
        overflow="hidden",
        class_name=LOADING_CLASS,
        aria_busy="true",
        aria_label="Loading",
    )
