"""Forecast: won revenue this month and the next ones with an 80% interval, the deals that carry it,
the target and the gap; for managers, the targets and the backtest that says how far to trust it."""

from __future__ import annotations

import reflex as rx

from crm_app import charts
from crm_app.components.layout import page_frame
from crm_app.services.forecast import BacktestRow, DealRow, TargetRow, WindowRow
from crm_app.state.base import figure_var
from crm_app.state.forecast import ForecastState, MethodRow

MUTED = rx.color("gray", 10)


def _num(value, **props) -> rx.Component:
    return rx.table.cell(value, text_align="right", font_variant_numeric="tabular-nums", **props)


def _header(label: str, right: bool = True, **props) -> rx.Component:
    return rx.table.column_header_cell(label, text_align="right" if right else "left", **props)


def _card(title: str, caption, *body: rx.Component, class_name: str) -> rx.Component:
    return rx.card(
        rx.vstack(rx.heading(title, size="4"), rx.text(caption, size="2", color=MUTED), spacing="1",
                  padding_bottom="0.75em"),
        *body,
        width="100%",
        size="3",
        class_name=class_name,
    )


def _figure(label: str, value, caption=None, class_name: str = "", color=None) -> rx.Component:
    return rx.vstack(
        rx.text(label, size="2", color=MUTED, weight="medium"),
        rx.text(value, size="6", weight="bold", class_name=class_name, color=color),
        rx.text(caption, size="1", color=MUTED) if caption is not None else rx.fragment(),
        spacing="1",
        min_width="150px",
    )


def _summary() -> rx.Component:
    return rx.card(
        rx.hstack(
            _figure("Won so far this month", ForecastState.won_label, class_name="won-so-far"),
            _figure("Expected from here on", ForecastState.expected_label, class_name="expected-rest"),
            _figure("This month, forecast", ForecastState.total_label,
                    rx.text("80% interval ",
                            rx.text.strong(ForecastState.interval_label, class_name="interval"),
                            # the simulation's until the past months' errors widen it (ForecastState.complete)
                            rx.cond(ForecastState.calibrating,
                                    rx.el.span(" · calibrating against past months…",
                                               class_name="calibrating"))),
                    class_name="month-total"),
            rx.cond(
                ForecastState.has_target,
                rx.hstack(
                    _figure("Target", ForecastState.target_label, class_name="target"),
                    _figure("Gap", ForecastState.gap_label, class_name="gap",
                            color=rx.cond(ForecastState.below_target, rx.color("tomato", 11), rx.color("grass", 11))),
                    spacing="6",
                ),
                _figure("Target", "Not set", class_name="target"),
            ),
            spacing="6",
            wrap="wrap",
        ),
        rx.cond(
            ForecastState.freshness_note != "",
            rx.text(ForecastState.freshness_note, size="1", color=MUTED, padding_top="0.5em",
                    class_name="freshness-note"),
        ),
        rx.cond(
            ForecastState.gap_message != "",
            rx.callout(ForecastState.gap_message, icon=rx.cond(ForecastState.below_target, "triangle-alert", "check"),
                       color_scheme=rx.cond(ForecastState.below_target, "amber", "grass"), size="1",
                       margin_top="1em", class_name="gap-message"),
        ),
        width="100%",
        size="3",
        class_name="forecast-summary",
    )


def _window_row(row: WindowRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(row.label, weight="medium")),
        _num(row.won_label),
        _num(row.pipeline_label),
        _num(row.fresh_label),
        _num(rx.text(row.total_label, weight="bold"), class_name="window-total"),
        _num(row.interval_label, white_space="nowrap", class_name="window-interval"),
        class_name="window-row",
        data_label=row.label,
    )


def _windows() -> rx.Component:
    return _card(
        "Won revenue by month",
        "Already won, expected from the open deals, expected from deals not in the pipeline yet, and the total "
        "with its 80% interval (2,000 simulated futures: each deal won in one month or in none).",
        rx.table.root(
            rx.table.header(rx.table.row(
                _header("Month", right=False), _header("Won so far"), _header("Open deals"),
                _header("New deals"), _header("Forecast"), _header("80% interval"))),
            rx.table.body(rx.foreach(ForecastState.windows, _window_row)),
            variant="ghost", size="2", width="100%",
        ),
        rx.text(ForecastState.probability_note, size="1", color=MUTED, padding_top="0.75em"),
        class_name="forecast-windows",
    )


def _deal_row(row: DealRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.link(row.name, href=f"/leads/{row.lead_id}", weight="medium")),
        rx.table.cell(row.stage),
        _num(row.value_label),
        _num(row.probability_label, white_space="nowrap"),
        _num(rx.text(row.expected_label, weight="bold")),
        _num(row.share_label),
        class_name="deal-row",
    )


def _deals() -> rx.Component:
    return _card(
        "Deals that carry this month",
        ForecastState.top_share_label,
        rx.cond(
            ForecastState.deals.length() > 0,
            rx.table.root(
                rx.table.header(rx.table.row(
                    _header("Deal", right=False), _header("Stage", right=False), _header("Value"),
                    _header("P(win)"), _header("Expected this month"), _header("Share"))),
                rx.table.body(rx.foreach(ForecastState.deals, _deal_row)),
                variant="ghost", size="2", width="100%",
            ),
            rx.text("No open deal is expected to close this month.", color=MUTED, size="2"),
        ),
        class_name="forecast-deals",
    )


def _target_row(row: TargetRow) -> rx.Component:
    key = row.key
    error = rx.cond(ForecastState.target_error_for == key, ForecastState.target_error, "")
    return rx.table.row(
        rx.table.cell(rx.text(row.name, weight="medium"), vertical_align="middle"),
        rx.table.cell(rx.vstack(
            rx.hstack(
                rx.input(rx.input.slot("$"), value=ForecastState.target_drafts.get(key, ""),
                         on_change=lambda v: ForecastState.set_target_draft(key, v), placeholder="Not set",
                         width="160px", class_name="target-input"),
                rx.text("a month", size="2", color=MUTED),
                rx.button("Save", size="2", variant="soft", on_click=ForecastState.save_target(key),
                          class_name="target-save"),
                align="center", spacing="2",
            ),
            rx.cond(error != "", rx.text(error, size="1", color=rx.color("tomato", 11), class_name="target-error")),
            spacing="1",
        )),
        class_name="target-row",
        data_user=key,
    )


def _targets() -> rx.Component:
    return _card(
        "Monthly targets",
        "Won revenue each rep (and the team) should bring in a month. Blank removes a target.",
        rx.table.root(rx.table.body(rx.foreach(ForecastState.targets, _target_row)), variant="ghost", size="1"),
        class_name="forecast-targets",
    )


def _method_row(row: MethodRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(row.label, weight="medium")),
        _num(row.mape_label, class_name="mape"),
        _num(row.coverage_label, class_name="coverage"),
        class_name="method-row",
        data_method=row.method,
    )


def _backtest_row(row: BacktestRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row.month),
        _num(rx.text(row.actual_label, weight="bold")),
        _num(row.forecast_label), _num(row.forecast_interval, white_space="nowrap"),
        _num(row.weighted_label), _num(row.run_rate_label),
        class_name="backtest-row",
    )


def _backtest() -> rx.Component:
    return _card(
        "Backtest: how this forecast did",
        "Each past month forecast again from what was known on its first day (no later deal, stage change or "
        "outcome), against what was won. Error: mean absolute percentage error; coverage: the share of months "
        "inside the 80% interval.",
        rx.cond(
            ForecastState.backtest_loaded,
            rx.vstack(
                rx.table.root(
                    rx.table.header(rx.table.row(_header("Method", right=False), _header("Error (MAPE)"),
                                                 _header("80% interval coverage"))),
                    rx.table.body(rx.foreach(ForecastState.method_rows, _method_row)),
                    variant="ghost", size="2", width="100%", class_name="backtest-methods",
                ),
                rx.plotly(data=figure_var(ForecastState.backtest_figure), template=charts.TEMPLATE, config=charts.CONFIG,
                          use_resize_handler=True, width="100%", class_name="backtest-chart"),
                rx.box(
                    rx.table.root(
                        rx.table.header(rx.table.row(
                            _header("Month", right=False), _header("Won"), _header("Forecast"),
                            _header("80% interval"), _header("Stage-weighted"), _header("Run-rate"))),
                        rx.table.body(rx.foreach(ForecastState.backtest_rows, _backtest_row)),
                        variant="ghost", size="1", width="100%",
                    ),
                    overflow_x="auto", width="100%",
                ),
                rx.cond(ForecastState.backtest_note != "",
                        rx.text(ForecastState.backtest_note, size="1", color=MUTED,
                                class_name="backtest-note")),
                width="100%",
                spacing="3",
                data_ready="true",
                class_name="backtest-ready",
            ),
            rx.hstack(rx.spinner(size="2"), rx.text("Rebuilding past months…", size="2", color=MUTED)),
        ),
        class_name="forecast-backtest",
    )


def _toolbar() -> rx.Component:
    return rx.hstack(
        rx.cond(
            ForecastState.viewer_is_manager,
            rx.select.root(
                rx.select.trigger(class_name="owner-filter", min_width="180px"),
                rx.select.content(rx.foreach(ForecastState.owner_options,
                                             lambda o: rx.select.item(o[1], value=o[0]))),
                value=ForecastState.owner,
                on_change=ForecastState.set_owner,
            ),
        ),
        rx.text(ForecastState.scope_label, " · ", ForecastState.open_deals, " open deals", size="2",
                color=MUTED, class_name="forecast-scope"),
        align="center",
        spacing="3",
        padding_bottom="1em",
    )


def forecast_page() -> rx.Component:
    return page_frame(
        "Forecast",
        "Won revenue this month and the next, with an honest interval, and what it takes to hit the target.",
        rx.cond(
            ForecastState.loaded,
            rx.vstack(
                _toolbar(),
                _summary(),
                _windows(),
                _deals(),
                rx.cond(ForecastState.viewer_is_manager, rx.vstack(_targets(), _backtest(), spacing="5",
                                                                   width="100%")),
                spacing="5",
                width="100%",
                class_name="forecast-ready",
                data_viewer=ForecastState.viewer_id,
            ),
            rx.spinner(size="3"),
        ),
    )
