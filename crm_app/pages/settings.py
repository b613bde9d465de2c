"""Settings: what each source costs (for ROI) and how long a deal may sit in each stage."""

from __future__ import annotations

import reflex as rx

from crm_app.components.controls import MUTED
from crm_app.components.layout import page_frame
from crm_app.services.settings import SourceCostRow, StageRuleRow
from crm_app.state.settings import COST_LENGTH, DAYS_LENGTH, SettingsState



def _editor_row(key, label, value, on_change, on_save, placeholder: str, unit_before: str, unit_after: str,
                class_name: str, max_length: int) -> rx.Component:
    error = SettingsState.errors.get(key, "")
    return rx.table.row(
        rx.table.cell(rx.text(label, weight="medium"), vertical_align="middle", width="180px"),
        rx.table.cell(
            rx.vstack(
                rx.hstack(
                    rx.input(
                        rx.input.slot(unit_before) if unit_before else rx.fragment(),
                        value=value,
                        on_change=on_change,
                        placeholder=placeholder,
                        disabled=~SettingsState.viewer_is_manager,
                        width="160px",
                        max_length=max_length,  # what the state keeps of it (state/settings.py)
                        color_scheme=rx.cond(error != "", "tomato", "indigo"),
                        class_name="setting-input",
                    ),
                    rx.text(unit_after, size="2", color=MUTED) if unit_after else rx.fragment(),
                    rx.button("Save", size="2", variant="soft", on_click=on_save,
                              disabled=~SettingsState.viewer_is_manager, class_name="setting-save"),
                    rx.cond(SettingsState.saved.get(key, False),
                            rx.badge(rx.icon("check", size=12), "Saved", color_scheme="grass", variant="soft")),
                    align="center",
                    spacing="2",
                ),
                rx.cond(error != "", rx.text(error, size="1", color=rx.color("tomato", 11),
                                             class_name="setting-error")),
                spacing="1",
            )
        ),
        class_name=class_name,
        data_key=key,
    )


def _cost_row(row: SourceCostRow) -> rx.Component:
    return _editor_row(
        row.source, row.label, SettingsState.cost_drafts.get(row.source, ""),
        lambda value: SettingsState.type_cost(row.source, value), SettingsState.save_cost(row.source),
        "Not set", "$", "", "cost-row", COST_LENGTH,
    )


def _rule_row(row: StageRuleRow) -> rx.Component:
    return _editor_row(
        row.stage, row.label, SettingsState.day_drafts.get(row.stage, ""),
        lambda value: SettingsState.type_days(row.stage, value), SettingsState.save_days(row.stage),
        "Days", "", "days", "rule-row", DAYS_LENGTH,
    )


def _card(title: str, caption: str, rows, render) -> rx.Component:
    return rx.card(
        rx.heading(title, size="4"),
        rx.text(caption, size="2", color=MUTED, padding_bottom="0.75em"),
        rx.table.root(rx.table.body(rx.foreach(rows, render)), variant="ghost", size="1", width="100%"),
        size="3",
        width="100%",
    )


def _engine_card() -> rx.Component:
    """Which engine scores the leads; managers choose it (rules, model or a blend) on the model page,
    next to the measures that tell them which to choose."""
    return rx.card(
        rx.hstack(
            rx.vstack(
                rx.heading("Scoring engine", size="4"),
                rx.text("The rules, a model trained on your deals, or a blend of both. Choose it on the "
                        "Model page, next to how each does on your newest closed deals.", size="2", color=MUTED),
                rx.cond(SettingsState.engine_note != "",
                        rx.text(SettingsState.engine_note, size="2", color=rx.color("amber", 11))),
                spacing="1",
            ),
            rx.spacer(),
            rx.badge(SettingsState.engine_label, size="2", variant="soft", class_name="settings-engine"),
            rx.link(rx.button("Model page", rx.icon("arrow-right", size=14), variant="soft", size="2",
                              white_space="nowrap"),
                    href="/model", flex_shrink="0"),
            align="center",
            spacing="3",
            width="100%",
        ),
        size="3",
        width="100%",
        margin_top="1.5em",
    )


def _lost_reasons_card() -> rx.Component:
    """The list the Lost dialog offers; Analytics counts lost deals by it."""
    S = SettingsState
    return rx.card(
        rx.heading("Lost reasons", size="4"),
        rx.text("What the Lost dialog offers when a deal is lost (with free text besides); Analytics counts lost "
                "deals by reason, source and stage. Removing one keeps it on the deals already lost with it.",
                size="2", color=MUTED, padding_bottom="0.75em"),
        rx.flex(
            rx.foreach(S.lost_reasons, lambda reason: rx.badge(
                reason,
                rx.cond(S.viewer_is_manager,
                        rx.icon("x", size=12, cursor="pointer", on_click=S.remove_lost_reason(reason),
                                aria_label="Remove " + reason)),
                size="2", variant="soft", color_scheme="gray", class_name="lost-reason-entry")),
            wrap="wrap",
            gap="2",
        ),
        rx.cond(
            S.viewer_is_manager,
            rx.form(
                rx.hstack(
                    rx.input(placeholder="Add a reason", value=S.new_reason, on_change=S.type_reason, max_length=120,
                             name="new_reason", width="260px"),
                    rx.button("Add", type="submit", variant="soft"),
                    padding_top="0.75em",
                ),
                on_submit=lambda _: S.add_lost_reason(),
                reset_on_submit=False,
            ),
        ),
        rx.cond(S.reason_error != "", rx.text(S.reason_error, color=rx.color("red", 11), size="2")),
        size="3",
        width="100%",
        margin_top="1.5em",
        class_name="lost-reasons-settings",
    )


def settings_page() -> rx.Component:
    return page_frame(
        "Settings",
        "What the team spends per source, how long a deal may wait in each stage, and what scores the leads.",
        rx.cond(
            ~SettingsState.viewer_is_manager,
            rx.callout("Only a manager can change settings.",
                       icon="lock", color_scheme="gray", variant="surface", margin_bottom="1em"),
        ),
        rx.grid(
            _card("Cost per source", "Total spend on each channel, for cost per won deal and ROI on the "
                  "analytics page. Leave blank when unknown.", SettingsState.costs, _cost_row),
            _card("Stage limits", "Days a deal may sit in a stage before it is flagged as stagnating "
                  "(1 to 365).", SettingsState.rules, _rule_row),
            columns=rx.breakpoints(initial="1", md="2"),
            spacing="5",
            width="100%",
            align="start",
        ),
        _engine_card(),
        _lost_reasons_card(),
    )
