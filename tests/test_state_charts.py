"""Charts in a tab's state are the figure's JSON data, not plotly objects: a go.Figure took ~75 ms of
CPU to unpickle, empty or not, so with several web workers on Redis every event that loaded a tab's
state paid that for each of the nine charts every tab held (state/base.figure_data). The browser
gets the same JSON as before."""

from __future__ import annotations

import pickle
import typing

import plotly.basedatatypes
import plotly.graph_objects as go
import reflex as rx
from reflex_base.utils.serializers import serialize

import crm_app.crm_app  # noqa: F401  (every page's state class)
from crm_app import charts
from crm_app.state.base import EMPTY_FIGURE, figure_data


def _states(cls=rx.State):
    for sub in cls.get_substates():
        yield sub
        yield from _states(sub)


def _plotly_inside(value) -> bool:
    if isinstance(value, plotly.basedatatypes.BasePlotlyType | plotly.basedatatypes.BaseFigure):
        return True
    if isinstance(value, dict):
        return any(_plotly_inside(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_plotly_inside(v) for v in value)
    return False


def test_no_state_holds_a_plotly_object():
    held = []
    for state in _states():
        hints = typing.get_type_hints(state)
        for name in state.base_vars:
            if hints.get(name) is go.Figure or _plotly_inside(state.get_fields()[name].default_value()):
                held.append(f"{state.__name__}.{name}")
        for name, var in state.computed_vars.items():
            if var._var_type is go.Figure:
                held.append(f"{state.__name__}.{name} (computed)")
    assert held == []


def test_a_charts_data_is_what_the_browser_got_for_the_figure_and_unpickles_as_plain_data():
    figure = charts.ranked_bars(["Referral", "Web"], [0.4, 0.1], colors=["#111111", "#222222"],
                                text=["40%", "10%"], percent=True)
    data = figure_data(figure)
    assert data == serialize(figure)
    assert data["data"][0]["y"] == ["Referral", "Web"] or data["data"][0]["x"] == ["Referral", "Web"]
    assert not _plotly_inside(pickle.loads(pickle.dumps(data)))
    assert EMPTY_FIGURE == {"data": [], "layout": {}}
