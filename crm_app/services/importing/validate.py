"""Checking every row against the mapping, without the database: the validation report (row, column,
problem in words; and notes that do not stop the import), the words still to map, and the preview of
the first rows as they will be stored.

How a column is read is decided once per file, from its profile (read.py): a number column's decimal
separator, a date column's day/month order, whether a custom column is a column of numbers. Every row
is then read the same way (`RowChecker`).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from crm_app.domain import EMAIL_RE, Source, Stage
from crm_app.scoring.features import NUMERIC_SHARE
from crm_app.services.importing.cells import (
    AUTO,
    LABELS,
    POINT,
    UNSTORABLE,
    CellProblem,
    NumberReading,
    custom_value,
    decide_date_order,
    decide_decimal,
    is_blank,
    known_word,
    read_amount,
    read_date,
    read_employees,
    trim_cell,
    unknown_word_message,
)
from crm_app.services.importing.keys import FirstRows
from crm_app.services.importing.mapping import CHOICES, CUSTOM, FIELDS, IGNORE, SOURCE_DETAIL, ImportMapping
from crm_app.services.importing.read import TEXT, FileProfile, ImportRejected, _rows, profile_file

MAX_REPORTED = 200  # errors kept for the report; all are counted
MAX_LENGTHS = {"name": 200, "email": 254, "phone": 40, "title": 120, "company": 200, "external_id": 120}
MAX_CUSTOM_KEY = 100
MOSTLY_NUMBERS = 0.5  # a custom column with at least this share of numbers is a column of numbers
MAX_WORDS_LISTED = 50  # unknown words reported one by one; the rest are counted
CELLS_KEPT = 5_000  # distinct cells of a field whose reading is kept (RowChecker.read_cells)


def _remembered(cache: dict[str, Any], cell: str, read: Callable[[str], Any]) -> Any:
    """`read(cell)`, remembered in `cache` while it holds fewer than CELLS_KEPT cells (a column repeats
    few values: sizes, amounts, sources, stages; a cell past the bound is read anew)."""
    value = cache.get(cell, _UNREAD)
    if value is _UNREAD:
        value = read(cell)
        if len(cache) < CELLS_KEPT:
            cache[cell] = value
    return value


@dataclass(frozen=True)
class RowError:
    row: int  # 0: the file or the mapping as a whole
    column: str
    message: str


@dataclass
class ValidationReport:
    rows: int = 0  # data rows read (blank lines not counted)
    valid_rows: int = 0
    error_count: int = 0  # problems: one per bad cell, one per word the mapping does not know
    errors: list[RowError] = field(default_factory=list)  # the first MAX_REPORTED (+ the unknown words)
    blank_rows: int = 0
    # What the import will do that the user may not expect; it does not stop the import.
    warnings: list[RowError] = field(default_factory=list)
    dated_rows: int = 0  # rows with a created or closed date (or a time from the row clock)

    @property
    def ok(self) -> bool:
        return self.error_count == 0 and self.rows > 0

    @property
    def has_dates(self) -> bool:
        return self.dated_rows > 0

    def add(self, error: RowError) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(error)

    def summary(self) -> str:
        count = len(self.warnings)
        notes = f" {count} note{'s' if count != 1 else ''} below." if count else ""
        if self.rows == 0 and self.error_count:
            more = self.error_count - 1
            return ("Fix the mapping first: " + self.errors[0].message
                    + (f" ({more} more problem{'s' if more != 1 else ''} below.)" if more else ""))
        if self.rows == 0:
            return "The file has no data rows."
        if self.ok:
            return f"All {self.rows:,} rows are valid.{notes}"
        bad_rows = self.rows - self.valid_rows
        shown = "" if self.error_count <= len(self.errors) else f" (the first {len(self.errors)} are listed)"
        return (f"{bad_rows:,} of {self.rows:,} rows have problems: {self.error_count:,} "
                f"problem{'s' if self.error_count != 1 else ''}{shown}. Nothing is imported until every row "
                f"is valid.{notes}")


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
    dated: bool = True  # the row gave a created or closed date (or the row clock did)


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
        column = used["external_id"]
        problems.append(RowError(0, column, f'"{column}" is the external id column and row numbers are ids '
                                            "too: use one or the other (untick row-number ids, or choose "
                                            "another field for the column)."))
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


@dataclass
class _Word:
    """A word of the file's source/stage/outcome column that the mapping does not know."""

    spelling: str
    column: str
    rows: int = 0
    first_row: int = 0


_UNREAD = object()


class RowChecker:
    """Reads the rows of one file with one mapping. How each column is read (its decimal separator,
    its date order, whether a custom column holds numbers) is decided here once, from the file's
    profile; what the rows then show about the columns is collected for the report's notes."""

    def __init__(self, profile: FileProfile, mapping: ImportMapping, now: datetime):
        self.mapping, self.now = mapping, now
        self.headers = profile.fmt.headers
        self.targets = tuple(mapping.field_of(h) for h in self.headers)
        self.missing = frozenset(mapping.missing_values)
        self.problems: list[RowError] = []  # about a column as a whole; the rows cannot be read before
        self.notes: list[RowError] = []
        self.decimals: dict[str, str | None] = {}  # header -> decimal separator (None: a column of text)
        self.date_formats: dict[str, str] = {}
        for header, target in zip(self.headers, self.targets):
            column = profile.columns[header]
            if target in ("deal_value", "company_size", CUSTOM):
                numbers = sum(n for shape, n in column.number_shapes.items() if shape != TEXT)
                words = column.number_shapes.get(TEXT, 0) - column.placeholder_rows(self.missing)
                if target == CUSTOM and numbers < MOSTLY_NUMBERS * max(1, numbers + words):
                    self.decimals[header] = None
                    continue
                reading: NumberReading = decide_decimal(header, column.number_shapes, column.number_examples,
                                                        mapping.decimal_separators.get(header))
                self.decimals[header] = reading.decimal
                if reading.note:
                    self.notes.append(RowError(0, header, reading.note))
        # A file writes all its dates one way: "31/01/2026" in one date column settles the others too.
        date_headers = [h for h, t in zip(self.headers, self.targets) if t in ("created_at", "closed_at")]
        if date_headers:
            shapes: Counter[str] = Counter()
            examples: dict[str, str] = {}
            for header in date_headers:
                shapes.update(profile.columns[header].date_shapes)
                for shape, example in profile.columns[header].date_examples.items():
                    examples.setdefault(shape, example)
            label = '" and "'.join(date_headers)  # quoted around it by the message: "Created" and "Closed"
            order, problem = decide_date_order(label, shapes, examples, mapping.date_format)
            self.date_formats = dict.fromkeys(date_headers, order)
            if problem:
                self.problems.append(RowError(0, date_headers[0], problem))
        self.has_detail_column = any(h[:MAX_CUSTOM_KEY] == SOURCE_DETAIL and t == CUSTOM
                                     for h, t in zip(self.headers, self.targets))
        self.custom_values: dict[str, dict[str, Any]] = {}  # header -> cell -> custom value, as read
        self.unknown: dict[tuple[str, str], _Word] = {}
        self.row_words: list[tuple[str, str]] = []
        self.defaulted: Counter[str] = Counter()
        self.spelling: dict[str, str] = {}  # a word in lower case -> its first spelling
        self.numbers: Counter[str] = Counter()  # custom column of numbers -> cells that are numbers
        self.not_numbers: dict[str, Counter[str]] = {}  # ... -> its other values and their rows
        # field -> cell -> (value, problem) as read, and field -> cell -> our word: a column repeats few
        # values (sizes, amounts, sources, stages), each read once rather than once per row (a third of
        # the checking's time at 100,000 rows). Bounded per field; a cell past the bound is read anew.
        self.read_cells: dict[str, dict[str, tuple[Any, str | None]]] = {}
        self.known_words: dict[str, dict[str, str | None]] = {}

    def check(self, number: int, cells: list[str]) -> tuple[LeadRecord | None, list[RowError]]:
        """One row as a record, or its problems (an unknown word counts, and is reported once per word
        by `finish`)."""
        mapping, headers = self.mapping, self.headers
        self.row_words = []  # this row's unknown words: (field, word)
        if len(cells) != len(headers):
            return None, [RowError(number, "", f"The row has {len(cells)} cells but the header names {len(headers)} "
                                               "columns (a missing or extra delimiter, or an unclosed quote?).")]
        errors: list[RowError] = []
        values: dict[str, str] = {}
        columns: dict[str, str] = {}
        custom: dict[str, Any] = {}
        for header, target, raw in zip(headers, self.targets, cells):
            if target == IGNORE or is_blank(raw):
                continue
            if UNSTORABLE in raw:
                errors.append(RowError(number, header, "The cell holds a NUL character (a zero byte), which "
                                                       "cannot be stored: remove it from the file."))
                continue
            cell = trim_cell(raw)
            if cell.lower() in self.missing:
                continue
            if target == CUSTOM:
                decimal = self.decimals.get(header)
                # Most columns repeat a few values: read each once.
                value = _remembered(self.custom_values.setdefault(header, {}), cell,
                                    lambda c: custom_value(c, decimal))
                if decimal is not None:
                    if isinstance(value, str):
                        others = self.not_numbers.setdefault(header, Counter())
                        if value in others or len(others) < 1000:
                            others[value] += 1
                    else:
                        self.numbers[header] += 1
                custom[header[:MAX_CUSTOM_KEY]] = value
            else:
                values[target], columns[target] = cell, header
        unknown = False

        def parsed(field_name: str, parse: Callable[[str], Any]) -> Any:
            if field_name not in values:
                return None
            def read_cell(cell: str) -> tuple[Any, str | None]:
                try:
                    return parse(cell), None
                except CellProblem as problem:
                    return None, str(problem)

            read = _remembered(self.read_cells.setdefault(field_name, {}), values[field_name], read_cell)
            if read[1] is not None:
                errors.append(RowError(number, columns[field_name], read[1]))
            return read[0]

        def word(field_name: str) -> str | None:
            nonlocal unknown
            if field_name not in values:
                return None
            cell = values[field_name]
            ours = _remembered(self.known_words.setdefault(field_name, {}), cell,
                               lambda c: known_word(c, field_name, mapping))
            if ours is None and field_name == "source" and "source" in mapping.defaults:
                ours = mapping.defaults["source"]
                self.defaulted[self.spelling.setdefault(cell.lower(), cell)] += 1
            if ours is None:
                found = self.unknown.setdefault((field_name, cell.lower()), _Word(cell, columns[field_name]))
                found.rows += 1
                found.first_row = found.first_row or number
                self.row_words.append((field_name, cell))
                unknown = True
            return ours

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
        def decimal(field_name: str) -> str:
            return self.decimals.get(columns[field_name]) or POINT

        company_size = parsed("company_size", lambda v: read_employees(v, decimal("company_size")))
        deal_value = parsed("deal_value", lambda v: read_amount(v, decimal("deal_value")))
        source = word("source")
        if source is not None and not self.has_detail_column:
            typed = values["source"]
            if typed.lower() not in (source, LABELS["source"][source].lower()):
                custom[SOURCE_DETAIL] = typed  # the file's own word, kept: "Google" as well as Paid search
        stage = word("stage")
        outcome = word("outcome")
        created_at = parsed("created_at", lambda v: read_date(v, self._date_format("created_at", columns)))
        closed_at = parsed("closed_at", lambda v: read_date(v, self._date_format("closed_at", columns)))

        if outcome in ("won", "lost"):
            if stage in ("won", "lost") and stage != outcome:
                errors.append(RowError(number, columns["outcome"],
                                       f"The outcome says {outcome} but the stage says {stage}."))
            stage = outcome
        # Defaults are for new leads only (applied when inserting): a re-import of a file without a stage
        # must not move stored leads back to the default one.
        if source is None and "source" not in values and "source" not in mapping.defaults:
            errors.append(RowError(number, columns.get("source", ""),
                                   "No source: fill it in or choose a default source."))
        effective_stage = stage or mapping.defaults.get("stage")
        dated = created_at is not None or closed_at is not None
        if mapping.row_clock_first is not None:
            clock = mapping.row_clock_first + (number - 1) * mapping.row_clock_every
            created_at = created_at or clock
            if effective_stage in ("won", "lost"):
                closed_at = closed_at or clock
            dated = True
        if effective_stage not in ("won", "lost"):
            # An expected close date of an open deal is not a close, and is usually ahead: dropped
            # before the check below, which is for dates that happened.
            closed_at = None
        for moment, field_name in ((created_at, "created_at"), (closed_at, "closed_at")):
            if moment is not None and moment > self.now:
                errors.append(RowError(number, columns.get(field_name, ""),
                                       f"{FIELDS[field_name]} {moment:%Y-%m-%d} is in the future."))
        if effective_stage in ("won", "lost") and created_at and closed_at and closed_at < created_at:
            errors.append(RowError(number, columns.get("closed_at", ""),
                                   f"Closed {closed_at:%Y-%m-%d}, before it was created ({created_at:%Y-%m-%d})."))
        external_id = values.get("external_id")
        if external_id is None and mapping.row_id_prefix:
            external_id = f"{mapping.row_id_prefix}{number}"
        if external_id is None and email is None:
            errors.append(RowError(number, "", "No email and no external id: a later re-import could not find this "
                                               "lead again. Map an id column, or use row numbers as ids."))
        if errors or unknown:
            return None, errors
        return LeadRecord(
            row=number, external_id=external_id, name=name, email=email, phone=values.get("phone"),
            title=values.get("title"), company=values.get("company"), company_size=company_size, source=source,
            stage=stage, deal_value=deal_value, created_at=created_at, closed_at=closed_at, custom_fields=custom,
            dated=dated,
        ), []

    def _date_format(self, field_name: str, columns: dict[str, str]) -> str:
        order = self.date_formats.get(columns[field_name], AUTO)
        return "iso" if order == AUTO else order

    def word_errors(self) -> list[RowError]:
        """One error per unknown word, most frequent first, with its rows."""
        words = sorted(self.unknown.items(), key=lambda item: -item[1].rows)
        found = [RowError(w.first_row, w.column,
                          unknown_word_message(field_name, w.spelling, w.rows, w.first_row))
                 for (field_name, _), w in words[:MAX_WORDS_LISTED]]
        rest = words[MAX_WORDS_LISTED:]
        if rest:
            found.append(RowError(0, rest[0][1].column, f"And {len(rest):,} more unknown words in "
                                                        f"{sum(w.rows for _, w in rest):,} rows."))
        return found

    def finish(self, report: ValidationReport) -> None:
        """Add what the rows showed: the unknown words (errors, first in the list) and the notes."""
        word_errors = self.word_errors()
        report.errors[:0] = word_errors
        report.error_count += len(self.unknown)
        report.warnings.extend(self.notes)
        for header, others in self.not_numbers.items():
            numbers = self.numbers[header]
            total = numbers + sum(others.values())
            if total and numbers < NUMERIC_SHARE * total:
                shown = ", ".join(f'"{v}" ({n:,} row{"s" if n != 1 else ""})'
                                  for v, n in others.most_common(5))
                more = len(others) - 5
                report.warnings.append(RowError(0, header, (
                    f'"{header}" is {numbers / total:.0%} numbers; the scoring model takes a column as '
                    f"numbers only when at least {NUMERIC_SHARE:.0%} of its values are, else as categories. "
                    f"Not numbers: {shown}"
                    + (f" and {more:,} more" if more > 0 else "")
                    + ". Mark placeholder words as missing values, or correct them in the file.")))
        if self.defaulted:
            default = Source(self.mapping.defaults["source"]).label
            shown = ", ".join(f'"{v}" ({n:,})' for v, n in self.defaulted.most_common(8))
            more = len(self.defaulted) - 8
            column = next((h for h, t in zip(self.headers, self.targets) if t == "source"), "")
            report.warnings.append(RowError(0, column, (
                f"{_words_are(len(self.defaulted))} the default source {default} (each lead keeps its word "
                f"as the custom field {SOURCE_DETAIL}): {shown}"
                + (f" and {more:,} more." if more > 0 else "."))))


def _words_are(count: int) -> str:
    if count == 1:
        return "1 source word is not ours and takes"
    return f"{count:,} source words are not ours and take"


def _checked_rows(
    path: Path, mapping: ImportMapping, now: datetime, report: ValidationReport,
    progress: Callable[[ImportProgress], None] | None = None, every: int = 5000, *, duplicates: bool = True,
    on_invalid: Callable[[int, list[str], list[str]], None] | None = None,
) -> Iterator[LeadRecord]:
    """Stream valid records while adding every problem to `report` (also duplicates within the file,
    unless `duplicates` is False: the import finds them in SQL after COPY, in bounded memory).
    `on_invalid(row, cells, problems)` hears of every row left out, with its problems in words."""
    profile = profile_file(path)
    fmt = profile.fmt
    for problem in check_mapping(mapping, fmt.headers):
        report.add(problem)
    if report.error_count:
        return
    has_source = any(mapping.field_of(h) == "source" for h in fmt.headers)
    if not has_source and "source" not in mapping.defaults:
        report.add(RowError(0, "source", "No column is the source and no default source is chosen: every lead "
                                         "needs a source. Choose a default (e.g. cold_outreach)."))
        return
    checker = RowChecker(profile, mapping, now)
    for problem in checker.problems:
        report.add(problem)
    if report.error_count:
        return
    # The first row of each email and external id, compactly (a dict of a million emails was ~150 MB).
    first_row_of = {"email": FirstRows(), "external id": FirstRows()}
    email_column = next((h for h in fmt.headers if mapping.field_of(h) == "email"), "")
    id_column = next((h for h in fmt.headers if mapping.field_of(h) == "external_id"), "")
    for number, cells in _rows(path, fmt):
        if all(is_blank(c) for c in cells):
            report.blank_rows += 1
            continue
        report.rows += 1
        record, errors = checker.check(number, cells)
        if record is not None and duplicates:
            for kind, key, column in (("email", (record.email or "").lower(), email_column),
                                      ("external id", record.external_id or "", id_column)):
                if key:
                    earlier = first_row_of[kind].first(key, number)
                    if earlier != number:
                        errors.append(RowError(number, column, f"Same {kind} as row {earlier}: a lead appears once "
                                                               "per file."))
        if progress and report.rows % every == 0:
            progress(ImportProgress("reading", report.rows))
        if on_invalid is not None and (errors or record is None):
            on_invalid(number, cells, [f"{e.column + ': ' if e.column else ''}{e.message}" for e in errors]
                       + [unknown_word_message(f, w) for f, w in checker.row_words])
        if errors:
            for error in errors:
                report.add(error)
            continue
        if record is None:
            continue  # an unknown word: reported once per word at the end
        report.valid_rows += 1
        report.dated_rows += record.dated
        yield record
    checker.finish(report)
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


PROBLEMS_COLUMN = "Problems (not imported)"
ROW_COLUMN = "Row in file"


def write_skipped_rows(path: Path, mapping: ImportMapping, target: Path, *, now: datetime) -> int:
    """Write every row that cannot be imported, as it is in the file, with its row number and its
    problems in words (two last columns), to the CSV `target`; return how many. For "import the valid
    rows, skip the rest": the manager corrects these rows and imports them again. Cells are protected
    from spreadsheets as an export is (exporting.neutralise), and read back as typed on import."""
    from crm_app.services.exporting import neutralise

    report = ValidationReport()
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        headers = profile_file(path).fmt.headers
        writer.writerow([neutralise(h) for h in headers] + [ROW_COLUMN, PROBLEMS_COLUMN])

        def skipped(number: int, cells: list[str], problems: list[str]) -> None:
            writer.writerow([neutralise(c) for c in cells] + [number, neutralise("; ".join(problems))])

        for _ in _checked_rows(path, mapping, now, report, on_invalid=skipped):
            pass
    return report.rows - report.valid_rows


# --- The mapping step: words to map, and the preview ---------------------------------------------


def unknown_words(path: Path, mapping: ImportMapping, field_name: str,
                  limit: int = 30) -> list[tuple[str, int]]:
    """The distinct words in the file's `field_name` column (source, stage or outcome) that neither the
    value map, our own names nor the usual CRM words explain, with their rows, most frequent first:
    what the user must map. From the file's profile: no reading of the file."""
    profile = profile_file(path)
    header = next((h for h in profile.fmt.headers if mapping.field_of(h) == field_name), None)
    if header is None:
        return []
    words = profile.columns[header].words(frozenset(mapping.missing_values))
    return [(w, n) for w, n in words if known_word(w, field_name, mapping) is None][:limit]


def unknown_values(path: Path, mapping: ImportMapping, field_name: str, limit: int = 30) -> list[str]:
    """`unknown_words` without their counts."""
    return [w for w, _ in unknown_words(path, mapping, field_name, limit)]


@dataclass(frozen=True)
class PreviewRow:
    row: int
    fields: dict[str, str]  # field label -> value as it will be stored (custom fields as "key: value")
    errors: list[str]
    custom_fields: list[tuple[str, str]] = field(default_factory=list)  # (key, value as stored)


def preview(path: Path, mapping: ImportMapping, *, now: datetime, rows: int = 10) -> list[PreviewRow]:
    """The first rows as they would be stored, each with its problems in words. From the file's
    profile (its first rows, and how each column is read): no reading of the file."""
    profile = profile_file(path)
    fmt = profile.fmt
    checker = RowChecker(profile, mapping, now)
    shown: list[PreviewRow] = []
    labels = {"name": "Name", "email": "Email", "company": "Company", "company_size": "Size", "source": "Source",
              "stage": "Stage", "outcome": "Stage", "deal_value": "Value", "external_id": "External id"}
    for number, cells in profile.sample[:rows]:
        record, errors = checker.check(number, cells)
        problems = [f"{e.column + ': ' if e.column else ''}{e.message}" for e in errors]
        problems += [unknown_word_message(f, w) for f, w in checker.row_words]
        if record is None:
            # A row with problems shows its cells as typed, so the user sees what to fix.
            typed = [(h, trim_cell(c)) for h, c in zip(fmt.headers, cells) if not is_blank(c)]
            fields = {labels[mapping.field_of(h)]: c for h, c in typed if mapping.field_of(h) in labels}
            customs = [(h, c) for h, c in typed if mapping.field_of(h) == CUSTOM]
        else:
            fields = {
                "Name": record.name or mapping.name_template.replace("{row}", str(number)),
                "Email": record.email or "",
                "Company": record.company or "",
                "Size": "" if record.company_size is None else str(record.company_size),
                "Source": Source(record.source or mapping.defaults["source"]).label,
                "Stage": Stage(record.stage or mapping.defaults.get("stage") or "new").label,
                "Value": "" if record.deal_value is None else f"{record.deal_value:,.2f}",
                "External id": record.external_id or "",
            }
            customs = [(k, str(v)) for k, v in record.custom_fields.items()]
        fields["Custom fields"] = ", ".join(f"{k}: {v}" for k, v in customs)
        shown.append(PreviewRow(number, fields, problems, customs))
    return shown



def file_has_dates(path: Path, mapping: ImportMapping) -> bool:
    """Whether a column the mapping reads as the created or closed date has values (or the row clock
    gives times): if not, the manager is asked for the order of the rows. From the file's profile."""
    if mapping.row_clock_first is not None:
        return True
    profile = profile_file(path)
    missing = frozenset(mapping.missing_values)
    return any(mapping.field_of(h) in ("created_at", "closed_at") and c.filled > c.placeholder_rows(missing)
               for h, c in profile.columns.items())
