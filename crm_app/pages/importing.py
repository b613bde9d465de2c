"""The import page: upload, map each column, preview the first rows, validate, import."""

from __future__ import annotations

import reflex as rx

from crm_app.components.layout import page_frame
from crm_app.domain import Source, Stage
from crm_app.services.importing import CHOICES
from crm_app.state.importing import (
    NO_DEFAULT,
    PREVIEW_COLUMNS,
    UPLOAD_ID,
    ColumnChoice,
    PreviewLine,
    ReportLine,
    UnknownWord,
)
from crm_app.state.importing import ImportState as S


def _card(title: str, *children, **props) -> rx.Component:
    return rx.card(
        rx.vstack(rx.heading(title, size="3"), *children, spacing="3", width="100%"),
        width="100%",
        **props,
    )


def _upload() -> rx.Component:
    return _card(
        "1. Choose a CSV file",
        rx.upload(
            rx.vstack(
                rx.icon("upload", size=28, color=rx.color("accent", 9)),
                rx.text("Drop a CSV export here, or click to choose one.", weight="medium"),
                rx.text("Any CRM's export: comma, semicolon or tab separated; UTF-8 or Latin-1.",
                        size="1", color=rx.color("gray", 10)),
                align="center",
                spacing="2",
            ),
            id=UPLOAD_ID,
            multiple=False,
            max_files=1,
            accept={"text/csv": [".csv"], "text/plain": [".txt", ".tsv"]},
            on_drop=S.handle_upload(rx.upload_files(upload_id=UPLOAD_ID)),
            padding="1.5em",
            width="100%",
            border=f"1px dashed {rx.color('accent', 7)}",
            border_radius="10px",
            cursor="pointer",
            class_name="csv-drop",
        ),
        rx.cond(
            S.has_file,
            rx.hstack(
                rx.icon("file-text", size=16),
                rx.text(S.file_name, weight="medium", class_name="uploaded-name"),
                rx.text(S.columns.length(), " columns", size="2", color=rx.color("gray", 10)),
                rx.spacer(),
                rx.button("Start over", variant="ghost", size="1", on_click=S.start_over),
                align="center",
                width="100%",
            ),
        ),
    )


def _column_row(column: ColumnChoice) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(column.header, weight="medium")),
        rx.table.cell(rx.text(column.sample, size="1", color=rx.color("gray", 10), class_name="sample")),
        rx.table.cell(
            rx.select.root(
                rx.select.trigger(width="230px", aria_label="Field for " + column.header),
                rx.select.content(*[rx.select.item(label, value=key) for key, label in CHOICES.items()]),
                value=column.field,
                on_change=lambda value: S.set_column_field(column.header, value),
            )
        ),
        class_name="mapping-row",
        key=column.header,
    )


def _word_row(word: UnknownWord) -> rx.Component:
    options = lambda values: [rx.select.item(v.label, value=v.value) for v in values]  # noqa: E731
    return rx.hstack(
        rx.text('"', word.word, '"', size="2", min_width="120px"),
        rx.icon("arrow-right", size=14, color=rx.color("gray", 9)),
        rx.cond(
            word.field == "source",
            rx.select.root(
                rx.select.trigger(placeholder="Choose a source", width="170px", aria_label="Source for " + word.word),
                rx.select.content(*options(Source)),
                value=word.mapped,
                on_change=lambda value: S.map_word("source|" + word.word, value),
            ),
            rx.select.root(
                rx.select.trigger(placeholder="Choose a stage", width="170px", aria_label="Stage for " + word.word),
                rx.select.content(*options(Stage)),
                value=word.mapped,
                on_change=lambda value: S.map_word("stage|" + word.word, value),
            ),
        ),
        align="center",
        spacing="2",
        class_name="word-row",
    )


def _mapping() -> rx.Component:
    return _card(
        "2. Say what each column is",
        rx.text("Guessed from the headers. Columns you keep as custom fields are stored with the lead and "
                "the scoring model can learn from them.", size="2", color=rx.color("gray", 10)),
        rx.flex(
            rx.table.root(
                rx.table.header(rx.table.row(
                    rx.table.column_header_cell("Column"),
                    rx.table.column_header_cell("First value"),
                    rx.table.column_header_cell("Becomes"),
                )),
                rx.table.body(rx.foreach(S.columns, _column_row)),
                variant="surface",
                size="1",
            ),
            rx.vstack(
                rx.text("Source when the file has none", size="2", weight="medium"),
                rx.select.root(
                    rx.select.trigger(width="220px", aria_label="Default source"),
                    rx.select.content(
                        rx.select.item("No default: a missing source is an error", value=NO_DEFAULT),
                        *[rx.select.item(s.label, value=s.value) for s in Source],
                    ),
                    value=S.default_source,
                    on_change=S.set_default_source,
                ),
                rx.text("Outcome values meaning won", size="2", weight="medium"),
                rx.input(value=S.won_words, on_change=S.set_won_words.debounce(400), width="220px",
                         aria_label="Won values"),
                rx.text("Outcome values meaning lost", size="2", weight="medium"),
                rx.input(value=S.lost_words, on_change=S.set_lost_words.debounce(400), width="220px",
                         aria_label="Lost values"),
                rx.cond(
                    S.unknown_words.length() > 0,
                    rx.vstack(
                        rx.text("Values to map to ours", size="2", weight="medium"),
                        rx.foreach(S.unknown_words, _word_row),
                        spacing="2",
                        padding="0.6em",
                        border_radius="8px",
                        background=rx.color("amber", 2),
                        border=f"1px solid {rx.color('amber', 6)}",
                    ),
                ),
                rx.checkbox("Use row numbers as ids (no id or email column)", checked=S.row_ids,
                            on_change=S.set_row_ids),
                rx.text("Re-importing the same file then updates those leads instead of adding them again.",
                        size="1", color=rx.color("gray", 10), max_width="260px"),
                spacing="2",
                min_width="260px",
            ),
            gap="1.5em",
            wrap="wrap",
            align="start",
        ),
    )


def _preview_row(line: PreviewLine) -> rx.Component:
    return rx.table.row(
        rx.table.cell(line.row),
        rx.foreach(line.cells, lambda cell: rx.table.cell(rx.text(cell, size="1", max_width="220px",
                                                                  overflow="hidden", text_overflow="ellipsis"))),
        rx.table.cell(rx.text(line.problems, size="1", color=rx.color("red", 11))),
        class_name="preview-row",
        key=line.row,
    )


def _preview() -> rx.Component:
    return _card(
        "3. Preview the first 10 rows as they will be stored",
        rx.box(
            rx.table.root(
                rx.table.header(rx.table.row(
                    rx.table.column_header_cell("Row"),
                    *[rx.table.column_header_cell(c) for c in PREVIEW_COLUMNS],
                    rx.table.column_header_cell("Problems"),
                )),
                rx.table.body(rx.foreach(S.preview_lines, _preview_row)),
                variant="surface",
                size="1",
                width="100%",
            ),
            overflow_x="auto",
            width="100%",
        ),
    )


def _report_row(line: ReportLine) -> rx.Component:
    return rx.table.row(
        rx.table.cell(line.row),
        rx.table.cell(line.column),
        rx.table.cell(rx.text(line.message, color=rx.color("red", 11), size="2")),
        class_name="report-row",
    )


def _run() -> rx.Component:
    return _card(
        "4. Validate and import",
        rx.hstack(
            rx.button(rx.icon("list-checks", size=16), "Validate", variant="soft", on_click=S.validate,
                      disabled=S.importing),
            rx.button(rx.icon("database", size=16), "Import", on_click=S.run_import, disabled=S.importing,
                      loading=S.importing),
            rx.text("All rows or none: a file with any problem imports nothing.", size="2",
                    color=rx.color("gray", 10)),
            align="center",
            spacing="3",
        ),
        rx.cond(
            S.report_summary != "",
            rx.callout(S.report_summary, icon=rx.cond(S.report_ok, "circle-check", "triangle-alert"),
                       color_scheme=rx.cond(S.report_ok, "green", "red"), class_name="report-summary"),
        ),
        rx.cond(
            S.report_lines.length() > 0,
            rx.table.root(
                rx.table.header(rx.table.row(
                    rx.table.column_header_cell("Row", width="70px"),
                    rx.table.column_header_cell("Column", width="160px"),
                    rx.table.column_header_cell("Problem"),
                )),
                rx.table.body(rx.foreach(S.report_lines, _report_row)),
                variant="surface",
                size="1",
                width="100%",
                class_name="validation-report",
            ),
        ),
        rx.cond(
            S.importing | (S.progress > 0),
            rx.vstack(
                rx.progress(value=S.progress, max=100, width="100%", class_name="import-progress"),
                rx.text(S.progress_label, size="2", color=rx.color("gray", 11)),
                width="100%",
                spacing="1",
            ),
        ),
        rx.cond(S.result != "", rx.callout(S.result, icon="circle-check", color_scheme="green",
                                           class_name="import-summary")),
    )


def import_page() -> rx.Component:
    return page_frame(
        "Import",
        "Bring in historical leads from any CRM's CSV export. Re-importing updates, never duplicates.",
        rx.cond(
            S.viewer_is_manager,
            rx.vstack(
                rx.cond(S.message != "", rx.callout(S.message, icon="triangle-alert", color_scheme="red",
                                                    class_name="import-message")),
                _upload(),
                rx.cond(S.has_file & (S.columns.length() > 0),
                        rx.vstack(_mapping(), _preview(), _run(), spacing="4", width="100%")),
                spacing="4",
                width="100%",
            ),
            rx.callout("Only a manager can import leads.", icon="lock",
                       class_name="managers-only"),
        ),
    )
