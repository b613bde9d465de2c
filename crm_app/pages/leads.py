"""The ranked lead list: who to work on first, and why."""

from __future__ import annotations

import reflex as rx

from crm_app.components.badges import score_badge, tier_pill
from crm_app.components.layout import page_frame
from crm_app.db.queries import LeadListRow
from crm_app.state.leads import LeadsState


def _reasons(lead: LeadListRow) -> rx.Component:
    return rx.flex(
        rx.foreach(
            lead.reasons,
            lambda reason: rx.text(
                rx.text.strong(f"+{reason.points} "),
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
        rx.table.cell(score_badge(lead.score, lead.tier)),
        rx.table.cell(
            rx.vstack(
                rx.link(lead.name, href="/leads/" + lead.id.to_string(), weight="medium",
                        class_name="lead-name", color=rx.color("gray", 12)),
                rx.text(lead.company, size="1", color=rx.color("gray", 10)),
                spacing="0",
            )
        ),
        rx.table.cell(tier_pill(lead.tier)),
        rx.table.cell(_reasons(lead), max_width="520px"),
        rx.table.cell(rx.text(lead.stage, size="2")),
        rx.table.cell(rx.text(lead.owner, size="2")),
        rx.table.cell(rx.text(lead.value_label, size="2", font_variant_numeric="tabular-nums"), text_align="right"),
        class_name="lead-row",
        data_lead_id=lead.id,
        vertical_align="middle",
    )


def _toolbar() -> rx.Component:
    return rx.hstack(
        rx.input(
            rx.input.slot(rx.icon("search", size=16)),
            placeholder="Search name, company or email",
            value=LeadsState.search,
            on_change=LeadsState.set_search.debounce(300),
            width="320px",
            max_length=200,
        ),
        rx.segmented_control.root(
            rx.segmented_control.item("My leads", value="mine"),
            rx.segmented_control.item("Unassigned", value="unassigned"),
            rx.segmented_control.item("Whole team", value="team"),
            value=LeadsState.scope,
            on_change=LeadsState.set_scope,
        ),
        rx.select(
            ["all", "hot", "warm", "cold"],
            value=LeadsState.tier,
            on_change=LeadsState.set_tier,
        ),
        rx.spacer(),
        rx.text(LeadsState.page_label, size="2", color=rx.color("gray", 10)),
        rx.icon_button(rx.icon("chevron-left"), variant="soft", on_click=LeadsState.previous_page,
                       disabled=~LeadsState.has_previous, aria_label="Previous page"),
        rx.icon_button(rx.icon("chevron-right"), variant="soft", on_click=LeadsState.next_page,
                       disabled=~LeadsState.has_next, aria_label="Next page"),
        width="100%",
        align="center",
        spacing="3",
        padding_bottom="1em",
    )


def _table() -> rx.Component:
    return rx.cond(
        LeadsState.total > 0,
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    rx.table.column_header_cell("Score", width="72px"),
                    rx.table.column_header_cell("Lead"),
                    rx.table.column_header_cell("Tier"),
                    rx.table.column_header_cell("Why"),
                    rx.table.column_header_cell("Stage"),
                    rx.table.column_header_cell("Owner"),
                    rx.table.column_header_cell("Value", text_align="right"),
                )
            ),
            rx.table.body(rx.foreach(LeadsState.rows, _row)),
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
        ),
    )


def leads_page() -> rx.Component:
    return page_frame(
        "Leads",
        "Ranked by score: work from the top. Every point has a reason.",
        _toolbar(),
        _table(),
        on_viewer_change=LeadsState.set_viewer,
    )
