"""Checking every row against the mapping, without the database: the validation report (row, column,
problem in words), the words still to map, and the preview of the first rows as they will be stored."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from crm_app.domain import EMAIL_RE, Source, Stage
from crm_app.services.importing.cells import (
    _OUTCOME_LABELS,
    _SOURCE_LABELS,
    _STAGE_LABELS,
    _Cell,
    _choice,
    _parse_date,
    _parse_money,
    _parse_whole_number,
    custom_value,
)
from crm_app.services.importing.mapping import CHOICES, CUSTOM, FIELDS, IGNORE, ImportMapping
from crm_app.services.importing.read import ImportRejected, _rows, read_csv_format

MAX_REPORTED = 200  # errors kept for the report; all are counted
MAX_LENGTHS = {"name": 200, "email": 254, "phone": 40, "title": 120, "company": 200, "external_id": 120}
MAX_CUSTOM_KEY = 100


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


