"""The import page: upload, map each column, preview the first rows, validate, import."""

from __future__ import annotations

import reflex as rx

from crm_app.components.layout import page_frame
from crm_app.domain import Source, Stage
from crm_app.services.importing import CHOICES, DATE_ORDERS, ROW_ORDERS
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
            max_size=S.max_upload_bytes,
            on_drop=S.handle_upload(rx.upload_files(upload_id=UPLOAD_ID)),
            on_drop_rejected=S.upload_rejected,
            padding="1.5em",
            width="100%",
            border=f"1px dashed {rx.color('accent', 7)}",
            border_radius="10px",
            cursor="pointer",
            class_name="csv-drop",
        ),
        rx.cond(
            S.file_name != "",
            rx.hstack(
                rx.icon("file-text", size=16),
                rx.text(S.file_name, weight="medium", class_name="uploaded-name"),
                rx.text(S.columns.length(), " columns", size="2", color=rx.color("gray", 10)),
                rx.cond(~S.has_file, rx.text("(removed from the server after the import; choose it again to "
                                             "import it again)", size="2", color=rx.color("gray", 10),
                                             class_name="file-removed")),
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
                rx.select.trigger(width="210px", aria_label="Field for " + column.header),
                rx.select.content(*[rx.select.item(label, value=key) for key, label in CHOICES.items()]),
                value=column.field,
                on_change=lambda value: S.set_column_field(column.header, value),
            )
        ),
        class_name="mapping-row",
        key=column.header,
    )


OUTCOMES = {"won": "Won", "lost": "Lost", "open": "Open"}


def _word_select(word: UnknownWord, field: str, noun: str, options: dict[str, str]) -> rx.Component:
    return rx.select.root(
        rx.select.trigger(placeholder=f"Choose a {noun}", width="160px",
                          aria_label=f"{noun.capitalize()} for " + word.word),
        rx.select.content(*[rx.select.item(label, value=value) for value, label in options.items()]),
        value=word.mapped,
        on_change=lambda value: S.map_word(f"{field}|" + word.word, value),
    )


def _word_row(word: UnknownWord) -> rx.Component:
    return rx.hstack(
        rx.text('"', word.word, '"', size="2", width="130px", overflow="hidden", text_overflow="ellipsis",
                white_space="nowrap", title=word.word),
        rx.text(word.rows, " rows", size="1", color=rx.color("gray", 10), min_width="72px"),
        rx.icon("arrow-right", size=14, color=rx.color("gray", 9)),
        rx.match(
            word.field,
            ("source", _word_select(word, "source", "source", {s.value: s.label for s in Source})),
            ("stage", _word_select(word, "stage", "stage", {s.value: s.label for s in Stage})),
            _word_select(word, "outcome", "outcome", OUTCOMES),
        ),
        align="center",
        spacing="2",
        class_name="word-row",
    )


def _dates() -> rx.Component:
    """How the file's dates are written; without dates, the order of its rows."""
    return rx.vstack(
        rx.cond(
            S.has_date_column,
            rx.vstack(
                rx.text("Dates in the file", size="2", weight="medium"),
                rx.select.root(
                    rx.select.trigger(width="220px", aria_label="Date format"),
                    rx.select.content(*[rx.select.item(label, value=key)
                                        for key, label in DATE_ORDERS.items()]),
                    value=S.date_format,
                    on_change=S.set_date_format,
                ),
                spacing="1",
            ),
        ),
        rx.cond(
            ~S.has_dates,
            rx.vstack(
                rx.text("The file has no dates. Its rows are listed", size="2", weight="medium"),
                rx.radio_group.root(
                    rx.vstack(*[rx.radio_group.item(label, value=key) for key, label in ROW_ORDERS.items()],
                              spacing="1"),
                    value=S.row_order,
                    on_change=S.set_row_order,
                    aria_label="Order of the rows",
                    class_name="row-order",
                ),
                rx.text("Training a model tells older leads from newer ones by this order; with Unknown it "
                        "measures itself on random folds instead.", size="1", color=rx.color("gray", 10),
                        max_width="280px"),
                spacing="1",
            ),
        ),
        spacing="2",
    )


def _placeholders() -> rx.Component:
    return rx.vstack(
        rx.checkbox("Read these words as missing values", checked=S.placeholders_on,
                    on_change=S.set_placeholders_on, class_name="placeholders-on"),
        rx.text_area(value=S.placeholder_words, on_change=S.set_placeholder_words.debounce(400), width="100%",
                     rows="2", disabled=~S.placeholders_on, aria_label="Placeholder words"),
        rx.text("Any case; blank cells are always missing.", size="1", color=rx.color("gray", 10)),
        spacing="1",
    )


def _mapping() -> rx.Component:
    return _card(
        "2. Say what each column is",
        rx.text("Guessed from the headers and the values. Columns you keep as custom fields are stored with "
                "the lead and the scoring model can learn from them.", size="2", color=rx.color("gray", 10)),
        rx.flex(
            rx.vstack(
                rx.text("Source when the file has none", size="2", weight="medium"),
                rx.select.root(
                    rx.select.trigger(width="240px", aria_label="Default source"),
                    rx.select.content(
                        rx.select.item("No default: a missing source is an error", value=NO_DEFAULT),
                        *[rx.select.item(s.label, value=s.value) for s in Source],
                    ),
                    value=S.default_source,
                    on_change=S.set_default_source,
                ),
                rx.checkbox("Use row numbers as ids (no id or email column)", checked=S.row_ids,
                            on_change=S.set_row_ids),
                rx.text("Re-importing the same file then updates those leads instead of adding them again.",
                        size="1", color=rx.color("gray", 10), max_width="280px"),
                spacing="2",
                width="300px",
            ),
            rx.box(_placeholders(), width="300px"),
            rx.box(_dates(), width="300px"),
            gap="1.5em",
            wrap="wrap",
            align="start",
        ),
        rx.cond(
            S.unknown_words.length() > 0,
            rx.vstack(
                rx.text("Values to map to ours", size="2", weight="medium"),
                rx.text("0/1, yes/no, true/false and won/lost are understood as outcomes. Each source word "
                        "is kept with the lead as the custom field source_detail; with a default source, the "
                        "words not mapped here take it.", size="1", color=rx.color("gray", 10)),
                rx.grid(rx.foreach(S.unknown_words, _word_row),
                        columns="repeat(auto-fill, minmax(400px, 1fr))", gap="0.5em 1.5em", width="100%"),
                spacing="2",
                padding="0.6em",
                border_radius="8px",
                background=rx.color("amber", 2),
                border=f"1px solid {rx.color('amber', 6)}",
                width="100%",
            ),
        ),
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
    )


def _scroll_cell(content: rx.Component, **props) -> rx.Component:
    """A cell that stays a few lines tall however much it holds: the rest scrolls inside it."""
    return rx.table.cell(rx.box(content, max_height="48px", overflow_y="auto", **props))  # three lines


def _preview_row(line: PreviewLine) -> rx.Component:
    return rx.table.row(
        rx.table.cell(line.row),
        rx.foreach(line.cells, lambda cell: rx.table.cell(rx.text(
            cell, size="1", max_width="200px", overflow="hidden", text_overflow="ellipsis",
            white_space="nowrap", title=cell))),
        _scroll_cell(rx.text(rx.cond(line.custom_count > 1, line.custom_count.to_string() + " fields: ", ""),
                             line.custom, size="1"), min_width="260px", max_width="380px",
                     class_name="preview-custom"),
        _scroll_cell(rx.text(line.problems, size="1", color=rx.color("red", 11)), min_width="200px"),
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
                    rx.table.column_header_cell("Custom fields"),
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


def _note_row(line: ReportLine) -> rx.Component:
    return rx.table.row(
        rx.table.cell(line.column),
        rx.table.cell(rx.text(line.message, size="2")),
        class_name="note-row",
    )


def _run() -> rx.Component:
    return _card(
        "4. Validate and import",
        rx.hstack(
            rx.button(rx.icon("list-checks", size=16), "Validate", variant="soft", on_click=S.validate,
                      disabled=S.importing | ~S.has_file),
            rx.button(rx.icon("database", size=16), "Import", on_click=S.run_import,
                      disabled=S.importing | ~S.has_file, loading=S.importing),
            rx.checkbox("Import the valid rows, skip the rest", checked=S.skip_invalid,
                        on_change=S.set_skip_invalid, disabled=S.importing, class_name="skip-invalid"),
            align="center",
            spacing="3",
            wrap="wrap",
        ),
        rx.text(rx.cond(S.skip_invalid,
                        "Rows with problems are left out: download them with their problems, correct them "
                        "and import them again.",
                        "All rows or none: a file with any problem imports nothing."),
                size="2", color=rx.color("gray", 10)),
        rx.cond(
            S.report_summary != "",
            rx.callout(S.report_summary, icon=rx.cond(S.report_ok, "circle-check", "triangle-alert"),
                       color_scheme=rx.cond(S.report_ok, "green", "red"), class_name="report-summary"),
        ),
        rx.cond(
            S.note_lines.length() > 0,
            rx.table.root(
                rx.table.header(rx.table.row(
                    rx.table.column_header_cell("Column", width="200px"),
                    rx.table.column_header_cell("Note (the import still goes ahead)"),
                )),
                rx.table.body(rx.foreach(S.note_lines, _note_row)),
                variant="surface",
                size="1",
                width="100%",
                class_name="validation-notes",
                background=rx.color("amber", 2),
            ),
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
                rx.hstack(
                    rx.progress(value=S.progress, max=100, width="100%", class_name="import-progress"),
                    rx.cond(S.importing, rx.button("Cancel", size="1", variant="soft", color_scheme="red",
                                                   on_click=S.cancel_import, class_name="cancel-import")),
                    align="center",
                    width="100%",
                ),
                rx.text(S.progress_label, size="2", color=rx.color("gray", 11), class_name="import-step"),
                width="100%",
                spacing="1",
            ),
        ),
        rx.cond(S.result != "", rx.callout(S.result, icon="circle-check", color_scheme="green",
                                           class_name="import-summary")),
        rx.cond(
            (S.bad_rows > 0) & (S.has_file | (S.skipped_name != "")),
            rx.button(rx.icon("download", size=16), "Download the ", S.bad_rows.to_string(),
                      rx.cond(S.bad_rows == 1, " row", " rows"), " with problems (CSV)",
                      variant="outline", on_click=S.download_skipped, class_name="download-skipped"),
        ),
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
                # After an import the file is gone, but its mapping, report and result stay in view.
                rx.cond(S.columns.length() > 0,
                        rx.vstack(_mapping(), _preview(), _run(), spacing="4", width="100%")),
                spacing="4",
                width="100%",
            ),
            rx.callout("Only a manager can import leads.", icon="lock",
                       class_name="managers-only"),
        ),
    )
