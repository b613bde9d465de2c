"""`live_ticker(on_tick)`: an invisible component that fires `on_tick` every few seconds while its
tab is visible (a local React component, live_ticker.jsx, wired like kanban_dnd.py). Pages put one
in their body with a handler that reloads only when crm_app/live.py says their data changed."""

from __future__ import annotations

import reflex as rx
from reflex_base.event import no_args_event_spec

_JSX = rx.asset("live_ticker.jsx", shared=True)
TICK_MS = 3000


class LiveTicker(rx.Component):
    library = _JSX.importable_path
    tag = "LiveTicker"

    on_tick: rx.EventHandler[no_args_event_spec]
    interval_ms: rx.Var[int]


def live_ticker(on_tick, interval_ms: int = TICK_MS) -> rx.Component:
    return LiveTicker.create(on_tick=on_tick, interval_ms=interval_ms)
