"""Analytics: which channels bring buyers, does the score predict wins, where do deals stall."""

from __future__ import annotations

import reflex as rx

from crm_app import charts
from crm_app.components.badges import tier_color
from crm_app.components.layout import page_frame
from crm_app.components.loading import loading_rows
from crm_app.scoring.segments import SegmentInsight
from crm_app.services.analytics import PERIODS, FunnelRow, SourceRoiRow, TierCount
from crm_app.state.base import figure_var
from crm_app.state.analytics import AnalyticsState

MUTED = rx.color("gray", 10)


def _chart(figure, class_name: str) -> rx.Component:
    return rx.plotly(
        data=figure_var(figure),
        template=charts.TEMPLATE,
        config=charts.CONFIG,
        use_resize_handler=True,
        width="100%",
        class_name=class_name,
    )


def _section(title: str, caption, *body: rx.Component, class_name: str) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading(title, size="4", weight="bold"),
            rx.text(caption, size="2", color=MUTED),
            spacing="1",
            padding_bottom="0.75em",
        ),
        *body,
        width="100%",
        size="3",
        class_name=class_name,
    )


def _panel(title: str, caption: str, *body: rx.Component) -> rx.Component:
    """A titled chart inside a section."""
    return rx.vstack(
        rx.text(title, size="2", weight="bold"),
        rx.text(caption, size="1", color=MUTED),
        *body,
        spacing="1",
        width="100%",
        min_width="0",
    )


def _empty(icon: str, message: str, hint: str = "") -> rx.Component:
    return rx.center(
        rx.vstack(
            rx.icon(icon, size=28, color=rx.color("gray", 9)),
            rx.text(message, color=rx.color("gray", 11), weight="medium", size="2"),
            rx.text(hint, color=MUTED, size="1") if hint else rx.fragment(),
            align="center",
            spacing="1",
        ),
        padding="2.5em",
        width="100%",
        border=f"1px dashed {rx.color('gray', 6)}",
        border_radius="12px",
    )


def _toolbar() -> rx.Component:
    return rx.hstack(
        rx.segmented_control.root(
            *[rx.segmented_control.item(label, value=key) for key, (label, _) in PERIODS.items()],
            value=AnalyticsState.period,
            on_change=AnalyticsState.set_period,
            class_name="period-control",
        ),
        rx.select.root(
            rx.select.trigger(class_name="owner-filter", min_width="180px"),
            rx.select.content(
                rx.foreach(
                    AnalyticsState.owner_options,
                    lambda option: rx.select.item(option[1], value=option[0]),
                )
            ),
            value=AnalyticsState.owner,
            on_change=AnalyticsState.set_owner,
        ),
        rx.spacer(),
        rx.cond(AnalyticsState.loading, rx.spinner(size="2")),
        rx.text(AnalyticsState.scope_label, size="2", color=MUTED, class_name="scope-label"),
        width="100%",
        align="center",
        spacing="3",
        padding_bottom="1em",
    )


def _num(value, **props) -> rx.Component:
    return rx.table.cell(value, text_align="right", font_variant_numeric="tabular-nums", **props)


def _source_row(row: SourceRoiRow, index) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(index + 1, color=MUTED, size="1")),
        rx.table.cell(
            rx.hstack(
                rx.box(width="10px", height="10px", border_radius="3px",
                       background=rx.match(row.source, *charts.SOURCE_COLORS.items(), charts.FALLBACK_COLOR)),
                rx.text(row.label, weight="medium"),
                rx.cond(row.detail_of != "", rx.text(row.detail_of, size="1", color=MUTED)),
                align="center",
                white_space="nowrap",
                spacing="2",
            )
        ),
        _num(row.leads),
        _num(row.won),
        _num(row.lost),
        _num(rx.text(row.conversion_label, weight="bold"), class_name="conversion"),
        _num(row.won_revenue_label, class_name="won-revenue"),
        _num(row.average_deal_label),
        _num(row.average_score_label),
        _num(row.average_days_label, white_space="nowrap"),
        _num(row.cost_label),
        _num(row.cost_per_won_label),
        _num(
            rx.text(
                row.roi_label,
                color=rx.cond(row.has_cost, rx.cond(row.roi >= 0, rx.color("grass", 11), rx.color("tomato", 11)),
                              MUTED),
                weight="medium",
            ),
            class_name="roi",
        ),
        class_name="source-row",
        data_source=row.source,
        vertical_align="middle",
    )


def _header(label: str, right: bool = True, **props) -> rx.Component:
    return rx.table.column_header_cell(label, text_align="right" if right else "left", white_space="nowrap",
                                       **props)


def _source_roi() -> rx.Component:
    return _section(
        "Source ROI",
        "Which channels bring buyers. Ranked by conversion rate (won ÷ closed), then won revenue per "
        "lead: quality, not volume.",
        rx.grid(
            _panel("Conversion rate", "Won ÷ closed deals, per source",
                   _chart(AnalyticsState.source_conversion_figure, "source-conversion-chart")),
            _panel("Won revenue per lead", "What each lead from the source has brought in",
                   _chart(AnalyticsState.source_value_figure, "source-value-chart")),
            columns="2",
            spacing="5",
            width="100%",
            padding_bottom="1em",
        ),
        rx.box(
            rx.table.root(
                rx.table.header(
                    rx.table.row(
                        _header("#", right=False, width="32px"),
                        _header("Source", right=False),
                        _header("Leads"),
                        _header("Won"),
                        _header("Lost"),
                        _header("Conversion"),
                        _header("Won revenue"),
                        _header("Avg deal"),
                        _header("Avg score"),
                        _header("Days to close"),
                        _header("Cost"),
                        _header("Cost / won"),
                        _header("ROI"),
                    )
                ),
                rx.table.body(rx.foreach(AnalyticsState.sources, _source_row)),
                variant="ghost",
                size="1",
                width="100%",
            ),
            overflow_x="auto",
            width="100%",
        ),
        rx.text(
            "Days to close: from created to won, averaged over won deals. Cost: the spend entered for a "
            "source, shared equally by every lead it has brought, so this view carries only its leads' "
            "share. ROI = (won revenue − cost) ÷ cost; “—” where no cost is entered or nothing has closed.",
            size="1",
            color=MUTED,
            padding_top="0.75em",
        ),
        class_name="source-roi",
    )


def _tier_card(tier: TierCount) -> rx.Component:
    return rx.card(
        rx.hstack(
            rx.vstack(
                rx.badge(tier.label, color_scheme=tier_color(tier.tier), variant="soft", radius="full"),
                rx.text(tier.advice, size="1", color=MUTED),
                spacing="1",
            ),
            rx.spacer(),
            rx.vstack(
                rx.text(tier.count, size="7", weight="bold", font_variant_numeric="tabular-nums",
                        class_name="tier-count"),
                rx.text(tier.share_label, size="1", color=MUTED),
                align="end",
                spacing="0",
            ),
            align="center",
            width="100%",
        ),
        class_name="tier-card",
        data_tier=tier.tier,
        border_left=f"4px solid {rx.color('gray', 6)}",
        style={"borderLeftColor": rx.match(tier.tier, *charts.TIER_COLORS.items(), charts.FALLBACK_COLOR)},
    )


def _priority() -> rx.Component:
    return _section(
        "Priority distribution",
        "Open leads by tier now, when the leads came in, and whether the score predicts wins.",
        rx.grid(rx.foreach(AnalyticsState.tiers, _tier_card), columns="3", spacing="4", width="100%",
                padding_bottom="1.25em"),
        rx.grid(
            _panel(
                "Leads by the week they were created, coloured by today's tier",
                "Past tiers are not stored: this shows how the leads that arrived each week score now.",
                _chart(AnalyticsState.weekly_figure, "weekly-tier-chart"),
            ),
            _panel(
                "Win rate by score at close",
                "Closed deals, by the tier their score gave on the day they closed.",
                rx.cond(
                    AnalyticsState.closed_with_score > 0,
                    _chart(AnalyticsState.tier_conversion_figure, "tier-conversion-chart"),
                    _empty("scale", "No closed deals with a recorded score yet",
                           "Scores are kept from the moment a deal is won or lost."),
                ),
            ),
            columns="3fr 2fr",
            spacing="5",
            width="100%",
        ),
        class_name="priority",
    )


def _funnel_row(row: FunnelRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(row.label, weight="medium")),
        _num(row.reached_label, class_name="reached"),
        _num(row.reached_share_label),
        _num(row.next_conversion_label, class_name="next-conversion"),
        _num(row.average_days_label, white_space="nowrap", class_name="average-days"),
        class_name="funnel-row",
        data_stage=row.stage,
        vertical_align="middle",
    )


def _funnel() -> rx.Component:
    return _section(
        "Funnel",
        "How far leads get: a lead counts for every stage up to the furthest it reached.",
        rx.grid(
            _chart(AnalyticsState.funnel_figure, "funnel-chart"),
            rx.vstack(
                rx.table.root(
                    rx.table.header(
                        rx.table.row(
                            _header("Stage", right=False),
                            _header("Reached"),
                            _header("Of all leads"),
                            _header("On to next"),
                            _header("Avg time in stage"),
                        )
                    ),
                    rx.table.body(rx.foreach(AnalyticsState.funnel_rows, _funnel_row)),
                    variant="ghost",
                    size="1",
                    width="100%",
                ),
                rx.text("Time in stage: from entering a stage to leaving it, over deals that have moved on.",
                        size="1", color=MUTED),
                width="100%",
            ),
            columns="1fr 1fr",
            spacing="5",
            width="100%",
            align="start",
        ),
        class_name="funnel",
    )


def _lost_table(table, first: str, class_name: str) -> rx.Component:
    return rx.table.root(
        rx.table.header(rx.table.row(
            _header(first, right=False), _header("Lost"),
            rx.foreach(table.columns, lambda label: _header(label)),
        )),
        rx.table.body(rx.foreach(table.rows, lambda row: rx.table.row(
            rx.table.cell(rx.text(row.reason, weight="medium"), class_name="lost-reason-name"),
            _num(rx.text(row.total, weight="bold"), class_name="lost-total"),
            rx.foreach(row.counts, lambda n: _num(rx.cond(n > 0, n.to_string(), "·"))),
            class_name="lost-reason-row",
            vertical_align="middle",
        ))),
        variant="ghost",
        size="1",
        width="100%",
        class_name=class_name,
    )


def _lost_reasons() -> rx.Component:
    return _section(
        "Why deals are lost",
        "Lost deals of the period by the reason given when they were lost, per source and per the stage they "
        "were lost from. The list of reasons is in Settings.",
        rx.cond(
            AnalyticsState.has_lost_deals,
            rx.grid(
                rx.box(rx.text("By source", size="2", weight="bold"), _lost_table(AnalyticsState.lost_by_source,
                                                                               "Reason", "lost-by-source"),
                       overflow_x="auto"),
                rx.box(rx.text("By stage lost from", size="2", weight="bold"),
                       _lost_table(AnalyticsState.lost_by_stage, "Reason", "lost-by-stage"), overflow_x="auto"),
                columns="1fr 1fr",
                spacing="5",
                width="100%",
                align="start",
            ),
            rx.text("No deal was lost in this period.", size="2", color=MUTED),
        ),
        class_name="lost-reasons",
    )


def _segment_row(row: SegmentInsight, index) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(index + 1, color=MUTED, size="1")),
        rx.table.cell(rx.text(row.sentence, weight="medium"), class_name="segment-sentence"),
        _num(row.support_label, white_space="nowrap"),
        _num(rx.text(row.rate_label, weight="bold")),
        _num(rx.text(row.lift_label, weight="bold", color=rx.color("grass", 11)), class_name="segment-lift"),
        _num(row.interval_label, white_space="nowrap", class_name="segment-interval"),
        class_name="segment-row",
        vertical_align="middle",
    )


def _segments() -> rx.Component:
    return _section(
        "Strongest segments",
        rx.text("Kinds of leads that closed as won far more often than the average (",
                AnalyticsState.segment_average, "), from this period's closed history."),
        rx.cond(
            AnalyticsState.segments.length() > 0,
            rx.box(
                rx.table.root(
                    rx.table.header(
                        rx.table.row(
                            _header("#", right=False, width="32px"),
                            _header("Segment", right=False),
                            _header("Support"),
                            _header("Win rate"),
                            _header("Lift"),
                            _header("95% interval"),
                        )
                    ),
                    rx.table.body(rx.foreach(AnalyticsState.segments, _segment_row)),
                    variant="ghost",
                    size="1",
                    width="100%",
                ),
                overflow_x="auto",
                width="100%",
            ),
            _empty("search", "No segment stands out yet.",
                   "A segment needs enough closed leads and a win rate clearly above the average."),
        ),
        rx.text(
            "Lift: the segment's win rate ÷ the average. A segment is listed only with at least ",
            AnalyticsState.segment_min_support,
            " closed leads, a 95% Wilson interval wholly above the average and a lift of at least 1.25 (held "
            "to its source's own rate instead, for a source with a trait); strongest lift first. Traits: "
            "company size, custom fields (industry, country), the plays reps used, content read and "
            "interactions.",
            size="1",
            color=MUTED,
            padding_top="0.75em",
        ),
        class_name="segments",
    )


def analytics_page() -> rx.Component:
    return page_frame(
        "Analytics",
        "Which channels bring buyers, whether the score predicts wins, and where deals stall.",
        _toolbar(),
        rx.cond(
            AnalyticsState.loaded,
            rx.cond(
                AnalyticsState.total_leads > 0,
                rx.vstack(_source_roi(), _segments(), _priority(), _funnel(), _lost_reasons(), spacing="5",
                          width="100%"),
                _empty("chart-no-axes-column", "No leads were created in this period for this owner.",
                       "Try a longer period, or the whole team."),
            ),
            loading_rows(4, row_height="200px"),
        ),
    )
