"""Model: which engine scores the leads, training a model, and how it does next to the rules."""

from __future__ import annotations

import reflex as rx

from crm_app import charts
from crm_app.components.confirm import confirm_dialog
from crm_app.components.controls import MUTED, data_table
from crm_app.components.layout import page_frame
from crm_app.scoring.field_guard import LEAK_AUC
from crm_app.services.model_report import FieldRow, MeasureRow, ModelVersionRow, TierChangeRow
from crm_app.state.base import figure_var
from crm_app.state.model import ModelState

RIGHT = {"text_align": "right"}  # a number column's header


def _chart(figure, class_name: str) -> rx.Component:
    return rx.plotly(data=figure_var(figure), template=charts.TEMPLATE, config=charts.CONFIG, use_resize_handler=True,
                     width="100%", class_name=class_name)


def _card(title: str, caption, *body: rx.Component, class_name: str, caption_class: str = "card-caption",
          **props) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading(title, size="4"),
            rx.text(caption, size="2", color=MUTED, class_name=caption_class),
            spacing="1",
            padding_bottom="0.75em",
        ),
        *body,
        size="3",
        width="100%",
        class_name=class_name,
        **props,
    )


def _job_progress(running, percent, message, error, status, class_name: str) -> rx.Component:
    """A progress bar while a job runs, its outcome afterwards; a failure in red, never hidden."""
    return rx.box(
        rx.cond(
            running,
            rx.vstack(
                rx.progress(value=percent, max=100, width="100%"),
                rx.hstack(
                    rx.spinner(size="1"),
                    rx.text(message, size="2", class_name="job-message"),
                    rx.spacer(),
                    rx.text(percent.to_string() + "%", size="2", color=MUTED, class_name="job-percent"),
                    width="100%",
                    align="center",
                ),
                spacing="2",
                width="100%",
            ),
            rx.cond(
                status == "failed",
                rx.callout(error, icon="triangle-alert", color_scheme="tomato", size="1", class_name="job-error"),
                rx.cond(status == "succeeded",
                        rx.hstack(rx.icon("check", size=16, color=rx.color("grass", 11), flex_shrink="0"),
                                  rx.text(message, size="2", color=rx.color("grass", 11)),
                                  spacing="2", align="start", class_name="job-done")),
            ),
        ),
        width="100%",
        class_name=class_name,
        data_status=status,
    )


def _engine_card() -> rx.Component:
    return _card(
        "Scoring engine",
        "What scores the leads: the rubric, the model trained on your own deals, or a mix of both. "
        "Open leads are rescored after every switch.",
        rx.vstack(
            rx.segmented_control.root(
                rx.segmented_control.item("Rules", value="rules"),
                rx.segmented_control.item("Model", value="model"),
                rx.segmented_control.item("Blend", value="blend"),
                value=ModelState.mode,
                on_change=ModelState.choose_mode,
                class_name="engine-choice",
            ),
            rx.cond(
                ModelState.mode == "blend",
                rx.vstack(
                    rx.hstack(
                        rx.text("Model's share", size="2", weight="medium"),
                        rx.input(rx.input.slot("%", side="right"), value=ModelState.blend_draft,
                                 on_change=ModelState.type_blend, width="90px", class_name="blend-input",
                                 color_scheme=rx.cond(ModelState.blend_error != "", "tomato", "indigo")),
                        rx.button("Save", size="2", variant="soft", on_click=ModelState.save_blend,
                                  class_name="blend-save"),
                        rx.text("the rules get the rest", size="2", color=MUTED),
                        align="center",
                        spacing="2",
                    ),
                    rx.cond(ModelState.blend_error != "",
                            rx.text(ModelState.blend_error, size="1", color=rx.color("tomato", 11),
                                    class_name="blend-error")),
                    spacing="1",
                ),
            ),
            rx.hstack(
                rx.text("Scoring now:", size="2", color=MUTED),
                rx.badge(ModelState.effective_label, size="2", variant="soft", class_name="effective-engine"),
                align="center",
            ),
            rx.cond(ModelState.engine_note != "",
                    rx.callout(ModelState.engine_note, icon="info", color_scheme="amber", size="1",
                               class_name="engine-note")),
            _job_progress(ModelState.rescoring_running, ModelState.rescore_percent, ModelState.rescore_message,
                          ModelState.rescore_error, ModelState.rescore_status, "rescore-job"),
            spacing="3",
            width="100%",
        ),
        class_name="engine-card",
    )


def _training_card() -> rx.Component:
    return _card(
        "Training",
        "A model learns from your won and lost deals and is measured against the rules on deals it did not "
        "learn from. Training runs in the background: you can leave this page.",
        rx.vstack(
            rx.text(ModelState.history_label, size="2", class_name="history-counts"),
            rx.cond(
                ~ModelState.enough_history,
                rx.callout(
                    "Not enough history yet: " + ModelState.missing_label + " (a model needs 200 closed deals, "
                    "at least 30 won and 30 lost). The rules score every lead until then.",
                    icon="info", color_scheme="amber", size="1", class_name="thin-history",
                ),
            ),
            rx.button(rx.icon("brain-circuit", size=16), "Train a new model", on_click=ModelState.train,
                      disabled=ModelState.training_running | ~ModelState.enough_history, class_name="train-button"),
            _job_progress(ModelState.training_running, ModelState.train_percent, ModelState.train_message,
                          ModelState.train_error, ModelState.train_status, "train-job"),
            spacing="3",
            width="100%",
        ),
        class_name="training-card",
    )


def _measure_row(row: MeasureRow) -> rx.Component:
    def cell(value, interval, who: str):
        return rx.table.cell(
            rx.vstack(
                rx.text(value, weight=rx.cond(row.better == who, "bold", "regular"),
                        color=rx.cond(row.better == who, rx.color("grass", 11), rx.color("gray", 12)),
                        class_name=f"{who}-value"),
                rx.cond(interval != "",
                        rx.text(interval, size="1", color=MUTED, white_space="nowrap",
                                class_name=f"{who}-interval")),
                spacing="0", align="end",
            ),
            text_align="right",
        )

    return rx.table.row(
        rx.table.cell(rx.vstack(rx.text(row.measure, weight="medium"), rx.text(row.hint, size="1", color=MUTED),
                                spacing="0")),
        cell(row.model, row.model_interval, "model"),
        cell(row.rules, row.rules_interval, "rules"),
        class_name="measure-row",
        data_measure=row.measure,
    )


def _measures_table(rows, class_name: str) -> rx.Component:
    return data_table(("Measure", ("Model", RIGHT), ("Rules", RIGHT)), rows, _measure_row,
                      variant="ghost", size="1", class_name=class_name)


def _comparison_card() -> rx.Component:
    return _card(
        "Model v" + ModelState.shown_version.to_string() + " against the rules",
        ModelState.method_note,
        rx.hstack(
            rx.badge(rx.cond(ModelState.validation == "cross_validation", "5-fold cross-validation",
                             "Newest deals held out"), variant="soft", color_scheme="indigo",
                     class_name="validation-badge"),
            padding_bottom="0.5em",
        ),
        _measures_table(ModelState.measures, "headline-measures"),
        rx.cond(
            ModelState.time_note != "",
            rx.vstack(
                rx.text(ModelState.time_note, size="2", color=MUTED, padding_top="1em",
                        class_name="time-note"),
                _measures_table(ModelState.time_measures, "time-measures"),
                spacing="1", width="100%",
            ),
        ),
        rx.text(
            "Trained " + ModelState.trained_at + " on " + ModelState.trained_rows.to_string() + " closed deals, "
            + ModelState.features_at + "; " + ModelState.fit_note,
            size="1", color=MUTED, padding_top="0.75em", class_name="trained-at",
        ),
        class_name="comparison-card",
        caption_class="method-note",
    )


def _tier_row(row: TierChangeRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(row.label, weight="medium")),
        rx.table.cell(row.before.to_string(), text_align="right", class_name="tier-before"),
        rx.table.cell(row.after.to_string(), text_align="right", class_name="tier-after"),
        class_name="tier-row",
        data_tier=row.tier,
    )


def _use_model_card() -> rx.Component:
    """Train -> review -> use: what switching to the shown model changes, and the switch itself."""
    return _card(
        "Score leads with model v" + ModelState.shown_version.to_string(),
        "It does not score your leads yet. What switching would change, counted without writing anything:",
        rx.vstack(
            rx.text(ModelState.preview_sentence, size="2", class_name="preview-sentence"),
            rx.table.root(
                rx.table.header(rx.table.row(
                    rx.table.column_header_cell("Open leads"),
                    rx.table.column_header_cell("Now", text_align="right"),
                    rx.table.column_header_cell("With the model", text_align="right"),
                )),
                rx.table.body(rx.foreach(ModelState.preview_tiers, _tier_row)),
                variant="ghost", size="1", max_width="420px",
            ),
            rx.button(rx.icon("sparkles", size=16), "Score leads with this model",
                      on_click=ModelState.use_model,
                      disabled=ModelState.rescoring_running | ModelState.training_running,
                      class_name="use-model-button"),
            spacing="3",
            width="100%",
        ),
        class_name="use-model-card",
    )


def _field_row(row: FieldRow) -> rx.Component:
    return rx.hstack(
        rx.icon(rx.cond(row.kind == "leak", "triangle-alert", "fingerprint"), size=16, flex_shrink="0",
                color=rx.color("amber", 11)),
        rx.vstack(
            rx.text(row.reason, size="2", class_name="field-reason"),
            rx.text(row.outcome, size="1", color=MUTED, class_name="field-outcome"),
            rx.checkbox(
                "Keep it in the next training",
                checked=ModelState.keep_fields.contains(row.key),
                on_change=lambda checked: ModelState.toggle_keep(row.key, checked),
                size="1",
                class_name="keep-field",
            ),
            spacing="1",
        ),
        align="start",
        spacing="2",
        width="100%",
        class_name="field-row",
        data_field=row.key,
        data_kind=row.kind,
    )


def _fields_card() -> rx.Component:
    return _card(
        "Fields left out",
        f"Before training, each custom field is tried alone: one that predicts the outcome with ROC-AUC "
        f"{LEAK_AUC:.2f} or more is probably filled in after the deal closes, and an id says nothing about "
        "a lead. Tick a field you know is filled in before the close to keep it in the next training.",
        rx.vstack(rx.foreach(ModelState.fields, _field_row), spacing="3", width="100%"),
        class_name="fields-card",
    )


def _version_row(row: ModelVersionRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text("v" + row.version.to_string(), weight="medium")),
        rx.table.cell(row.trained_at),
        rx.table.cell(row.rows, text_align="right"),
        rx.table.cell(row.model_auc, text_align="right"),
        rx.table.cell(row.rules_auc, text_align="right"),
        rx.table.cell(
            rx.cond(
                row.is_active,
                rx.badge("Active", color_scheme="grass", variant="soft"),
                rx.button("Activate", size="1", variant="soft", on_click=ModelState.activate(row.id),
                          class_name="activate-button"),
            )
        ),
        class_name="version-row",
        data_version=row.version,
    )


def _versions_card() -> rx.Component:
    return _card(
        "Versions",
        "Every trained model; activate one to score with it (open leads are rescored).",
        data_table(("Version", "Trained (UTC)", ("Deals", RIGHT), ("Model AUC", RIGHT), ("Rules AUC", RIGHT), ""),
                   ModelState.versions, _version_row, variant="ghost", size="1"),
        class_name="versions-card",
    )


def _report() -> rx.Component:
    return rx.vstack(
        rx.cond(ModelState.has_preview, _use_model_card()),
        rx.cond(ModelState.fields.length() > 0, _fields_card()),
        rx.grid(
            _comparison_card(),
            _card("Strongest signals", "What moves the model's scores most: each group's share of the "
                  "total pull on the deals it was measured on.",
                  _chart(ModelState.drivers_figure, "drivers-chart"),
                  class_name="drivers-card"),
            columns="2", spacing="5", width="100%", align="start",
        ),
        rx.grid(
            _card("Calibration", "The deals it was measured on, in ten groups by score: the predicted win "
                  "rate against how many were won. On the dashed line a score of 70 means 70 of 100 are won.",
                  _chart(ModelState.calibration_figure, "calibration-chart"), class_name="calibration-card"),
            _card("Cumulative gains", "Working the list best score first: the share of all wins found "
                  "after each tenth of the leads. Higher and earlier is better; the diagonal is random order.",
                  _chart(ModelState.gains_figure, "gains-chart"), class_name="gains-card"),
            columns="2", spacing="5", width="100%", align="start",
        ),
        _versions_card(),
        spacing="5",
        width="100%",
    )


def _no_model() -> rx.Component:
    return rx.card(
        rx.center(
            rx.vstack(
                rx.icon("chart-spline", size=28, color=rx.color("gray", 9)),
                rx.text("No model trained yet", weight="medium", color=rx.color("gray", 11)),
                rx.text(
                    rx.cond(ModelState.enough_history,
                            "Train one above: its measures, calibration and gains next to the rules' appear here.",
                            "A model needs " + ModelState.missing_label + "; until then the rules score every lead."),
                    size="2", color=MUTED, text_align="center",
                ),
                align="center",
                spacing="1",
            ),
            padding="2em",
        ),
        width="100%",
        class_name="no-model",
    )


def _manager_view() -> rx.Component:
    return rx.vstack(
        rx.cond(ModelState.action_message != "",
                rx.callout(ModelState.action_message, icon="triangle-alert", color_scheme="tomato",
                           class_name="action-message", width="100%")),
        rx.grid(_engine_card(), _training_card(), columns="2", spacing="5", width="100%", align="start"),
        rx.cond(ModelState.has_model, _report(), _no_model()),
        spacing="5",
        width="100%",
    )


def _switch_confirmation() -> rx.Component:
    return confirm_dialog(
        open=ModelState.confirm_open, on_open_change=ModelState.set_confirm_open,
        title=ModelState.confirm_title, impact=ModelState.confirm_impact, detail=ModelState.confirm_detail,
        confirm_label="Switch and rescore", on_confirm=ModelState.confirm_switch, class_name="switch-confirm",
    )


def model_page() -> rx.Component:
    return page_frame(
        "Model",
        "Predictive scoring: how a model trained on your deals does against the rules, and which one scores.",
        _switch_confirmation(),
        rx.cond(
            ModelState.viewer_is_manager,
            rx.cond(ModelState.loaded, _manager_view(), rx.center(rx.spinner(size="3"), padding="3em")),
            rx.callout("Only a manager can see the model page: it chooses how the whole team is scored.",
                       icon="lock", color_scheme="gray", variant="surface", class_name="model-refused"),
        ),
    )
