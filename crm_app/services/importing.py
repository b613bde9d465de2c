"""Importing leads from any CRM's CSV export, all rows or none.

The steps, shared by the Import page and the `import` command:

1. `read_csv_format` sniffs the file: encoding (UTF-8 with or without BOM, else Latin-1), delimiter
   (`,`, `;`, tab or `|`) and the header row. `guess_mapping` proposes a field for each column.
2. An `ImportMapping` says what each column is: one of FIELDS, "custom" (kept in the lead's
   `custom_fields`, which the scoring model can learn from) or "ignore"; value maps turn the file's
   words into ours (`yes` -> won); defaults fill a new lead's missing source or stage.
3. `validate_file` streams the file through the csv module and checks every row, collecting per-row
   errors (row, column, message; the report keeps the first MAX_REPORTED but counts all). No database.
4. `import_file` validates again, refuses the whole file when any row is wrong, then writes in ONE
   transaction: COPY into a temporary table, match existing leads (external id, else lower(email)),
   INSERT the new ones with their scores, UPDATE the matched ones, record stage changes, rescore the
   updated ones with the team's engine, commit. A failure anywhere rolls everything back.

Rows are numbered as data rows: row 1 is the first row under the header. A new won or lost lead without a
closed date is taken as closed when it was created (or at import time when that is unknown too); a
stored lead that the file moves to won or lost without a date closes at import time.

Re-import (the same file again, or a newer export) updates the leads it matches instead of adding
new ones. A cell with a value overwrites the stored one; a blank cell keeps what is stored; custom
fields are merged (the file's keys win). When the file states a stage or outcome that differs from
the lead's, the lead moves there and a stage change is recorded (closing sets closed_at; reopening
clears it). Activities, owner and follow-ups are never touched by an import. A matched row that
changes nothing is counted as skipped.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from time import perf_counter
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from crm_app.domain import EMAIL_RE, Role, Source, Stage
from crm_app.scoring import LeadFacts, ScoringEngine
from crm_app.scoring.blend import score_many
from crm_app.services import audit
from crm_app.services.errors import InvalidInput, ServiceError
from crm_app.services.permissions import acting_user, require_role
from crm_app.services.risk import reassess_risk_in_transaction
from crm_app.services.scoring import active_engine, rescore_leads_in_transaction

# What a column can be. Order is the order of the mapping selects on the Import page.
FIELDS: dict[str, str] = {
    "name": "Name",
    "first_name": "First name",
    "last_name": "Last name",
    "email": "Email",
    "phone": "Phone",
    "title": "Job title",
    "company": "Company",
    "company_size": "Company size (employees)",
    "source": "Source",
    "stage": "Stage",
    "outcome": "Outcome (won / lost)",
    "deal_value": "Deal value",
    "created_at": "Created date",
    "closed_at": "Closed date",
    "external_id": "External id",
}
CUSTOM = "custom"
IGNORE = "ignore"
CHOICES: dict[str, str] = {**FIELDS, CUSTOM: "Keep as custom field", IGNORE: "Ignore"}

MAX_REPORTED = 200  # errors kept for the report; all are counted
MAX_LENGTHS = {"name": 200, "email": 254, "phone": 40, "title": 120, "company": 200, "external_id": 120}
MAX_DEAL_VALUE = Decimal("9999999999.99")  # numeric(12, 2)
MAX_CUSTOM_KEY = 100
_IMPORT_LOCK_KEY = 0x1A9017  # one import at a time: two imports of the same people would race
_DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y/%m/%d", "%d.%m.%Y")

_GUESSES = {
    "name": ("name", "fullname", "contactname", "contact", "leadname", "person"),
    "first_name": ("firstname", "givenname", "first"),
    "last_name": ("lastname", "surname", "familyname", "last"),
    "email": ("email", "emailaddress", "mail", "workemail"),
    "phone": ("phone", "phonenumber", "telephone", "mobile", "tel"),
    "title": ("title", "jobtitle", "position", "role"),
    "company": ("company", "companyname", "organization", "organisation", "account", "accountname"),
    "company_size": ("companysize", "size", "employees", "numberofemployees", "headcount", "employeecount"),
    "source": ("source", "leadsource", "channel", "origin"),
    "stage": ("stage", "dealstage", "status", "leadstatus", "pipelinestage"),
    "outcome": ("outcome", "result", "wonlost", "won"),
    "deal_value": ("value", "dealvalue", "amount", "dealamount", "revenue", "dealsize"),
    "created_at": ("created", "createdat", "createddate", "datecreated", "createdon", "createdtime"),
    "closed_at": ("closed", "closedat", "closeddate", "closedate", "dateclosed", "closedon"),
    "external_id": ("id", "externalid", "recordid", "leadid", "contactid", "crmid"),
}


class ImportRejected(ServiceError):
    """The file cannot be imported as it is; `report` says which rows and why. Nothing was written."""

    def __init__(self, message: str, report: ValidationReport | None = None):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class CsvFormat:
    encoding: str
    delimiter: str
    headers: tuple[str, ...]


@dataclass
class ImportMapping:
    """What each column means and how the file's words become ours (see docs/mappings/*.json)."""

    columns: dict[str, str] = field(default_factory=dict)  # header -> field | "custom" | "ignore"
    unmapped: str = CUSTOM  # what a column missing from `columns` is
    # Per field (source, stage, outcome), the file's value (any case) -> ours: {"yes": "won"}.
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    # Used when a row has no source or stage: {"source": "cold_outreach"}.
    defaults: dict[str, str] = field(default_factory=dict)
    # External id from the row number ("bank:row-" -> "bank:row-17") when the file has no id of its own.
    row_id_prefix: str | None = None
    # A lead's name when the file has none: "{row}" is the row number.
    name_template: str = "Imported lead {row}"
    # Cells that mean "no value" (besides blank), e.g. "unknown".
    missing_values: tuple[str, ...] = ()
    # Files without dates: row n was created (and closed) at first + (n - 1) * every. Keeps the file's
    # order as time, so a time-ordered holdout holds out the newest rows.
    row_clock_first: datetime | None = None
    row_clock_every: timedelta = timedelta(minutes=1)
    date_format: str | None = None  # strptime format for the date columns, when not ISO 8601

    def field_of(self, header: str) -> str:
        return self.columns.get(header, self.unmapped)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportMapping:
        """From the JSON form (the `--mapping` file, or the Import page's choices)."""
        known = {"columns", "unmapped", "values", "defaults", "row_id_prefix", "name_template",
                 "missing_values", "row_clock", "date_format", "description"}
        unknown = set(data) - known
        if unknown:
            raise InvalidInput(f"Unknown mapping keys: {', '.join(sorted(unknown))}.", field="mapping")
        clock = data.get("row_clock") or {}
        first = None
        if clock:
            try:
                first = _aware(datetime.fromisoformat(str(clock["first"])))
                every = timedelta(minutes=float(clock.get("every_minutes", 1)))
            except (KeyError, ValueError, TypeError):
                raise InvalidInput('row_clock needs {"first": "<ISO date>", "every_minutes": <number>}.',
                                   field="mapping") from None
        return cls(
            columns={str(k): str(v) for k, v in (data.get("columns") or {}).items()},
            unmapped=str(data.get("unmapped", CUSTOM)),
            values={f: {str(k).strip().lower(): str(v) for k, v in m.items()}
                    for f, m in (data.get("values") or {}).items()},
            defaults={str(k): str(v) for k, v in (data.get("defaults") or {}).items()},
            row_id_prefix=data.get("row_id_prefix") or None,
            name_template=str(data.get("name_template") or "Imported lead {row}"),
            missing_values=tuple(str(v).strip().lower() for v in data.get("missing_values") or ()),
            row_clock_first=first,
            row_clock_every=every if clock else timedelta(minutes=1),
            date_format=data.get("date_format") or None,
        )

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"columns": dict(self.columns), "unmapped": self.unmapped,
                                "values": self.values, "defaults": self.defaults,
                                "name_template": self.name_template}
        if self.row_id_prefix:
            data["row_id_prefix"] = self.row_id_prefix
        if self.missing_values:
            data["missing_values"] = list(self.missing_values)
        if self.row_clock_first:
            data["row_clock"] = {"first": self.row_clock_first.isoformat(),
                                 "every_minutes": self.row_clock_every.total_seconds() / 60}
        if self.date_format:
            data["date_format"] = self.date_format
        return data


def load_mapping(path: Path) -> ImportMapping:
    try:
        return ImportMapping.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except json.JSONDecodeError as error:
        raise InvalidInput(f"The mapping file is not valid JSON: {error}", field="mapping") from None


@dataclass(frozen=True)
class RowError:
    row: int  # 0: the file or the mapping as a whole
    column: str
    message: str


@dataclass
class ValidationReport:
    rows: int = 0  # data rows read (blank lines not counted)
    valid_rows: int = 0
    error_count: int = 0
    errors: list[RowError] = field(default_factory=list)  # the first MAX_REPORTED
    blank_rows: int = 0

    @property
    def ok(self) -> bool:
        return self.error_count == 0 and self.rows > 0

    def add(self, error: RowError) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(error)

    def summary(self) -> str:
        if self.rows == 0:
            return "The file has no data rows."
        if self.ok:
            return f"All {self.rows:,} rows are valid."
        bad_rows = self.rows - self.valid_rows
        shown = "" if self.error_count <= len(self.errors) else f" (the first {len(self.errors)} are listed)"
        return (f"{bad_rows:,} of {self.rows:,} rows have problems: {self.error_count:,} "
                f"error{'s' if self.error_count != 1 else ''}{shown}. Nothing is imported until every row is valid.")


@dataclass(frozen=True)
class ImportProgress:
    """Where an import is: phase "reading" (rows read and checked), "writing", "scoring" or "done"."""

    phase: str
    rows_read: int
    rows_written: int = 0
    message: str = ""


@dataclass(frozen=True)
class ImportSummary:
    rows: int
    created: int
    updated: int
    skipped: int  # matched rows that changed nothing, and blank lines
    seconds: float
    dry_run: bool = False

    def describe(self) -> str:
        verb = "Would create" if self.dry_run else "Created"
        return (f"{verb} {self.created:,}, updated {self.updated:,}, skipped {self.skipped:,} "
                f"(unchanged or blank) of {self.rows:,} rows in {self.seconds:.1f} s.")


@dataclass
class LeadRecord:
    """One valid row, as it will be stored."""

    row: int
    external_id: str | None
    name: str | None  # None: the file has no name for it (a new lead takes the template)
    email: str | None
    phone: str | None
    title: str | None
    company: str | None
    company_size: int | None
    source: str | None
    stage: str | None  # None: the file does not say
    deal_value: Decimal | None
    created_at: datetime | None
    closed_at: datetime | None
    custom_fields: dict[str, Any]


# --- Reading ------------------------------------------------------------------------------------


def _detect_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM) when the whole file decodes as UTF-8, else Latin-1 (which decodes
    any bytes: Windows exports of accented names)."""
    with path.open("rb") as handle:
        head = handle.read(4)
        handle.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            while chunk := handle.read(1 << 20):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "latin-1"
    return "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"


def read_csv_format(path: Path) -> CsvFormat:
    """Sniff encoding, delimiter and headers. Raises ImportRejected for a file that is not a table."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        raise ImportRejected("The file is empty.")
    encoding = _detect_encoding(path)
    with path.open(encoding=encoding, newline="") as handle:
        sample = handle.read(64 * 1024)
    first_line = sample.splitlines()[0] if sample else ""
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        # A one-column file, or a sample the sniffer cannot settle: count in the header line.
        counts = {d: first_line.count(d) for d in ",;\t|"}
        delimiter = max(counts, key=counts.get) if any(counts.values()) else ","
    headers = next(csv.reader(io.StringIO(sample), delimiter=delimiter), [])
    headers = [h.strip() for h in headers]
    if not any(headers):
        raise ImportRejected("The first line of the file should name the columns; it is empty.")
    blank = [i + 1 for i, h in enumerate(headers) if not h]
    if blank:
        raise ImportRejected(f"Column {blank[0]} has no name in the header line; every column needs one.")
    seen: set[str] = set()
    for header in headers:
        if header in seen:
            raise ImportRejected(f'Two columns are called "{header}"; rename one in the file.')
        seen.add(header)
    return CsvFormat(encoding=encoding, delimiter=delimiter, headers=tuple(headers))


def _rows(path: Path, fmt: CsvFormat) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells) for every data row, streamed. Blank lines are yielded with no cells."""
    with Path(path).open(encoding=fmt.encoding, newline="") as handle:
        reader = csv.reader(handle, delimiter=fmt.delimiter)
        next(reader, None)
        for number, cells in enumerate(reader, start=1):
            yield number, cells


def _squash(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


def guess_mapping(headers: tuple[str, ...] | list[str]) -> dict[str, str]:
    """A field for each header when its name says so ("E-mail address" -> email); the rest custom.
    Each field is proposed for one column only, the first that fits."""
    guessed: dict[str, str] = {}
    taken: set[str] = set()
    for header in headers:
        key = _squash(header)
        choice = CUSTOM
        for field_name, names in _GUESSES.items():
            if field_name not in taken and key in names:
                choice = field_name
                break
        if choice != CUSTOM:
            taken.add(choice)
        guessed[header] = choice
    return guessed


# --- Checking -----------------------------------------------------------------------------------


def check_mapping(mapping: ImportMapping, headers: tuple[str, ...]) -> list[RowError]:
    """Problems with the mapping itself, each tied to the column it concerns."""
    problems: list[RowError] = []
    used: dict[str, str] = {}
    for header, target in mapping.columns.items():
        if header not in headers:
            problems.append(RowError(0, header, f'The mapping names a column "{header}" the file does not have.'))
        if target not in CHOICES:
            problems.append(RowError(0, header, f'"{target}" is not a field; choose one of {", ".join(CHOICES)}.'))
        elif target in FIELDS:
            if target in used:
                problems.append(RowError(0, header, f'"{used[target]}" is already the {FIELDS[target]} column.'))
            used[target] = header
    if mapping.unmapped not in (CUSTOM, IGNORE):
        problems.append(RowError(0, "", 'Columns not in the mapping must be "custom" or "ignore".'))
    if "external_id" in used and mapping.row_id_prefix:
        problems.append(RowError(0, used["external_id"],
                                 "Use either an external id column or row-number ids, not both."))
    for name, allowed in (("source", [s.value for s in Source]), ("stage", [s.value for s in Stage])):
        default = mapping.defaults.get(name)
        if default and default not in allowed:
            problems.append(RowError(0, name, f'Default {name} "{default}" is not one of {", ".join(allowed)}.'))
    for name, mapped in mapping.values.items():
        allowed = {"source": [s.value for s in Source], "stage": [s.value for s in Stage],
                   "outcome": ["won", "lost", "open"]}.get(name)
        if allowed is None:
            problems.append(RowError(0, name, f"Value maps exist only for source, stage and outcome, not {name}."))
            continue
        for theirs, ours in mapped.items():
            if ours not in allowed:
                problems.append(RowError(0, name, f'"{theirs}" maps to "{ours}", which is not one of '
                                                  f'{", ".join(allowed)}.'))
    return problems


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


class _Cell(ValueError):
    """A cell that cannot be read as its field; the message says why, in words."""


def _parse_date(value: str, date_format: str | None) -> datetime:
    formats = (date_format,) if date_format else ()
    for fmt in formats:
        try:
            return _aware(datetime.strptime(value, fmt))
        except ValueError:
            raise _Cell(f'"{value}" is not a date in the format {date_format}.') from None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        for fmt in _DATE_FORMATS:
            try:
                return _aware(datetime.strptime(value, fmt))
            except ValueError:
                continue
        raise _Cell(f'"{value}" is not a date (use 2026-03-31 or 2026-03-31 14:05).') from None
    if isinstance(parsed, date) and not isinstance(parsed, datetime):
        parsed = datetime.combine(parsed, time())
    return _aware(parsed)


def _parse_whole_number(value: str) -> int:
    cleaned = value.replace(",", "").replace(" ", "").replace("_", "")
    try:
        number = Decimal(cleaned)
    except InvalidOperation:
        raise _Cell(f'"{value}" is not a whole number of employees.') from None
    if number != number.to_integral_value() or number < 0:
        raise _Cell(f'"{value}" is not a whole number of employees.')
    if number > 10_000_000:
        raise _Cell(f'"{value}" employees is more than any company has.')
    return int(number)


def _parse_money(value: str) -> Decimal:
    cleaned = re.sub(r"[\s,$€£]", "", value)
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise _Cell(f'"{value}" is not an amount (write 12000 or 12,000.50).') from None
    if not amount.is_finite() or amount < 0:
        raise _Cell(f'"{value}" is not an amount of zero or more.')
    if amount > MAX_DEAL_VALUE:
        raise _Cell(f'"{value}" is larger than the largest deal value stored (9,999,999,999.99).')
    return amount.quantize(Decimal("0.01"))


def _choice(value: str, field_name: str, mapping: ImportMapping, labels: dict[str, str]) -> str:
    """The file's word for a source/stage/outcome as ours, through the value map, our value or label."""
    key = value.strip().lower()
    mapped = mapping.values.get(field_name, {}).get(key)
    if mapped:
        return mapped
    for ours, label in labels.items():
        if key in (ours, label.lower()):
            return ours
    choices = ", ".join(labels.values())
    raise _Cell(f'Unknown {field_name} "{value}": map it to one of {choices}'
                + (" or choose a default source." if field_name == "source" else "."))


_SOURCE_LABELS = {s.value: s.label for s in Source}
_STAGE_LABELS = {s.value: s.label for s in Stage}
_OUTCOME_LABELS = {"won": "Won", "lost": "Lost", "open": "Open"}


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")


def custom_value(value: str) -> int | float | str:
    """A custom field's cell as a number when it is one (the model reads numbers as numbers).
    A number too large for a float ("1e999", hundreds of digits) stays text: JSON has no Infinity."""
    if _NUMBER.fullmatch(value) and math.isfinite(float(value)):
        return int(value) if _INTEGER.fullmatch(value) else float(value)
    return value


def _check_row(
    number: int, cells: list[str], headers: tuple[str, ...], mapping: ImportMapping, now: datetime,
    targets: tuple[str, ...] | None = None,
) -> tuple[LeadRecord | None, list[RowError]]:
    """One row as a record, or its problems. `targets` (each header's field) is worked out once per file."""
    errors: list[RowError] = []
    targets = targets or tuple(mapping.field_of(h) for h in headers)
    missing = mapping.missing_values
    if len(cells) != len(headers):
        return None, [RowError(number, "", f"The row has {len(cells)} cells but the header names {len(headers)} "
                                           "columns (a missing or extra delimiter, or an unclosed quote?).")]
    values: dict[str, str] = {}
    columns: dict[str, str] = {}
    custom: dict[str, Any] = {}
    for header, target, raw in zip(headers, targets, cells):
        cell = raw.strip()
        if not cell or target == IGNORE or (missing and cell.lower() in missing):
            continue
        if target == CUSTOM:
            custom[header[:MAX_CUSTOM_KEY]] = custom_value(cell)
        else:
            values[target], columns[target] = cell, header

    def parsed(field_name: str, parse: Callable[[str], Any]) -> Any:
        if field_name not in values:
            return None
        try:
            return parse(values[field_name])
        except _Cell as problem:
            errors.append(RowError(number, columns[field_name], str(problem)))
            return None

    for field_name, limit in MAX_LENGTHS.items():
        if field_name in values and len(values[field_name]) > limit:
            errors.append(RowError(number, columns[field_name],
                                   f"{FIELDS[field_name]} is {len(values[field_name])} characters long; "
                                   f"at most {limit} are kept."))
    email = values.get("email")
    if email and not EMAIL_RE.match(email):
        errors.append(RowError(number, columns["email"], f'"{email}" is not an email address.'))
    name = values.get("name") or " ".join(v for v in (values.get("first_name"), values.get("last_name")) if v)
    name = name or None
    company_size = parsed("company_size", _parse_whole_number)
    deal_value = parsed("deal_value", _parse_money)
    source = parsed("source", lambda v: _choice(v, "source", mapping, _SOURCE_LABELS))
    stage = parsed("stage", lambda v: _choice(v, "stage", mapping, _STAGE_LABELS))
    outcome = parsed("outcome", lambda v: _choice(v, "outcome", mapping, _OUTCOME_LABELS))
    created_at = parsed("created_at", lambda v: _parse_date(v, mapping.date_format))
    closed_at = parsed("closed_at", lambda v: _parse_date(v, mapping.date_format))

    if outcome in ("won", "lost"):
        if stage in ("won", "lost") and stage != outcome:
            errors.append(RowError(number, columns["outcome"],
                                   f"The outcome says {outcome} but the stage says {stage}."))
        stage = outcome
    # Defaults are for new leads only (applied when inserting): a re-import of a file without a stage
    # must not move stored leads back to the default one.
    if source is None and "source" not in values and "source" not in mapping.defaults:
        errors.append(RowError(number, columns.get("source", ""), "No source: fill it in or choose a default source."))
    effective_stage = stage or mapping.defaults.get("stage")
    if mapping.row_clock_first is not None:
        clock = mapping.row_clock_first + (number - 1) * mapping.row_clock_every
        created_at = created_at or clock
        if effective_stage in ("won", "lost"):
            closed_at = closed_at or clock
    for moment, field_name in ((created_at, "created_at"), (closed_at, "closed_at")):
        if moment is not None and moment > now:
            errors.append(RowError(number, columns.get(field_name, ""),
                                   f"{FIELDS[field_name]} {moment:%Y-%m-%d} is in the future."))
    if effective_stage not in ("won", "lost"):
        closed_at = None  # an expected close date of an open deal is not a close
    elif created_at and closed_at and closed_at < created_at:
        errors.append(RowError(number, columns.get("closed_at", ""),
                               f"Closed {closed_at:%Y-%m-%d}, before it was created ({created_at:%Y-%m-%d})."))
    external_id = values.get("external_id")
    if external_id is None and mapping.row_id_prefix:
        external_id = f"{mapping.row_id_prefix}{number}"
    if external_id is None and email is None:
        errors.append(RowError(number, "", "No email and no external id: a later re-import could not find this "
                                           "lead again. Map an id column, or use row numbers as ids."))
    if errors:
        return None, errors
    return LeadRecord(
        row=number, external_id=external_id, name=name, email=email, phone=values.get("phone"),
        title=values.get("title"), company=values.get("company"), company_size=company_size, source=source,
        stage=stage, deal_value=deal_value, created_at=created_at, closed_at=closed_at, custom_fields=custom,
    ), []


def _checked_rows(
    path: Path, mapping: ImportMapping, now: datetime, report: ValidationReport,
    progress: Callable[[ImportProgress], None] | None = None, every: int = 5000,
) -> Iterator[LeadRecord]:
    """Stream valid records while adding every problem to `report` (also duplicates within the file)."""
    fmt = read_csv_format(path)
    for problem in check_mapping(mapping, fmt.headers):
        report.add(problem)
    if report.error_count:
        return
    has_source = any(mapping.field_of(h) == "source" for h in fmt.headers)
    if not has_source and "source" not in mapping.defaults:
        report.add(RowError(0, "source", "No column is the source and no default source is chosen: every lead "
                                         "needs a source. Choose a default (e.g. cold_outreach)."))
        return
    first_row_of: dict[tuple[str, str], int] = {}
    targets = tuple(mapping.field_of(h) for h in fmt.headers)
    for number, cells in _rows(path, fmt):
        if not any(c.strip() for c in cells):
            report.blank_rows += 1
            continue
        report.rows += 1
        record, errors = _check_row(number, cells, fmt.headers, mapping, now, targets)
        if record is not None:
            for kind, key in (("email", (record.email or "").lower()), ("external id", record.external_id or "")):
                if key:
                    earlier = first_row_of.setdefault((kind, key), number)
                    if earlier != number:
                        column = next((h for h in fmt.headers if mapping.field_of(h) ==
                                       ("email" if kind == "email" else "external_id")), "")
                        errors.append(RowError(number, column, f"Same {kind} as row {earlier}: a lead appears once "
                                                               "per file."))
        if errors:
            for error in errors:
                report.add(error)
            continue
        report.valid_rows += 1
        if progress and report.rows % every == 0:
            progress(ImportProgress("reading", report.rows))
        yield record
    if progress:
        progress(ImportProgress("reading", report.rows))


def validate_file(
    path: Path, mapping: ImportMapping, *, now: datetime, progress: Callable[[ImportProgress], None] | None = None,
) -> ValidationReport:
    """Check every row without touching the database; the report lists what is wrong where."""
    report = ValidationReport()
    try:
        for _ in _checked_rows(path, mapping, now, report, progress):
            pass
    except ImportRejected as problem:
        report.add(RowError(0, "", str(problem)))
    return report


def unknown_values(path: Path, mapping: ImportMapping, field_name: str, limit: int = 30) -> list[str]:
    """The distinct words in the file's `field_name` column (source, stage or outcome) that neither the
    value map nor our own names explain, in order of first appearance: what the user must map."""
    fmt = read_csv_format(path)
    labels = {"source": _SOURCE_LABELS, "stage": _STAGE_LABELS, "outcome": _OUTCOME_LABELS}[field_name]
    indexes = [i for i, h in enumerate(fmt.headers) if mapping.field_of(h) == field_name]
    if not indexes:
        return []
    found: dict[str, str] = {}  # lower case -> first spelling (the value map ignores case)
    for _, cells in _rows(path, fmt):
        cell = cells[indexes[0]].strip() if len(cells) > indexes[0] else ""
        if not cell or cell.lower() in mapping.missing_values or cell.lower() in found:
            continue
        try:
            _choice(cell, field_name, mapping, labels)
        except _Cell:
            found[cell.lower()] = cell
            if len(found) >= limit:
                break
    return list(found.values())


@dataclass(frozen=True)
class PreviewRow:
    row: int
    fields: dict[str, str]  # field label -> value as it will be stored (custom fields as "key: value")
    errors: list[str]


def preview(path: Path, mapping: ImportMapping, *, now: datetime, rows: int = 10) -> list[PreviewRow]:
    """The first rows as they would be stored, each with its problems in words."""
    fmt = read_csv_format(path)
    shown: list[PreviewRow] = []
    labels = {"name": "Name", "email": "Email", "company": "Company", "company_size": "Size", "source": "Source",
              "stage": "Stage", "outcome": "Stage", "deal_value": "Value", "external_id": "External id"}
    for number, cells in _rows(path, fmt):
        if not any(c.strip() for c in cells):
            continue
        record, errors = _check_row(number, cells, fmt.headers, mapping, now)
        # A row with problems shows its cells as typed, so the user sees what to fix.
        fields = {labels[mapping.field_of(h)]: c.strip() for h, c in zip(fmt.headers, cells)
                  if mapping.field_of(h) in labels and c.strip()}
        fields["Custom fields"] = ", ".join(f"{h}: {c.strip()}" for h, c in zip(fmt.headers, cells)
                                            if mapping.field_of(h) == CUSTOM and c.strip())
        if record is not None:
            fields = {
                "Name": record.name or mapping.name_template.format(row=number),
                "Email": record.email or "",
                "Company": record.company or "",
                "Size": "" if record.company_size is None else str(record.company_size),
                "Source": Source(record.source or mapping.defaults["source"]).label,
                "Stage": Stage(record.stage or mapping.defaults.get("stage") or "new").label,
                "Value": "" if record.deal_value is None else f"{record.deal_value:,.2f}",
                "External id": record.external_id or "",
                "Custom fields": ", ".join(f"{k}: {v}" for k, v in record.custom_fields.items()),
            }
        shown.append(PreviewRow(number, fields, [f"{e.column + ': ' if e.column else ''}{e.message}" for e in errors]))
        if len(shown) >= rows:
            break
    return shown


# --- Writing ------------------------------------------------------------------------------------

_TEMP_COLUMNS = (
    "row_no int, external_id text, name text, email text, phone text, title text, company text, "
    "company_size int, source text, stage text, deal_value numeric(12,2), created_at timestamptz, "
    "closed_at timestamptz, custom_fields jsonb, score int, tier text, reasons jsonb, valid_until timestamptz, "
    "score_at_close int, lead_id int, is_new boolean NOT NULL DEFAULT false"
)
_COPY_COLUMNS = (
    "row_no", "external_id", "name", "email", "phone", "title", "company", "company_size", "source", "stage",
    "deal_value", "created_at", "closed_at", "custom_fields", "score", "tier", "reasons", "valid_until",
    "score_at_close",
)


SCORE_BATCH = 2_000


def _spool_rows(
    records: Iterator[LeadRecord], engine: ScoringEngine, now: datetime, spool, defaults: dict[str, str],
) -> int:
    """Write each record as a CSV line for COPY, with the score a new lead gets (no activities yet).

    Rows are scored in batches (a model scores a batch ~30x faster than one lead at a time). An
    imported lead has no activities, so nothing in its facts ages: its score at close is the score
    it gets now, computed once."""
    writer = csv.writer(spool)
    count = 0
    batch: list[LeadRecord] = []

    def flush() -> None:
        facts = [
            LeadFacts(company_size=r.company_size, source=r.source or defaults.get("source"),
                      custom_fields=r.custom_fields)
            for r in batch
        ]
        for r, result in zip(batch, score_many(engine, facts, now)):
            closed = (r.stage or defaults.get("stage")) in ("won", "lost")
            writer.writerow((
                r.row, r.external_id, r.name, r.email, r.phone, r.title, r.company, r.company_size, r.source,
                r.stage, r.deal_value, r.created_at.isoformat() if r.created_at else None,
                r.closed_at.isoformat() if r.closed_at else None,
                json.dumps(r.custom_fields, ensure_ascii=False), result.score, result.tier.value,
                json.dumps([x.as_dict() for x in result.reasons], ensure_ascii=False),
                result.valid_until.isoformat() if result.valid_until else None,
                result.score if closed else None,
            ))
        batch.clear()

    for record in records:
        batch.append(record)
        count += 1
        if len(batch) >= SCORE_BATCH:
            flush()
    if batch:
        flush()
    return count


def _write(session: Session, spool, now: datetime, mapping: ImportMapping,
           say: Callable[[str, int], None]) -> tuple[list[int], list[int], int]:
    """COPY, match, insert, update, stage changes. Returns (ids created, ids updated, matched but unchanged)."""
    cursor = session.connection().connection.cursor()
    cursor.execute("DROP TABLE IF EXISTS import_rows")
    cursor.execute(f"CREATE TEMP TABLE import_rows ({_TEMP_COLUMNS}) ON COMMIT DROP")
    spool.seek(0)
    cursor.copy_expert(f"COPY import_rows ({', '.join(_COPY_COLUMNS)}) FROM STDIN WITH (FORMAT csv)", spool)
    cursor.execute("CREATE INDEX ON import_rows (row_no)")
    cursor.execute("ANALYZE import_rows")
    say("Matching existing leads", 0)
    # Match: the external id first, else the email. One row matching two different leads is refused.
    cursor.execute(
        """
        SELECT t.row_no, by_id.id, by_email.id
          FROM import_rows t
          JOIN leads by_id ON by_id.external_id = t.external_id
          JOIN leads by_email ON lower(by_email.email) = lower(t.email)
         WHERE by_id.id <> by_email.id
         ORDER BY t.row_no LIMIT 5
        """
    )
    clashes = cursor.fetchall()
    if clashes:
        rows = ", ".join(str(r[0]) for r in clashes)
        raise ImportRejected(f"Row {rows}: the external id belongs to one stored lead and the email to another "
                             "(lead ids " + ", ".join(f"{r[1]} and {r[2]}" for r in clashes) + "). Fix the file or "
                             "the leads, then import again.")
    # Joins rather than a lookup per row: on a large file the planner hashes both sides.
    cursor.execute("UPDATE import_rows t SET lead_id = l.id FROM leads l WHERE l.external_id = t.external_id")
    cursor.execute(
        "UPDATE import_rows t SET lead_id = l.id FROM leads l "
        "WHERE t.lead_id IS NULL AND t.email IS NOT NULL AND lower(l.email) = lower(t.email)"
    )
    cursor.execute(
        """
        SELECT lead_id, array_agg(row_no ORDER BY row_no) FROM import_rows
         WHERE lead_id IS NOT NULL GROUP BY lead_id HAVING count(*) > 1 ORDER BY min(row_no) LIMIT 5
        """
    )
    twice = cursor.fetchall()
    if twice:
        raise ImportRejected("; ".join(f"Rows {', '.join(map(str, rows))} are all stored lead {lead_id} (one by its "
                                       "external id, another by its email)" for lead_id, rows in twice)
                             + ". A lead appears once per file.")
    # New leads get their ids in file order, so "newest id" means "later in the file"; the mapping's
    # defaults fill their missing source and stage.
    cursor.execute(
        """
        UPDATE import_rows t SET lead_id = n.id, is_new = true, source = coalesce(t.source, %(source)s),
                                 stage = coalesce(t.stage, %(stage)s, 'new')
          FROM (SELECT row_no, nextval(pg_get_serial_sequence('leads', 'id')) AS id
                  FROM (SELECT row_no FROM import_rows WHERE lead_id IS NULL ORDER BY row_no) o) n
         WHERE n.row_no = t.row_no
        """,
        {"source": mapping.defaults.get("source"), "stage": mapping.defaults.get("stage")},
    )
    cursor.execute(
        """
        INSERT INTO leads (id, external_id, name, email, phone, title, company, company_size, source, stage,
                           deal_value, created_at, updated_at, stage_entered_at, closed_at, score, tier,
                           score_reasons, scored_at, score_valid_until, score_at_close, custom_fields)
        SELECT lead_id, external_id, coalesce(name, replace(%(template)s, '{row}', row_no::text)), email, phone,
               title, company, company_size, source, stage, coalesce(deal_value, 0),
               coalesce(created_at, %(now)s), %(now)s, coalesce(closed_at, created_at, %(now)s),
               CASE WHEN stage IN ('won', 'lost') THEN coalesce(closed_at, created_at, %(now)s) END,
               score, tier, reasons, %(now)s, valid_until, score_at_close, custom_fields
          FROM import_rows WHERE is_new ORDER BY row_no
        """,
        {"now": now, "template": mapping.name_template},
    )
    say("New leads stored", cursor.rowcount)
    # Their history: created in "new", then (if elsewhere) moved to where they are.
    cursor.execute(
        """
        INSERT INTO stage_changes (lead_id, from_stage, to_stage, changed_at)
        SELECT lead_id, NULL, 'new', coalesce(created_at, %(now)s) FROM import_rows WHERE is_new
        UNION ALL
        SELECT lead_id, 'new', stage, coalesce(closed_at, created_at, %(now)s)
          FROM import_rows WHERE is_new AND stage <> 'new'
        """,
        {"now": now},
    )
    # Matched leads: a stage the file states and the lead is not in is a move, recorded first.
    cursor.execute(
        """
        INSERT INTO stage_changes (lead_id, from_stage, to_stage, changed_at)
        SELECT l.id, l.stage, t.stage, CASE WHEN t.stage IN ('won', 'lost') THEN coalesce(t.closed_at, %(now)s)
                                            ELSE %(now)s END
          FROM import_rows t JOIN leads l ON l.id = t.lead_id
         WHERE NOT t.is_new AND t.stage IS NOT NULL AND t.stage <> l.stage
        """,
        {"now": now},
    )
    # A blank cell (NULL here) keeps the stored value; a value overwrites it.
    columns = ("external_id", "name", "email", "phone", "title", "company", "company_size", "source",
               "deal_value", "created_at")
    assignments = [f"{c} = coalesce(t.{c}, l.{c})" for c in columns]
    differs = [f"(t.{c} IS NOT NULL AND t.{c} IS DISTINCT FROM l.{c})" for c in columns]
    moved = "(t.stage IS NOT NULL AND t.stage <> l.stage)"
    assignments += [
        "custom_fields = l.custom_fields || t.custom_fields",
        f"stage = CASE WHEN {moved} THEN t.stage ELSE l.stage END",
        f"stage_entered_at = CASE WHEN {moved} THEN CASE WHEN t.stage IN ('won', 'lost') "
        "THEN coalesce(t.closed_at, %(now)s) ELSE %(now)s END ELSE l.stage_entered_at END",
        f"closed_at = CASE WHEN {moved} AND t.stage IN ('won', 'lost') THEN coalesce(t.closed_at, %(now)s) "
        f"WHEN {moved} THEN NULL WHEN l.stage IN ('won', 'lost') THEN coalesce(t.closed_at, l.closed_at) "
        "ELSE l.closed_at END",
        f"score_at_close = CASE WHEN {moved} OR (t.closed_at IS DISTINCT FROM l.closed_at AND t.closed_at IS NOT NULL"
        " AND l.stage IN ('won', 'lost')) THEN NULL ELSE l.score_at_close END",
        "version = l.version + 1",
        "updated_at = %(now)s",
    ]
    differs += [
        moved,
        "NOT (l.custom_fields @> t.custom_fields)",
        "(l.stage IN ('won', 'lost') AND t.closed_at IS NOT NULL AND t.closed_at IS DISTINCT FROM l.closed_at)",
    ]
    cursor.execute(
        f"""
        UPDATE leads l SET {', '.join(assignments)}
          FROM import_rows t
         WHERE l.id = t.lead_id AND NOT t.is_new AND ({' OR '.join(differs)})
        RETURNING l.id
        """,
        {"now": now},
    )
    updated_ids = [row[0] for row in cursor.fetchall()]
    cursor.execute("SELECT lead_id FROM import_rows WHERE is_new ORDER BY row_no")
    new_ids = [row[0] for row in cursor.fetchall()]
    cursor.execute("SELECT count(*) FROM import_rows WHERE NOT is_new")
    matched = cursor.fetchone()[0]
    say("Matched leads updated", len(updated_ids))
    return new_ids, updated_ids, matched - len(updated_ids)


def import_file(
    session: Session,
    path: Path,
    mapping: ImportMapping,
    *,
    now: datetime,
    dry_run: bool = False,
    progress: Callable[[ImportProgress], None] | None = None,
    engine: ScoringEngine | None = None,
    actor_id: int | None = None,
) -> ImportSummary:
    """Import every row of the file or none (recorded in the audit log as `actor_id`'s import): validate all rows, then write and score them in one
    transaction and commit (roll back with `dry_run`, which still reports what would happen).

    Raises ImportRejected (with the validation report) when any row is wrong, and for rows that clash
    with stored leads; the database is then exactly as it was. Only a manager imports (Forbidden for a
    rep: under their row security the rows could not be matched to the leads they cannot see); the
    command line runs as the tables' owner, acting for nobody in particular.
    """
    actor = acting_user(session, actor_id)
    if actor is not None:
        require_role(actor, Role.MANAGER, "import leads")
    started = perf_counter()
    path = Path(path)
    engine = engine or active_engine(session)
    report = ValidationReport()
    rows_read = 0

    def say(message: str, written: int, phase: str = "writing") -> None:
        if progress:
            progress(ImportProgress(phase, rows_read, written, message))

    with tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as spool:
        # Pass 1, streamed: check every row; valid ones go to a spool file ready for COPY.
        count = _spool_rows(_checked_rows(path, mapping, now, report, progress), engine, now, spool, mapping.defaults)
        rows_read = report.rows
        if not report.ok:
            raise ImportRejected(report.summary() if report.rows else
                                 (report.errors[0].message if report.errors else "The file has no data rows."),
                                 report)
        try:
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _IMPORT_LOCK_KEY})
            say(f"Writing {count:,} rows", 0)
            new_ids, updated_ids, unchanged = _write(
                session, spool, now, mapping,
                lambda message, n: say(message, n),
            )
            created = len(new_ids)
            say(f"Scoring {len(updated_ids):,} updated leads", created + len(updated_ids), "scoring")
            rescore_leads_in_transaction(session, updated_ids, now, engine)
            say("Assessing deal risk", created + len(updated_ids), "scoring")
            reassess_risk_in_transaction(session, new_ids + updated_ids, now)
            audit.record(session, now=now, actor_id=actor.id if actor is not None else None, action="leads_imported",
                         entity="import",
                         new={"file": path.name, "rows": report.rows, "created": created,
                              "updated": len(updated_ids), "unchanged": unchanged})
            if dry_run:
                session.rollback()
            else:
                session.commit()
        except IntegrityError as error:
            session.rollback()
            raise ImportRejected(f"The database refused the import, nothing was stored: {error.orig}".strip()) from None
        except BaseException:
            session.rollback()
            raise
    summary = ImportSummary(rows=report.rows, created=created, updated=len(updated_ids),
                            skipped=unchanged + report.blank_rows, seconds=perf_counter() - started,
                            dry_run=dry_run)
    say(summary.describe(), created + len(updated_ids), "done")
    return summary

