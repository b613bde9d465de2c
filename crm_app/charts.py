"""The one module that turns numbers into Plotly figures, so every chart in the app looks alike.

Same font as the Radix theme, slate text and grid lines, one colour per tier and per source
(the tier colours are those of the score badges), readable labels on the bars themselves, no
toolbar, no legend unless colours need explaining. Functions take plain numbers and labels and
return a `go.Figure`; pages show it with `rx.plotly(data=..., template=charts.TEMPLATE,
config=charts.CONFIG)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

# Radix colours (light, step 9 for marks, slate for text and lines), matching the app's theme.
FONT_FAMILY = (
    "-apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, 'Helvetica Neue', system-ui, sans-serif"
)
TEXT = "#1C2024"  # slate 12
MUTED = "#60646C"  # slate 11
GRID = "#E8E8EC"  # slate 4
AXIS = "#D9D9E0"  # slate 6
ACCENT = "#3E63DD"  # indigo 9
ACCENT_LIGHT = "#AEC0F5"  # indigo, lighter: a period that is not over yet
BASELINE = "#FFA01C"  # amber 9: an average to compare against

# Same hues as components/badges.py TIER_COLORS (tomato, amber, indigo).
TIER_COLORS = {"hot": "#E54D2E", "warm": "#FFC53D", "cold": "#3E63DD"}
TIER_LABELS = {"hot": "Hot", "warm": "Warm", "cold": "Cold"}
SOURCE_COLORS = {
    "referral": "#46A758",  # grass
    "linkedin": "#0090FF",  # blue
    "website": "#12A594",  # teal
    "webinar": "#6E56CF",  # violet
    "paid_search": "#F76B15",  # orange
    "events": "#D6409F",  # pink
    "cold_outreach": "#8B8D98",  # slate
}
FALLBACK_COLOR = "#8B8D98"

# Passed to rx.plotly: no mode bar, no plotly logo, resizes with its box.
CONFIG = {"displayModeBar": False, "displaylogo": False, "responsive": True}

_AXIS = dict(
    gridcolor=GRID,
    linecolor=AXIS,
    zeroline=False,
    tickfont=dict(size=12, color=MUTED),
    title=dict(font=dict(size=12, color=MUTED)),
    automargin=True,
)

TEMPLATE = go.layout.Template(
    layout=go.Layout(
        font=dict(family=FONT_FAMILY, size=13, color=TEXT),
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        colorway=[ACCENT, *SOURCE_COLORS.values()],
        xaxis=_AXIS,
        yaxis=_AXIS,
        hoverlabel=dict(bgcolor="white", bordercolor=AXIS, font=dict(family=FONT_FAMILY, size=12, color=TEXT)),
        legend=dict(orientation="h", x=0, y=1.02, xanchor="left", yanchor="bottom",
                    font=dict(size=12, color=MUTED), bgcolor="rgba(0,0,0,0)"),
        bargap=0.35,
        margin=dict(l=8, r=16, t=8, b=8),
        separators=".,",
    )
)


def source_color(source: str) -> str:
    return SOURCE_COLORS.get(source, FALLBACK_COLOR)


def _figure(height: int, **layout) -> go.Figure:
    fig = go.Figure()
    # The template travels with the figure so it looks the same wherever it is shown.
    fig.update_layout(template=TEMPLATE, height=height, autosize=True, **layout)
    return fig


def ranked_bars(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    colors: Sequence[str],
    text: Sequence[str],
    hover: Sequence[str] | None = None,
    percent: bool = False,
    money: bool = False,
) -> go.Figure:
    """Horizontal bars, the first item on top (callers pass them best first), values written at
    the end of each bar. `percent` takes values as fractions (0.67) and draws a 0-100% axis."""
    fig = _figure(max(140, 44 * len(labels) + 40))
    fig.add_bar(
        y=list(labels),
        x=list(values),
        orientation="h",
        marker=dict(color=list(colors), line=dict(width=0)),
        text=list(text),
        textposition="outside",
        cliponaxis=False,
        textfont=dict(size=12, color=TEXT),
        hovertext=list(hover) if hover is not None else list(text),
        hoverinfo="text",
    )
    top = max([v for v in values if v is not None] or [0])
    fig.update_yaxes(autorange="reversed", showgrid=False, ticks="", ticklabelstandoff=6)
    if percent:
        # Room on the right for the labels written after the longest bar.
        fig.update_xaxes(range=[0, max(1.0, top) * 1.35], tickformat=".0%", tickvals=[0, 0.25, 0.5, 0.75, 1])
    else:
        fig.update_xaxes(range=[0, (top or 1) * 1.3], tickprefix="$" if money else "", tickformat="~s")
    return fig


def stacked_tier_bars(
    x: Sequence[str], counts: dict[str, Sequence[int]], *, x_title: str, y_title: str
) -> go.Figure:
    """Bars stacked Hot / Warm / Cold per category (e.g. per week), with a legend."""
    fig = _figure(300, barmode="stack", bargap=0.25)
    for tier in ("hot", "warm", "cold"):
        fig.add_bar(
            x=list(x),
            y=list(counts.get(tier, [])),
            name=TIER_LABELS[tier],
            marker=dict(color=TIER_COLORS[tier], line=dict(width=0)),
            hovertemplate=f"%{{x|%b %-d, %Y}}<br>{TIER_LABELS[tier]}: %{{y}}<extra></extra>",
        )
    fig.update_xaxes(title_text=x_title, type="date", showgrid=False, tickformat="%b %-d")
    fig.update_yaxes(title_text=y_title, rangemode="tozero", tickformat=",d")
    fig.update_layout(margin=dict(l=8, r=16, t=36, b=8), legend_traceorder="normal")
    return fig


def tier_bars(
    tiers: Sequence[str],
    values: Sequence[float],
    *,
    text: Sequence[str],
    labels: Sequence[str] | None = None,
    hover: Sequence[str] | None = None,
) -> go.Figure:
    """One vertical bar per tier in its colour, as fractions on a 0-100% axis, short values on top
    (`labels` under the bars, e.g. "Hot<br>18 closed"; the tier names by default)."""
    fig = _figure(260, bargap=0.45)
    fig.add_bar(
        x=list(labels) if labels is not None else [TIER_LABELS.get(t, t) for t in tiers],
        y=list(values),
        marker=dict(color=[TIER_COLORS.get(t, FALLBACK_COLOR) for t in tiers], line=dict(width=0)),
        text=list(text),
        textposition="outside",
        cliponaxis=False,
        textfont=dict(size=13, color=TEXT),
        hovertext=list(hover) if hover is not None else list(text),
        hoverinfo="text",
    )
    fig.update_yaxes(range=[0, 1.15], tickformat=".0%", tickvals=[0, 0.25, 0.5, 0.75, 1])
    fig.update_xaxes(showgrid=False, ticks="")
    return fig


def funnel(labels: Sequence[str], counts: Sequence[int], *, text: Sequence[str]) -> go.Figure:
    """A stage funnel: one band per stage, widest first, labelled with the count and share."""
    fig = _figure(max(220, 44 * len(labels) + 20))
    fig.add_trace(
        go.Funnel(
            y=list(labels),
            x=list(counts),
            text=list(text),
            textinfo="text",
            # Inside the band when it fits, beside it when the band is too narrow to read.
            textposition="auto",
            insidetextfont=dict(size=12, color="white"),
            outsidetextfont=dict(size=12, color=TEXT),
            cliponaxis=False,
            marker=dict(color=ACCENT, line=dict(width=0)),
            connector=dict(fillcolor="#E0E4FF", line=dict(width=0)),  # indigo 4
            hoverinfo="text",
            hovertext=[f"{label}: {t}" for label, t in zip(labels, text)],
        )
    )
    fig.update_yaxes(showgrid=False, ticks="")
    return fig


def new_leads_per_week(weeks, baseline: float) -> go.Figure:
    """New leads per week as bars (this week lighter: it is not over), the baseline as a dashed line.

    `weeks` are rows with `label`, `count` and `current`; the baseline is labelled by the card around
    the chart, since an annotation here collides with the bars.
    """
    fig = _figure(
        220,
        showlegend=False,
        margin=dict(l=8, r=8, t=24, b=8),
        xaxis=dict(showgrid=False, fixedrange=True, tickfont=dict(size=11), tickangle=0),
        yaxis=dict(fixedrange=True, rangemode="tozero", showticklabels=False),
    )
    fig.add_bar(
        x=[w.label.replace(" ", "<br>") for w in weeks],  # "9<br>Nov": fits a narrow card upright
        y=[w.count for w in weeks],
        marker_color=[ACCENT_LIGHT if w.current else ACCENT for w in weeks],
        text=[w.count for w in weeks],
        textposition="outside",
        cliponaxis=False,
        hovertemplate="Week of %{x}: %{y} new leads<extra></extra>",
    )
    if baseline > 0:
        fig.add_hline(y=baseline, line_dash="dash", line_color=BASELINE, line_width=2)
    return fig


RULES_COLOR = "#8B8D98"  # slate 9: the rules, next to the model in indigo


def calibration(
    model: Sequence[tuple[float, float, int]], rules: Sequence[tuple[float, float, int]]
) -> go.Figure:
    """Predicted against observed win rate per group of leads (predicted, observed, leads), model and
    rules, with the diagonal a perfectly calibrated score would follow."""
    fig = _figure(320, margin=dict(l=8, r=16, t=36, b=8))
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="Perfectly calibrated",
                    line=dict(color=AXIS, dash="dash", width=2), hoverinfo="skip")
    for name, points, color in (("Rules", rules, RULES_COLOR), ("Model", model, ACCENT)):
        fig.add_scatter(
            x=[p for p, _, _ in points],
            y=[o for _, o, _ in points],
            mode="lines+markers",
            name=name,
            line=dict(color=color, width=2),
            marker=dict(size=8, color=color),
            customdata=[n for _, _, n in points],
            hovertemplate=f"{name}: predicted %{{x:.0%}}, won %{{y:.0%}} of %{{customdata}} leads<extra></extra>",
        )
    fig.update_xaxes(title_text="Predicted win rate", range=[0, 1], tickformat=".0%", tickvals=[0, 0.25, 0.5, 0.75, 1])
    fig.update_yaxes(title_text="Observed win rate", range=[0, 1.02], tickformat=".0%", tickvals=[0, 0.25, 0.5, 0.75, 1])
    return fig


def cumulative_gains(shares: Sequence[float], model: Sequence[float], rules: Sequence[float]) -> go.Figure:
    """Share of all wins found by working the best-scored leads first, model and rules, against the
    diagonal of a list in random order."""
    fig = _figure(320, margin=dict(l=8, r=16, t=36, b=8))
    xs = [0.0, *shares]
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="Random order",
                    line=dict(color=AXIS, dash="dash", width=2), hoverinfo="skip")
    for name, values, color in (("Rules", rules, RULES_COLOR), ("Model", model, ACCENT)):
        fig.add_scatter(
            x=xs,
            y=[0.0, *values],
            mode="lines+markers",
            name=name,
            line=dict(color=color, width=2),
            marker=dict(size=7, color=color),
            hovertemplate=f"{name}: top %{{x:.0%}} of leads hold %{{y:.0%}} of the wins<extra></extra>",
        )
    fig.update_xaxes(title_text="Leads worked, best score first", range=[0, 1], tickformat=".0%",
                     tickvals=[0, 0.2, 0.4, 0.6, 0.8, 1])
    fig.update_yaxes(title_text="Share of wins found", range=[0, 1.02], tickformat=".0%",
                     tickvals=[0, 0.25, 0.5, 0.75, 1])
    return fig


def share_bars(labels: Sequence[str], shares: Sequence[float]) -> go.Figure:
    """Shares of a whole (fractions) as ranked horizontal bars, the axis fitted to the largest share
    rather than to 100%, so small shares stay readable."""
    fig = ranked_bars(labels, shares, colors=[ACCENT] * len(labels), text=[f"{s:.0%}" for s in shares])
    top = max([*shares, 0.01])
    fig.update_xaxes(range=[0, top * 1.25], tickformat=".0%", nticks=5)
    return fig


WEIGHTED_COLOR = "#F76B15"  # orange 9: the stage-weighted pipeline


def forecast_backtest(
    months: Sequence[str],
    actual: Sequence[float],
    forecast: Sequence[tuple[float, float, float]],
    weighted: Sequence[float],
    run_rate: Sequence[float],
) -> go.Figure:
    """Won revenue per month against what each method predicted on the month's first day: the actual
    as bars, this product's forecast with its 80% interval as whiskers, the two simple methods as lines."""
    fig = _figure(300, showlegend=True, margin=dict(l=8, r=16, t=36, b=8),
                  yaxis=dict(tickprefix="$", tickformat="~s", rangemode="tozero"))
    fig.add_bar(x=list(months), y=list(actual), name="Won", marker_color="#C1C8CD",
                hovertemplate="%{x}: $%{y:,.0f} won<extra></extra>")
    expected = [f[0] for f in forecast]
    fig.add_scatter(
        x=list(months), y=expected, name="This forecast (80% interval)", mode="markers+lines",
        line=dict(color=ACCENT, width=2), marker=dict(size=8),
        error_y=dict(type="data", symmetric=False, array=[f[2] - f[0] for f in forecast],
                     arrayminus=[f[0] - f[1] for f in forecast], color=ACCENT, thickness=1.5, width=4),
        hovertemplate="%{x}: forecast $%{y:,.0f}<extra></extra>",
    )
    fig.add_scatter(x=list(months), y=list(weighted), name="Stage-weighted pipeline", mode="lines+markers",
                    line=dict(color=WEIGHTED_COLOR, width=2, dash="dot"), marker=dict(size=6),
                    hovertemplate="%{x}: stage-weighted $%{y:,.0f}<extra></extra>")
    fig.add_scatter(x=list(months), y=list(run_rate), name="Run-rate", mode="lines+markers",
                    line=dict(color=RULES_COLOR, width=2, dash="dash"), marker=dict(size=6),
                    hovertemplate="%{x}: run-rate $%{y:,.0f}<extra></extra>")
    return fig
