"""The import page: upload a CSV, map its columns, preview, validate, import with a progress bar.

Managers only (the signed-in user's role); every handler checks it
again. The uploaded file is kept under the data directory (CRM_DATA_DIR/imports) with a random name,
not in Reflex's upload directory, which the backend serves publicly at /_upload; it is deleted once
imported (or refused), and uploads left behind for a day are swept at the next upload.

A mapping change does not read the file again: the service keeps a profile of it (its values per
column and first rows, services/importing/read.py) from the upload on.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import reflex as rx

from crm_app.services import accounts, import_runs
from crm_app.services.signed_links import sign_link
from crm_app.services.errors import NotSignedIn, ServiceError
from crm_app.services.importing import (
    AUTO,
    PLACEHOLDERS,
    UNKNOWN_ORDER,
    ImportMapping,
    ImportProgress,
    ImportRejected,
    ValidationReport,
    file_has_dates,
    forget_profile,
    guess_mapping,
    import_file,
    preview,
    profile_file,
    unknown_words,
    validate_file,
    write_skipped_rows,
)
from crm_app.settings import settings
from crm_app.state.base import SESSION_ENDED, AppState, now_utc, open_acting_session, open_session, run_system_db
from crm_app.upload_guard import too_large_message

UPLOAD_ID = "import_csv"
COPY_CHUNK = 1 << 20  # an upload is copied to the imports folder a megabyte at a time, never held whole
STALE_UPLOAD_SECONDS = 24 * 3600
NO_DEFAULT = "none"
PREVIEW_COLUMNS = ["Name", "Email", "Company", "Size", "Source", "Stage", "Value", "External id"]
# The preview shows the start of a long value (the whole of a 100,000-character cell would be sent to
# the browser and laid out); the import itself keeps every character.
PREVIEW_CELL = 120
PREVIEW_CUSTOM = 600
log = logging.getLogger(__name__)
MANAGERS_ONLY = "Only a manager can import leads."


@dataclass
class ColumnChoice:
    header: str
    field: str
    sample: str


@dataclass
class UnknownWord:
    field: str  # source | stage | outcome
    word: str
    mapped: str
    rows: int


@dataclass
class PreviewLine:
    row: int
    cells: list[str]
    custom: str  # "key: value, ..." (shown in a small scrolling box)
    custom_count: int
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


def _sweep_stale_uploads(now: float) -> None:
    """Delete uploads nobody imported (a closed tab) once they are a day old."""
    for path in imports_dir().glob("*.csv"):
        try:
            if now - path.stat().st_mtime > STALE_UPLOAD_SECONDS:
                path.unlink(missing_ok=True)
        except OSError:
            continue


def _copy_upload(upload: rx.UploadFile, target: Path, limit: int) -> int | None:
    """Copy the upload (spooled to disk by the server) to `target` a chunk at a time; None (and no
    file) when it is over `limit` bytes."""
    source, copied = upload.file, 0
    source.seek(0)
    try:
        with target.open("wb") as out:
            while chunk := source.read(COPY_CHUNK):
                copied += len(chunk)
                if copied > limit:
                    raise OverflowError
                out.write(chunk)
    except OverflowError:
        target.unlink(missing_ok=True)
        return None
    return copied


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _words(text: str) -> list[str]:
    return [w.strip().lower() for w in text.split(",") if w.strip()]


def _report_lines(errors) -> list[ReportLine]:
    return [ReportLine("—" if e.row == 0 else str(e.row), e.column, e.message) for e in errors]


class ImportState(AppState):
    file_name: str = ""  # the user's own name for the file
    stored_name: str = ""  # the random name under imports_dir(); never a path the browser chose
    columns: list[ColumnChoice] = []
    default_source: str = NO_DEFAULT
    row_ids: bool = False
    # Placeholder words read as missing values (besides blank cells), on by default.
    placeholders_on: bool = True
    placeholder_words: str = ", ".join(PLACEHOLDERS)
    date_format: str = AUTO
    row_order: str = UNKNOWN_ORDER
    has_dates: bool = False  # a mapped date column has values: no need to ask for the row order
    # Words in the source / stage / outcome columns that are not ours, and what the user mapped them to.
    unknown_words: list[UnknownWord] = []
    word_map: dict[str, str] = {}
    preview_lines: list[PreviewLine] = []
    report_lines: list[ReportLine] = []
    note_lines: list[ReportLine] = []
    report_summary: str = ""
    report_ok: bool = False
    file_rows: int = 0
    importing: bool = False
    progress: int = 0
    progress_label: str = ""
    result: str = ""
    message: str = ""
    max_upload_bytes: int = settings.import_max_bytes  # CRM_IMPORT_MAX_MB: the page refuses larger files too
    # "Import the valid rows, skip the rest": the manager's explicit choice, and the rows it leaves out.
    skip_invalid: bool = False
    bad_rows: int = 0  # rows with problems in the last validation (or refused import)
    skipped_name: str = ""  # the CSV of those rows and their problems, under imports_dir()
    skipped_as: str = ""  # the name it downloads as

    @rx.var
    def has_file(self) -> bool:
        return self.stored_name != ""

    @rx.var
    def has_date_column(self) -> bool:
        return any(c.field in ("created_at", "closed_at") for c in self.columns)

    def _path(self) -> Path:
        return imports_dir() / self.stored_name

    async def _manager_now(self) -> bool:
        """Is the signed-in user a manager, as the database says now? Every import event asks: a
        manager demoted while the page is open is refused at their next click, whatever the tab's
        state says. (One indexed lookup of the session, off the event loop.)"""
        user = await self._current_user(recheck=True)
        if user is None:
            raise NotSignedIn(SESSION_ENDED)
        if not user.is_manager:
            self.message = MANAGERS_ONLY
            self._drop_file()  # what a manager uploaded is not left to the one they are now
            return False
        return True

    def _mapping(self) -> ImportMapping:
        values: dict[str, dict[str, str]] = {"source": {}, "stage": {}, "outcome": {}}
        for key, ours in self.word_map.items():
            field, _, word = key.partition("|")
            if ours and field in values:
                values[field][word.strip().lower()] = ours
        stem = Path(self.file_name).stem or "import"
        return ImportMapping(
            columns={c.header: c.field for c in self.columns},
            values=values,
            defaults={} if self.default_source == NO_DEFAULT else {"source": self.default_source},
            row_id_prefix=f"{stem}:row-" if self.row_ids else None,
            name_template=f"{stem} row {{row}}",
            missing_values=tuple(_words(self.placeholder_words)) if self.placeholders_on else (),
            date_format=self.date_format,
            row_order=self.row_order,
        )

    def _forget_results(self) -> None:
        self.report_lines, self.note_lines, self.report_summary = [], [], ""
        self.report_ok, self.result, self.bad_rows = False, "", 0
        self._drop_skipped()

    def _drop_skipped(self) -> None:
        if self.skipped_name:
            (imports_dir() / self.skipped_name).unlink(missing_ok=True)
        self.skipped_name = ""

    def _show_report(self, report: ValidationReport) -> None:
        self.file_rows = report.rows
        self.bad_rows = report.rows - report.valid_rows if report.rows else 0
        self.report_ok = report.ok
        self.report_summary = report.summary()
        self.report_lines = _report_lines(report.errors)
        self.note_lines = _report_lines(report.warnings)

    async def _refresh_preview(self) -> None:
        if not self.stored_name:
            return
        path, mapping, now = self._path(), self._mapping(), now_utc()
        # Words still to map: looked up without the user's own word map so mapped ones stay listed.
        bare = self._mapping()
        bare.values = {}
        word_map = dict(self.word_map)

        def work():
            words = [UnknownWord(field, word, word_map.get(f"{field}|{word}", ""), rows)
                     for field in ("source", "stage", "outcome")
                     for word, rows in unknown_words(path, bare, field)]
            return words, preview(path, mapping, now=now), file_has_dates(path, mapping)

        try:
            # From the file's profile (read once, at the upload): no reading of the file here.
            self.unknown_words, lines, self.has_dates = await asyncio.to_thread(work)
        except ServiceError as error:
            self.message, self.preview_lines = str(error), []
            return
        self.preview_lines = [
            PreviewLine(row=p.row, cells=[_clip(p.fields.get(c, ""), PREVIEW_CELL) for c in PREVIEW_COLUMNS],
                        custom=_clip(p.fields.get("Custom fields", ""), PREVIEW_CUSTOM),
                        custom_count=len(p.custom_fields), problems=_clip(" ".join(p.errors), PREVIEW_CUSTOM))
            for p in lines
        ]

    def _drop_file(self) -> None:
        """Delete the stored upload (imported, refused, or replaced) and what is kept of it."""
        if self.stored_name:
            path = self._path()
            forget_profile(path)
            path.unlink(missing_ok=True)
        self.stored_name = ""

    @rx.event
    async def load(self):
        if not await self._load_team():
            return self._sign_in_redirect()
        self.max_upload_bytes = settings.import_max_bytes
        # An import cut off by its process dying (the tab's saved state may still say "importing"):
        # its job's heartbeat stopped, so it is marked interrupted and its leftover query ended.
        user_id, now = self._user.id, now_utc()
        note = await run_system_db(lambda s: import_runs.interrupted(s, user_id, now))
        if note is None and self.importing:
            if not await run_system_db(lambda s: import_runs.running(s, user_id, now)):
                note = "The import was interrupted; nothing was stored. Run it again."
        if note:
            self.importing, self.progress, self.progress_label = False, 0, ""
            self.message = note

    @rx.event
    async def handle_upload(self, files: list[rx.UploadFile]):
        await self._receive(files)
        # Let the same file be chosen again (after an import deleted it): a file input whose value
        # does not change fires no change event.
        return rx.call_script("document.querySelectorAll('.csv-drop input[type=file]')"
                              ".forEach((input) => { input.value = ''; })")

    @rx.event
    def upload_rejected(self, rejected: list[dict]):
        """The browser refused the chosen file (too large, or not a CSV) before sending it."""
        reasons = []
        for item in (rejected if isinstance(rejected, list) else [])[:3]:
            item = item if isinstance(item, dict) else {}
            name = str((item.get("file") or {}).get("path") or "The file").lstrip("./")[:200]
            codes = {str(e.get("code")) for e in item.get("errors") or [] if isinstance(e, dict)}
            if "file-too-large" in codes:
                reasons.append(f'"{name}": {too_large_message(self.max_upload_bytes)}')
            elif "file-invalid-type" in codes:
                reasons.append(f'"{name}" is not a CSV file: choose a .csv, .tsv or .txt export.')
            else:
                reasons.append(f'"{name}" was not accepted: choose one CSV file.')
        self.message = " ".join(reasons) or "Choose one CSV file."

    async def _receive(self, files: list[rx.UploadFile]) -> None:
        if not await self._manager_now():
            return
        if not files:
            return
        upload = files[0]
        name = Path(upload.filename or "upload.csv").name[:200]
        self._drop_file()
        await asyncio.to_thread(_sweep_stale_uploads, time.time())
        stored = f"{uuid.uuid4().hex}.csv"
        limit = settings.import_max_bytes
        copied = await asyncio.to_thread(_copy_upload, upload, imports_dir() / stored, limit)
        if copied is None:  # the upload route refuses this before reading; a second check costs nothing
            self.message = f'"{name}": {too_large_message(limit)}'
            return
        self.stored_name = stored
        self.file_name = name
        self.message = ""
        self._forget_results()
        self.progress, self.progress_label = 0, ""
        try:
            profile = await asyncio.to_thread(profile_file, self._path())
        except ServiceError as error:
            # Said where the file was chosen, naming it: "x.csv" cannot be imported: This is a gzip ...
            self.message = f'"{name}" cannot be imported: {error}'
            self.columns, self.preview_lines = [], []
            self._drop_file()
            return
        first = profile.sample[0][1] if profile.sample else []
        previous = {c.header: c.field for c in self.columns}
        if list(previous) == list(profile.fmt.headers):
            # The same columns again (the file corrected after a refused import): keep the choices.
            guessed = previous
        else:
            guessed = guess_mapping(profile.fmt.headers, profile, self._mapping().missing_values)
            self.word_map = {}
            self.row_ids = not any(f in ("external_id", "email") for f in guessed.values())
        self.columns = [ColumnChoice(h, guessed[h], (first[i].strip() if i < len(first) else "")[:40])
                        for i, h in enumerate(profile.fmt.headers)]
        await self._refresh_preview()

    async def _changed(self):
        self._forget_results()
        await self._refresh_preview()

    async def _may_change(self) -> bool:
        """A mapping change reads the stored file: only for a manager (asked of the database)."""
        return await self._manager_now()

    @rx.event
    async def set_column_field(self, header: str, value: str):
        if not await self._may_change():
            return
        self.columns = [ColumnChoice(c.header, value if c.header == header else c.field, c.sample)
                        for c in self.columns]
        if value == "external_id":
            self.row_ids = False  # the file has its ids: row numbers would clash with them
        await self._changed()

    @rx.event
    async def map_word(self, key: str, value: str):
        if not await self._may_change():
            return
        self.word_map = {**self.word_map, key: value}
        await self._changed()

    @rx.event
    async def set_default_source(self, value: str):
        if not await self._may_change():
            return
        self.default_source = value
        await self._changed()

    @rx.event
    async def set_row_ids(self, value: bool):
        if not await self._may_change():
            return
        self.row_ids = bool(value)
        await self._changed()

    @rx.event
    async def set_placeholders_on(self, value: bool):
        if not await self._may_change():
            return
        self.placeholders_on = bool(value)
        await self._changed()

    @rx.event
    async def set_placeholder_words(self, value: str):
        if not await self._may_change():
            return
        self.placeholder_words = value[:300]
        await self._changed()

    @rx.event
    async def set_date_format(self, value: str):
        if not await self._may_change():
            return
        self.date_format = value
        await self._changed()

    @rx.event
    async def set_skip_invalid(self, value: bool):
        if not await self._may_change():
            return
        self.skip_invalid = bool(value)

    async def _write_skipped(self) -> None:
        """The rows with problems, with their problems, to a file the manager can download."""
        if not self.stored_name:
            return
        self._drop_skipped()
        name = f"{uuid.uuid4().hex}-skipped.csv"
        path, mapping, now = self._path(), self._mapping(), now_utc()
        await asyncio.to_thread(write_skipped_rows, path, mapping, imports_dir() / name, now=now)
        self.skipped_name = name
        self.skipped_as = f"{Path(self.file_name).stem or 'import'}-rows-not-imported.csv"

    @rx.event
    async def download_skipped(self):
        """Download the rows with problems (and why) through a short-lived link signed for this sign-in."""
        if not await self._manager_now():
            return
        if not self.skipped_name:
            await self._write_skipped()
        if not self.skipped_name:
            return
        now, user, token = now_utc(), await self._actor(), self._session_token()
        session_id = await run_system_db(lambda s: accounts.live_session_id(s, token, now))
        if session_id is None:
            raise NotSignedIn(SESSION_ENDED)
        from crm_app.api import SKIPPED_PATH, SKIPPED_PURPOSE

        link = sign_link(SKIPPED_PURPOSE, {"viewer": user.id, "session": session_id,
                                           "file": self.skipped_name, "as": self.skipped_as}, now=now)
        return rx.download(url=f"{SKIPPED_PATH}?token={link}", filename=self.skipped_as)

    @rx.event
    async def set_row_order(self, value: str):
        if not await self._may_change():
            return
        self.row_order = value
        self._forget_results()

    @rx.event
    async def validate(self):
        if not await self._manager_now():
            return
        if not self.stored_name:
            return
        path, mapping, now = self._path(), self._mapping(), now_utc()
        report = await asyncio.to_thread(validate_file, path, mapping, now=now)
        self._show_report(report)

    @rx.event(background=True)
    async def run_import(self):
        async with self:
            if not await self._manager_now():
                return
            if self.importing or not self.stored_name:
                return
            self.importing, self.progress, self.result, self.message = True, 0, "", ""
            self.progress_label = "Reading the file"
            path, mapping, now, total = self._path(), self._mapping(), now_utc(), self.file_rows
            file_name, skip = self.file_name, self.skip_invalid
            if skip:
                self._drop_skipped()
                self.skipped_name = f"{uuid.uuid4().hex}-skipped.csv"
                self.skipped_as = f"{Path(file_name).stem or 'import'}-rows-not-imported.csv"
            skipped_path = imports_dir() / self.skipped_name
            user_id = (await self._actor()).id
        job_id = await run_system_db(lambda s: import_runs.start_job(s, user_id, file_name, now_utc()))
        control = import_runs.ImportControl()

        latest: list[ImportProgress] = []
        lock = threading.Lock()

        def note(step: ImportProgress) -> None:
            with lock:
                latest[:] = [step]

        def work():
            if skip:  # listed before the upload is deleted: the download outlives the file
                write_skipped_rows(path, mapping, skipped_path, now=now)
            rows = total or profile_file(path).rows  # known since the upload
            with import_runs.heartbeat(open_session, job_id, control, now_utc), \
                    open_acting_session(user_id) as session:
                return rows, import_file(session, path, mapping, now=now, progress=note, actor_id=user_id,
                                         file_name=file_name, control=control, skip_invalid=skip)

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
                elif self.progress_label != "Cancelling...":
                    self.progress = max(self.progress, 85 if step.phase == "writing" else 95)
                    self.progress_label = step.message
        error = task.exception()
        status = ("succeeded" if error is None else "cancelled" if isinstance(error, import_runs.ImportCancelled)
                  else "failed")
        try:
            await run_system_db(lambda s: import_runs.finish_job(s, job_id, status, now_utc(),
                                                                 None if error is None else str(error)[:500]))
        except Exception:  # the job then shows as interrupted once its heartbeat is stale
            log.exception("Could not record the end of import job %s", job_id)
        async with self:
            self.importing = False
            # Imported or refused, the upload is not kept (a corrected file is chosen again).
            self._drop_file()
            try:
                rows, summary = task.result()
            except ImportRejected as rejected:
                self.progress, self.progress_label = 0, ""
                self.report_ok = False
                self.report_summary = str(rejected)
                if rejected.report is not None:
                    self.report_lines = _report_lines(rejected.report.errors)
                    self.note_lines = _report_lines(rejected.report.warnings)
                self.message = ("Nothing was imported: " + str(rejected)
                                + " The file was removed from the server: choose it again once corrected.")
                return
            except import_runs.ImportCancelled as cancelled:
                self.progress, self.progress_label, self.message = 0, "", str(cancelled)
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
            self.bad_rows = summary.invalid
            if not summary.invalid:
                self._drop_skipped()
            yield rx.toast.success(f"Imported: {summary.created:,} created, {summary.updated:,} updated")

    @rx.event
    async def cancel_import(self):
        """Stop the running import (whichever worker runs it): nothing is stored."""
        if not self.importing or not await self._manager_now():
            return
        user_id = (await self._actor()).id
        if await run_system_db(lambda s: import_runs.request_cancel(s, user_id)):
            self.progress_label = "Cancelling..."

    @rx.event
    async def start_over(self):
        self._drop_file()
        if not await self._manager_now():
            return
        self.file_name, self.columns, self.preview_lines = "", [], []
        self.unknown_words, self.word_map = [], {}
        self.progress, self.progress_label, self.message = 0, "", ""
        self._forget_results()
