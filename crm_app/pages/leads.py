"""The leads table: search, filter, sort, page in SQL; select and reassign in bulk."""

from __future__ import annotations

import reflex as rx

from crm_app.components.badges import score_badge, signed_points, tier_pill
from crm_app.components.controls import choice
from crm_app.components.layout import page_frame
from crm_app.db.queries import LeadListRow
from crm_app.domain import Source, Stage
from crm_app.state.leads import ALL
from crm_app.state.leads import LeadsState as S

SORT_OPTIONS = [("score", "Best score"), ("value", "Highest value"), ("newest", "Newest"),
                ("stage_age", "Longest in stage"), ("name", "Name A-Z")]


def _reasons(lead: LeadListRow) -> rx.Component:
    return rx.flex(
        rx.foreach(
            lead.reasons,
            lambda reason: rx.text(
                rx.text.strong(signed_points(reason.points), " "),
                reason.text,
                size="1",
                color=rx.color("gray", 11),
                class_name="score-reason",
                white_space="nowrap",
                padding="0.1em 0.5em",
                border_radius="6px",
                background=rx.color("gray", 3),
            ),
        ),
        wrap="wrap",
        gap="0.35em",
    )


def _row(lead: LeadListRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.checkbox(checked=S.selected.contains(lead.id), on_change=lambda _: S.toggle_selected(lead.id),
                                  aria_label="Select " + lead.name)),
        rx.table.cell(score_badge(lead.score, lead.tier)),
        rx.table.cell(
            rx.vstack(
                rx.link(lead.name, href="/leads/" + lead.id.to_string(), weight="medium",
                        class_name="lead-name", color=rx.color("gray", 12)),
                rx.text(lead.company, size="1", color=rx.color("gray", 10)),
                spacing="0",
            ),
            min_width="170px",
        ),
        rx.table.cell(tier_pill(lead.tier)),
        rx.table.cell(_reasons(lead), max_width="560px"),
        rx.table.cell(rx.text(lead.stage, size="2")),
        rx.table.cell(rx.text(lead.source, size="2")),
        rx.table.cell(rx.text(lead.owner, size="2", class_name="lead-owner"), min_width="110px"),
        rx.table.cell(rx.text(lead.value_label, size="2", font_variant_numeric="tabular-nums"), text_align="right"),
        class_name="lead-row",
        data_lead_id=lead.id,
        key=lead.id,
        vertical_align="middle",
    )


def _toolbar() -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.input(
                rx.input.slot(rx.icon("search", size=16)),
                placeholder="Search name, company or email",
                value=S.search,
                on_change=S.set_search.debounce(300),
                width="300px",
                max_length=200,
            ),
            rx.segmented_control.root(
                rx.segmented_control.item("My leads", value="mine"),
                rx.segmented_control.item("Unassigned", value="unassigned"),
                rx.segmented_control.item("Whole team", value="team"),
                value=S.scope,
                on_change=S.set_scope,
            ),
            rx.spacer(),
            rx.text("Sort", size="2", color=rx.color("gray", 10)),
            choice(S.sort, S.set_sort, SORT_OPTIONS, "Sort by", width="170px"),
            rx.button(rx.icon("download", size=16), "Export CSV", variant="soft", on_click=S.export_csv,
                      disabled=S.total == 0, class_name="export-csv"),
            width="100%",
            align="center",
            spacing="3",
        ),
        rx.hstack(
            choice(S.tier, S.set_tier, [(ALL, "All tiers"), ("hot", "Hot"), ("warm", "Warm"), ("cold", "Cold")],
                    "Tier", width="130px"),
            choice(S.stage, S.set_stage, [(ALL, "All stages"), *[(s.value, s.label) for s in Stage]], "Stage"),
            choice(S.source, S.set_source, [(ALL, "All sources"), *[(s.value, s.label) for s in Source]], "Source"),
            rx.spacer(),
            rx.text(S.page_label, size="2", color=rx.color("gray", 10), class_name="page-label"),
            rx.icon_button(rx.icon("chevron-left"), variant="soft", on_click=S.previous_page,
                           disabled=~S.has_previous, aria_label="Previous page"),
            rx.icon_button(rx.icon("chevron-right"), variant="soft", on_click=S.next_page,
                           disabled=~S.has_next, aria_label="Next page"),
            width="100%",
            align="center",
            spacing="3",
        ),
        width="100%",
        spacing="3",
        padding_bottom="1em",
    )


def _bulk_bar() -> rx.Component:
    return rx.cond(
        S.selected_count > 0,
        rx.hstack(
            rx.text(S.selected_count, " selected", weight="medium", size="2"),
            rx.cond(
                S.viewer_is_manager,
                rx.hstack(
                    rx.select.root(
                        rx.select.trigger(placeholder="Reassign to…", width="220px", aria_label="Reassign to"),
                        rx.select.content(
                            rx.select.item("Unassigned pool", value="none"),
                            rx.foreach(S.users, lambda u: rx.select.item(u.name, value=u.id.to_string())),
                        ),
                        value=S.reassign_to,
                        on_change=S.set_reassign_to,
                    ),
                    rx.button("Reassign", on_click=S.reassign_selected, disabled=S.reassign_to == ""),
                    align="center",
                    spacing="3",
                ),
                rx.text("Only a manager can reassign leads.", size="2",
                        color=rx.color("gray", 11)),
            ),
            rx.cond(S.bulk_message != "", rx.text(S.bulk_message, color=rx.color("red", 11), size="2")),
            align="center",
            spacing="3",
            padding="0.6em 1em",
            margin_bottom="0.75em",
            border_radius="10px",
            background=rx.color("accent", 3),
            width="100%",
            class_name="bulk-bar",
        ),
    )


def _table() -> rx.Component:
    return rx.cond(
        S.total > 0,
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    rx.table.column_header_cell(
                        rx.checkbox(checked=S.all_on_page_selected, on_change=S.toggle_page,
                                    aria_label="Select this page"),
                        width="36px",
                    ),
                    rx.table.column_header_cell("Score", width="72px"),
                    rx.table.column_header_cell("Lead"),
                    rx.table.column_header_cell("Tier"),
                    rx.table.column_header_cell("Why"),
                    rx.table.column_header_cell("Stage"),
                    rx.table.column_header_cell("Source"),
                    rx.table.column_header_cell("Owner"),
                    rx.table.column_header_cell("Value", text_align="right"),
                )
            ),
            rx.table.body(rx.foreach(S.rows, _row)),
            variant="surface",
            width="100%",
        ),
        rx.center(
            rx.vstack(
                rx.icon("inbox", size=32, color=rx.color("gray", 9)),
                rx.text("No leads match these filters.", color=rx.color("gray", 10)),
                align="center",
            ),
            padding="4em",
            width="100%",
            border=f"1px dashed {rx.color('gray', 6)}",
            border_radius="12px",
            class_name="empty-state",
        ),
    )


def leads_page() -> rx.Component:
    return page_frame(
        "Leads",
        "Ranked by score: work from the top. Every point has a reason.",
        _toolbar(),
        _bulk_bar(),
        _table(),
    )
