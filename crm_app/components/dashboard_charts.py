"""The dashboard's Plotly figures, built from numbers the services computed in SQL.

Pure Plotly (no Reflex, no state) so that the dashboard state can derive a figure from the counts it
holds. The look follows the app's theme: indigo bars, slate text and grid, no chrome.
"""

from __future__ import annotations

import plotly.graph_objects as go

INDIGO = "#3e63dd"  # Radix indigo 9
INDIGO_LIGHT = "#aec0f5"  # this week: incomplete, drawn lighter
SLATE_TEXT = "#60646c"  # Radix slate 11
SLATE_GRID = "#e8e8ec"  # Radix slate 4
AMBER = "#ffa01c"


def new_leads_figure(weeks, baseline: float) -> go.Figure:
    """New leads per week as bars (this week lighter, it is not over), the baseline as a dashed line."""
    labels = [w.label.replace(" ", "<br>") for w in weeks]  # "9<br>Nov": fits a narrow card upright
    counts = [w.count for w in weeks]
    colors = [INDIGO_LIGHT if w.current else INDIGO for w in weeks]
    figure = go.Figure(
        go.Bar(
            x=labels, y=counts, marker_color=colors, text=counts, textposition="outside",
            cliponaxis=False, hovertemplate="Week of %{x}: %{y} new leads<extra></extra>",
        )
    )
    if baseline > 0:
        # Labelled in the card's header: an annotation here collides with the bars.
        figure.add_hline(y=baseline, line_dash="dash", line_color=AMBER, line_width=2)
    figure.update_layout(
        height=220,
        margin=dict(l=8, r=8, t=24, b=8),
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        font=dict(family="Inter, system-ui, sans-serif", size=12, color=SLATE_TEXT),
        showlegend=False,
        bargap=0.35,
        xaxis=dict(showgrid=False, fixedrange=True, tickfont=dict(size=11), tickangle=0),
        yaxis=dict(gridcolor=SLATE_GRID, zeroline=False, fixedrange=True, rangemode="tozero",
                   showticklabels=False),
    )
    return figure
