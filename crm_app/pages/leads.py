"""The leads table: search, filter, sort, page in SQL; claim, edit a row in place, and act on a selection
(claim, return, move stage, snooze, export; a manager also reassigns)."""

from __future__ import annotations

import reflex as rx

from crm_app.components.badges import score_badge, signed_points, tier_pill
from crm_app.components.controls import ERROR, choice
from crm_app.components.layout import page_frame
from crm_app.components.loading import loading_rows
from crm_app.db.queries import LeadListRow
from crm_app.domain import Source, Stage
from crm_app.services.queue import SNOOZE_CHOICES
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
                white_space="normal",  # a long reason wraps inside its column instead of running over the next
                padding="0.1em 0.5em",
                border_radius="6px",
                background=rx.color("gray", 3),
            ),
        ),
        wrap="wrap",
        gap="0.35em",
    )


def _cell_error(name: str) -> rx.Component:
    return rx.cond(S.row_errors.contains(name),
                   rx.text(S.row_errors[name], size="1", color=ERROR, class_name=f"error-{name}", max_width="220px"))


def _inline_select(name: str, label: str, options=None, items=None) -> rx.Component:
    content = (rx.foreach(items, lambda pair: rx.select.item(pair[1], value=pair[0])) if items is not None
               else rx.fragment(*[rx.select.item(text, value=key) for key, text in options]))
    return rx.vstack(
        rx.select.root(
            rx.select.trigger(aria_label=label, class_name=f"inline-{name}", width="95px"),
            rx.select.content(content),
            value=S.row_edit.get(name, ""),
            on_change=lambda v: S.set_row_field(name, v),
            size="1",
        ),
        _cell_error(name),
        spacing="1",
    )


def _editing(lead: LeadListRow):
    return S.editing_id == lead.id


def _stage_cell(lead: LeadListRow) -> rx.Component:
    return rx.cond(_editing(lead), _inline_select("stage", "Stage", [(s.value, s.label) for s in Stage]),
                   rx.text(lead.stage, size="2"))


def _owner_cell(lead: LeadListRow) -> rx.Component:
    return rx.cond(_editing(lead), _inline_select("owner_id", "Owner", items=S.owner_options),
                   rx.text(lead.owner, size="2", class_name="lead-owner"))


def _value_cell(lead: LeadListRow) -> rx.Component:
    return rx.cond(
        _editing(lead),
        rx.vstack(
            rx.input(value=S.row_edit.get("deal_value", ""), on_change=lambda v: S.set_row_field("deal_value", v),
                     aria_label="Deal value", class_name="inline-deal_value", size="1", width="90px",
                     max_length=20, input_mode="decimal", text_align="right",
                     color_scheme=rx.cond(S.row_errors.contains("deal_value"), "tomato", "indigo")),
            _cell_error("deal_value"),
            spacing="1",
            align="end",
        ),
        rx.vstack(
            rx.text(lead.value_label, size="2", font_variant_numeric="tabular-nums", class_name="lead-amount"),
            rx.cond(lead.weighted_label != "",
                    rx.tooltip(rx.text(lead.weighted_label, " weighted", size="1", color=rx.color("gray", 10),
                                       font_variant_numeric="tabular-nums", class_name="lead-weighted"),
                               content="Value x win probability")),
            spacing="0",
            align="end",
        ),
    )


def _row_actions(lead: LeadListRow) -> rx.Component:
    return rx.cond(
        _editing(lead),
        rx.vstack(
            rx.hstack(
                rx.icon_button(rx.icon("check", size=14), size="1", on_click=S.save_row, class_name="inline-save",
                               aria_label="Save"),
                rx.icon_button(rx.icon("x", size=14), size="1", variant="soft", color_scheme="gray",
                               on_click=S.cancel_edit, aria_label="Cancel"),
                spacing="1",
            ),
            _cell_error("form"),
            spacing="1",
            align="end",
        ),
        rx.hstack(
            rx.cond(
                lead.owner_id == 0,
                rx.button("Claim", size="1", variant="soft", on_click=S.claim_one(lead.id), class_name="claim-lead",
                          aria_label="Claim " + lead.name),
                rx.cond(lead.owner_id.to_string() == S.viewer_id,
                        rx.icon_button(rx.icon("undo-2", size=14), size="1", variant="ghost", color_scheme="gray",
                                       on_click=S.return_one(lead.id), class_name="return-lead",
                                       title="Return to the unassigned pool",
                                       aria_label="Return " + lead.name + " to the pool")),
            ),
            rx.icon_button(rx.icon("pencil", size=14), size="1", variant="ghost", on_click=S.start_edit(lead.id),
                           aria_label="Edit " + lead.name + " in place", class_name="edit-row"),
            spacing="2",
            align="center",
            justify="end",
        ),
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
        rx.table.cell(_reasons(lead), max_width="280px"),
        rx.table.cell(_stage_cell(lead), class_name="lead-stage"),
        rx.table.cell(rx.text(lead.source, size="2")),
        rx.table.cell(_owner_cell(lead), min_width="110px"),
        rx.table.cell(_value_cell(lead), text_align="right", class_name="lead-value"),
        rx.table.cell(_row_actions(lead), text_align="right"),
        class_name="lead-row",
        data_lead_id=lead.id,
        data_editing=rx.cond(_editing(lead), "true", "false"),
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
                width=rx.breakpoints(initial="100%", md="300px"),
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
            wrap="wrap",
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
            wrap="wrap",
        ),
        width="100%",
        spacing="3",
        padding_bottom="1em",
    )


def _bulk_bar() -> rx.Component:
    return rx.vstack(
        rx.cond(
            S.selected_count > 0,
            rx.hstack(
                rx.text(S.selected_count, " selected", weight="medium", size="2"),
                rx.button(rx.icon("hand", size=14), "Claim", size="2", variant="soft", on_click=S.claim_selected,
                          class_name="bulk-claim"),
                rx.button("Return to pool", size="2", variant="soft", color_scheme="gray",
                          on_click=S.return_selected, class_name="bulk-return"),
                rx.hstack(
                    rx.select.root(
                        rx.select.trigger(placeholder="Move to stage…", width="150px", aria_label="Move to stage"),
                        rx.select.content(*[rx.select.item(s.label, value=s.value) for s in Stage]),
                        value=S.bulk_stage,
                        on_change=S.set_bulk_stage,
                    ),
                    rx.button("Move", size="2", on_click=S.move_selected, disabled=S.bulk_stage == "",
                              class_name="bulk-move"),
                    spacing="1",
                    align="center",
                ),
                rx.menu.root(
                    rx.menu.trigger(rx.button(rx.icon("alarm-clock", size=14), "Snooze", size="2", variant="soft",
                                              class_name="bulk-snooze")),
                    rx.menu.content(*[rx.menu.item(label, on_click=S.snooze_selected(key))
                                      for key, label in SNOOZE_CHOICES.items()]),
                ),
                rx.button(rx.icon("download", size=14), "Export selected", size="2", variant="soft",
                          on_click=S.export_selected, class_name="bulk-export"),
                rx.cond(
                    S.viewer_is_manager,
                    rx.hstack(
                        rx.select.root(
                            rx.select.trigger(placeholder="Reassign to…", width="180px", aria_label="Reassign to"),
                            rx.select.content(
                                rx.select.item("Unassigned pool", value="none"),
                                rx.foreach(S.users, lambda u: rx.select.item(u.name, value=u.id.to_string())),
                            ),
                            value=S.reassign_to,
                            on_change=S.set_reassign_to,
                        ),
                        rx.button("Reassign", size="2", on_click=S.reassign_selected, disabled=S.reassign_to == ""),
                        align="center",
                        spacing="1",
                    ),
                ),
                align="center",
                spacing="3",
                wrap="wrap",
                padding="0.6em 1em",
                border_radius="10px",
                background=rx.color("accent", 3),
                width="100%",
                class_name="bulk-bar",
            ),
        ),
        rx.cond(S.bulk_message != "", rx.text(S.bulk_message, color=ERROR, size="2", class_name="bulk-error")),
        rx.cond(S.bulk_result != "", rx.text(S.bulk_result, size="2", color=rx.color("gray", 11),
                                             class_name="bulk-result")),
        spacing="2",
        width="100%",
        margin_bottom="0.75em",
    )


def _sort_header(label: str, key: str, **props) -> rx.Component:
    """A column header that sorts the list by that column (the sort select's choices)."""
    active = S.sort == key
    return rx.table.column_header_cell(
        rx.el.button(
            label,
            rx.cond(active, rx.icon("arrow-down" if key != "name" else "arrow-up", size=12)),
            on_click=S.set_sort(key),
            type="button",
            class_name="sort-header",
            data_sort=key,
            aria_pressed=rx.cond(active, "true", "false"),
            title=f"Sort by {label.lower()}",
            style={"all": "unset", "cursor": "pointer", "display": "inline-flex", "align_items": "center",
                   "gap": "4px", "font_weight": rx.cond(active, "700", "inherit")},
        ),
        aria_sort=rx.cond(active, "descending" if key != "name" else "ascending", "none"),
        **props,
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
                    _sort_header("Score", "score", width="72px"),
                    _sort_header("Lead", "name"),
                    rx.table.column_header_cell("Tier"),
                    rx.table.column_header_cell("Why"),
                    rx.table.column_header_cell("Stage"),
                    rx.table.column_header_cell("Source"),
                    rx.table.column_header_cell("Owner"),
                    _sort_header("Value", "value", text_align="right"),
                    rx.table.column_header_cell(""),
                )
            ),
            rx.table.body(rx.foreach(S.rows, _row)),
            variant="surface",
            width="100%",
            class_name="leads-table",  # a card per row on a phone (assets/crm.css)
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
        rx.cond(S.loaded, _table(), loading_rows(8)),
    )
