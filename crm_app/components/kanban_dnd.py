"""Drag-and-drop kanban primitives for Reflex 0.10.1, wrapping @hello-pangea/dnd 18.0.1.

Wiring: ``kanban_dnd.jsx`` sits beside this module and exports ``DndBoard``, ``DndColumn``
and ``DndCard`` (they call the library's render-prop children themselves). On import,
``rx.asset("kanban_dnd.jsx", shared=True)`` symlinks it to
``<cwd>/assets/external/<module path>/kanban_dnd.jsx`` (keep ``assets/external/`` out of
git); the build copies assets to ``.web/public``, and the components import it through
``.importable_path`` (``$/public/external/...``). Don't use the plain string value as
``library``: it ends in ``?v=<hash>``. npm installs the package named in
``lib_dependencies``.

Usage (``dnd_card`` has to be what the ``rx.foreach`` function returns)::

    dnd_board(
        *[
            dnd_column(
                rx.foreach(
                    State.columns[stage],
                    lambda card, i: dnd_card(
                        rx.text(card["title"]),
                        card_id=card["id"], index=i, key=card["id"],
                        class_name="deal-card", padding="8px",
                    ),
                ),
                column_id=stage, min_height="200px",
            )
            for stage in STAGES
        ],
        on_move=State.move_card,  # (card_id: str, to_column: str, to_index: int)
        display="flex", gap="16px",
    )

``on_move`` fires when a card is dropped on a column, including a drop in its own column.
Nothing fires for a drop outside every column or a drag cancelled with Escape.
``to_index`` is the card's position in the target list after the move.

The whole card is the drag handle. To move a card with the keyboard, focus it (Tab), press
Space, use the arrow keys, then press Space to drop. Escape cancels. A plain click still
reaches the card's ``on_click``.

Optimistic display (``optimistic=True``, the default): a dropped card is shown in its new
place immediately. The pending move is forgotten when any column re-renders with new
children, that is, when the handler's state update arrives. If the update never arrives it
is forgotten after 2.5 s. A handler that rejects a move must therefore still change some
var of the state that renders the columns (for example an error message), so that the
card returns at once.

DOM hooks for tests: a column is ``[data-rfd-droppable-id=<column_id>]`` and also has
``data-column-id``. A card is ``[data-rfd-draggable-id=<card_id>]`` and also has
``data-card-id``. A card has ``data-dragging="true"`` while it is lifted or animating.
"""

from __future__ import annotations

import reflex as rx
from reflex_base.constants.compiler import MemoizationMode
from reflex_base.event import passthrough_event_spec

_JSX = rx.asset("kanban_dnd.jsx", shared=True)
DND_PACKAGE = "@hello-pangea/dnd@18.0.1"


class _DndBase(rx.Component):
    library = _JSX.importable_path
    lib_dependencies: list[str] = [DND_PACKAGE]


class DndBoard(_DndBase):
    """DragDropContext, plus a div for styling. Its children are the columns."""

    tag = "DndBoard"

    # Fires with (card_id, to_column_id, to_index) when a card is dropped on a column.
    on_move: rx.EventHandler[passthrough_event_spec(str, str, int)]

    # Show a move at once, before the server's state update arrives (default True).
    optimistic: rx.Var[bool]


class DndColumn(_DndBase):
    """A Droppable column. It renders its children, then the library's placeholder."""

    tag = "DndColumn"

    # Keep the rx.foreach inside the column instead of memoizing it as a separate component,
    # so the column receives the card elements themselves (needed for optimistic moves).
    _memoization_mode = MemoizationMode(recursive=False)

    column_id: rx.Var[str]
    is_drop_disabled: rx.Var[bool]
    # False: no room is made for a card dragged over it (a chip-sized drop target).
    show_placeholder: rx.Var[bool]


class DndCard(_DndBase):
    """A Draggable card; the whole card is the drag handle."""

    tag = "DndCard"

    card_id: rx.Var[str]
    # Position in its column (the rx.foreach index).
    index: rx.Var[int]
    is_drag_disabled: rx.Var[bool]


dnd_board = DndBoard.create
dnd_column = DndColumn.create
dnd_card = DndCard.create

__all__ = ["DndBoard", "DndCard", "DndColumn", "dnd_board", "dnd_card", "dnd_column"]
