"""The import page: upload a CSV, map its columns, preview, validate, import with a progress bar.

Managers only (the signed-in user's role); every handler checks it
again. The uploaded file is kept under the data directory (CRM_DATA_DIR/imports) with a random name,
not in Reflex's upload directory, which the backend serves publicly at /_upload.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import reflex as rx

from crm_app.services.errors import ServiceError
from crm_app.services.importing import (
    ImportMapping,
    ImportProgress,
    ImportRejected,
    guess_mapping,
    import_file,
    preview,
    read_csv_format,
    unknown_values,
    validate_file,
)
from crm_app.settings import settings
from crm_app.state.base import AppState, now_utc, open_acting_session

UPLOAD_ID = "import_csv"
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
NO_DEFAULT = "none"
PREVIEW_COLUMNS = ["Name", "Email", "Company", "Size", "Source", "Stage", "Value", "External id", "Custom fields"]
log = logging.getLogger(__name__)
MANAGERS_ONLY = "Only a manager can import leads."


@dataclass
class ColumnChoice:
    header: str
    field: str
    sample: str


@dataclass
class UnknownWord:
    field: str  # source | stage
    word: str
    mapped: str


@dataclass
class PreviewLine:
    row: int
    cells: list[str]
    problems: str


@dataclass
class ReportLine:
    row: str
    column: str
    message: str


def imports_dir() -> Path:
    path = settings.data_dir / "imports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _words(text: str) -> list[str]:
    return [w.strip().lower() for w in text.split(",") if w.strip()]


class ImportState(AppState):
    file_name: str = ""
    stored_name: str = ""  # the random name under imports_dir(); never a path the browser chose
    columns: list[ColumnChoice] = []
    default_source: str = NO_DEFAULT
    won_words: str = "won, yes"
    lost_words: str = "lost, no"
    row_ids: bool = False
    # Words in the source / stage columns that are not ours, and what the user mapped them to.
    unknown_words: list[UnknownWord] = []
    word_map: dict[str, str] = {}
    preview_lines: list[PreviewLine] = []
    report_lines: list[ReportLine] = []
    report_summary: str = ""
    report_ok: bool = False
    file_rows: int = 0
    importing: bool = False
    progress: int = 0
    progress_label: str = ""
    result: str = ""
    message: str = ""

    @rx.var
    def has_file(self) -> bool:
        return self.stored_name != ""

    def _path(self) -> Path:
        return imports_dir() / self.stored_name

    def _mapping(self) -> ImportMapping:
        values: dict[str, dict[str, str]] = {
            "outcome": {**{w: "won" for w in _words(self.won_words)}, **{w: "lost" for w in _words(self.lost_words)}},
            "source": {}, "stage": {},
        }
        for key, ours in self.word_map.items():
            field, _, word = key.partition("|")
            if ours:
                values[field][word.strip().lower()] = ours
        stem = Path(self.file_name).stem or "import"
        return ImportMapping(
            columns={c.header: c.field for c in self.columns},
            values=values,
            defaults={} if self.default_source == NO_DEFAULT else {"source": self.default_source},
            row_id_prefix=f"{stem}:row-" if self.row_ids else None,
            name_template=f"{stem} row {{row}}",
        )

    def _forget_results(self) -> None:
        self.report_lines, self.report_summary, self.report_ok, self.result = [], "", False, ""

    async def _refresh_preview(self) -> None:
        if not self.stored_name:
            return
        path, mapping, now = self._path(), self._mapping(), now_utc()
        # Words still to map: looked up without the user's own mapping so mapped ones stay listed.
        bare = self._mapping()
        bare.values.pop("source"), bare.values.pop("stage")

        word_map = dict(self.word_map)

        def unknown() -> list[UnknownWord]:
            return [UnknownWord(field, word, word_map.get(f"{field}|{word}", ""))
                    for field in ("source", "stage") for word in unknown_values(path, bare, field)]

        try:
            self.unknown_words = await asyncio.to_thread(unknown)
            lines = await asyncio.to_thread(preview, path, mapping, now=now)
        except ServiceError as error:
            self.message, self.preview_lines = str(error), []
            return
        self.preview_lines = [
            PreviewLine(row=p.row, cells=[p.fields.get(c, "") for c in PREVIEW_COLUMNS], problems=" ".join(p.errors))
            for p in lines
        ]

    @rx.event
    async def load(self):
        if not await self._load_team():
            return self._sign_in_redirect()

    @rx.event
    async def handle_upload(self, files: list[rx.UploadFile]):
        if not self.viewer_is_manager:
            self.message = MANAGERS_ONLY
            return
        if not files:
            return
        upload = files[0]
        data = await upload.read()
        if len(data) > MAX_UPLOAD_BYTES:
            self.message = f"The file is larger than {MAX_UPLOAD_BYTES // 1024 // 1024} MB."
            return
        if self.stored_name:
            self._path().unlink(missing_ok=True)
        self.stored_name = f"{uuid.uuid4().hex}.csv"
        self._path().write_bytes(data)
        self.file_name = Path(upload.filename or "upload.csv").name[:200]
        self.message, self.word_map = "", {}
        self._forget_results()
        try:
            fmt = await asyncio.to_thread(read_csv_format, self._path())
        except ServiceError as error:
            self.message, self.columns, self.preview_lines = str(error), [], []
            return
        with self._path().open(encoding=fmt.encoding, newline="") as handle:
            reader = csv.reader(handle, delimiter=fmt.delimiter)
            next(reader, None)
            first = next(reader, [])
        guessed = guess_mapping(fmt.headers)
        self.columns = [ColumnChoice(h, guessed[h], (first[i] if i < len(first) else "")[:40])
                        for i, h in enumerate(fmt.headers)]
        has_id = any(c.field in ("external_id", "email") for c in self.columns)
        self.row_ids = not has_id
        await self._refresh_preview()

    @rx.event
    async def set_column_field(self, header: str, value: str):
        self.columns = [ColumnChoice(c.header, value if c.header == header else c.field, c.sample)
                        for c in self.columns]
        self._forget_results()
        await self._refresh_preview()

    @rx.event
    async def map_word(self, key: str, value: str):
        self.word_map = {**self.word_map, key: value}
        self._forget_results()
        await self._refresh_preview()

    @rx.event
    async def set_default_source(self, value: str):
        self.default_source = value
        self._forget_results()
        await self._refresh_preview()

    @rx.event
    async def set_won_words(self, value: str):
        self.won_words = value[:200]
        self._forget_results()
        await self._refresh_preview()

    @rx.event
    async def set_lost_words(self, value: str):
        self.lost_words = value[:200]
        self._forget_results()
        await self._refresh_preview()

    @rx.event
    async def set_row_ids(self, value: bool):
        self.row_ids = bool(value)
        self._forget_results()
        await self._refresh_preview()

    @rx.event
    async def validate(self):
        if not self.viewer_is_manager:
            self.message = MANAGERS_ONLY
            return
        if not self.stored_name:
            return
        path, mapping, now = self._path(), self._mapping(), now_utc()
        report = await asyncio.to_thread(validate_file, path, mapping, now=now)
        self.file_rows = report.rows
        self.report_ok = report.ok
        self.report_summary = report.summary()
        self.report_lines = [ReportLine("—" if e.row == 0 else str(e.row), e.column, e.message) for e in report.errors]

    @rx.event(background=True)
    async def run_import(self):
        async with self:
            if not self.viewer_is_manager:
                self.message = MANAGERS_ONLY
                return
            if self.importing or not self.stored_name:
                return
            self.importing, self.progress, self.result, self.message = True, 0, "", ""
            self.progress_label = "Reading the file"
            path, mapping, now, total = self._path(), self._mapping(), now_utc(), self.file_rows
            user_id = (await self._actor()).id

        latest: list[ImportProgress] = []
        lock = threading.Lock()

        def note(step: ImportProgress) -> None:
            with lock:
                latest[:] = [step]

        def work():
            if total:
                rows = total
            else:  # not validated first: count lines for the progress bar (fast, no parsing)
                with path.open("rb") as handle:
                    rows = max(1, sum(1 for _ in handle) - 1)
            with open_acting_session(user_id) as session:
                return rows, import_file(session, path, mapping, now=now, progress=note, actor_id=user_id)

        task = asyncio.create_task(asyncio.to_thread(work))
        while not task.done():
            await asyncio.sleep(0.25)
            with lock:
                step = latest[0] if latest else None
            if step is None:
                continue
            async with self:
                rows = max(self.file_rows, total, step.rows_read, 1)
                if step.phase == "reading":
                    self.progress = min(80, int(80 * step.rows_read / rows))
                    self.progress_label = f"Checked {step.rows_read:,} rows"
                else:
                    self.progress = max(self.progress, 85 if step.phase == "writing" else 95)
                    self.progress_label = step.message
        async with self:
            self.importing = False
            try:
                rows, summary = task.result()
            except ImportRejected as rejected:
                self.progress, self.progress_label = 0, ""
                self.report_ok = False
                self.report_summary = str(rejected)
                if rejected.report is not None:
                    self.report_lines = [ReportLine("—" if e.row == 0 else str(e.row), e.column, e.message)
                                         for e in rejected.report.errors]
                self.message = "Nothing was imported: " + str(rejected)
                return
            except ServiceError as error:
                self.progress, self.progress_label, self.message = 0, "", f"Nothing was imported: {error}"
                return
            except Exception:  # the transaction was rolled back; say so rather than leave the bar hanging
                log.exception("Import of %s failed", self.file_name)
                self.progress, self.progress_label = 0, ""
                self.message = "Nothing was imported: the import failed unexpectedly (see the server log)."
                return
            self.file_rows = rows
            self.progress, self.progress_label = 100, "Done"
            self.result = summary.describe()
            yield rx.toast.success(f"Imported: {summary.created:,} created, {summary.updated:,} updated")

    @rx.event
    def start_over(self):
        if self.stored_name:
            self._path().unlink(missing_ok=True)
        self.stored_name, self.file_name, self.columns, self.preview_lines = "", "", [], []
        self.unknown_words, self.word_map = [], {}
        self.progress, self.progress_label, self.message = 0, "", ""
        self._forget_results()

