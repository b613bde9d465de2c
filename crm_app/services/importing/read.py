"""Reading an uploaded CSV: its encoding, delimiter and header row, its rows one by one, and a profile
of every column's values (one pass, kept per file) that the mapping step works from.

The profile is what lets a mapping change answer at once on a large file: the words still to map,
the guesses, how each column writes numbers and dates, and the preview's first rows all come from
it, not from reading the file again. It is kept for the last few files (keyed by path, size and
modification time, so a changed file is read again).
"""

from __future__ import annotations

import codecs
import csv
import io
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from crm_app.services.errors import ServiceError
from crm_app.services.exporting import restore_cell
from crm_app.services.importing.cells import FORMULA_STARTS, UNSTORABLE, date_shape, number_shape
from crm_app.services.importing.keys import AllDifferent

if TYPE_CHECKING:
    from crm_app.services.importing.validate import ValidationReport


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


# Files people upload by mistake, told apart by their first bytes (their "magic number"): renamed to
# .csv they would otherwise be read as Latin-1 text and fail later, far from the cause.
_NOT_CSV = (
    (b"\x1f\x8b", "a gzip-compressed file: unpack it and choose the CSV inside"),
    (b"PK\x03\x04", "a zip archive (or an Excel .xlsx workbook): unpack it, or save the sheet as CSV"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Excel .xls workbook: save the sheet as CSV"),
    (b"%PDF", "a PDF document, not a CSV"),
    (b"BZh", "a bzip2-compressed file: unpack it and choose the CSV inside"),
    (b"\xfd7zXZ\x00", "an xz-compressed file: unpack it and choose the CSV inside"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive: unpack it and choose the CSV inside"),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file: unpack it and choose the CSV inside"),
    (b"\x89PNG", "a PNG image, not a CSV"),
    (b"\xff\xd8\xff", "a JPEG image, not a CSV"),
    (b"\x7fELF", "a program, not a CSV"),
    (b"\xff\xfe", "text saved as UTF-16: save it again as \"CSV UTF-8\""),
    (b"\xfe\xff", "text saved as UTF-16: save it again as \"CSV UTF-8\""),
)
_CONTROL_BYTES = frozenset(range(0x20)) - {0x09, 0x0A, 0x0D} | {0x7F}
BINARY_SHARE = 0.05  # a text file has next to no control bytes; a binary one ~11% (random bytes)
MAX_CELL = csv.field_size_limit()  # 131,072 characters: far more than any lead field holds


def _refuse_binary(path: Path) -> None:
    """ImportRejected for a file that is not text: a known format by its first bytes, or one whose start
    is full of control bytes (a NUL here and there is a cell's problem, reported with its row)."""
    with path.open("rb") as handle:
        head = handle.read(8192)
    for magic, what in _NOT_CSV:
        if head.startswith(magic):
            raise ImportRejected(f"This is {what}.")
    control = sum(1 for byte in head if byte in _CONTROL_BYTES)
    if head and control > BINARY_SHARE * len(head) and control > 2:
        raise ImportRejected(f"This is not a CSV file: {control:,} of its first {len(head):,} bytes are not "
                             "text (a binary file, or one compressed or encrypted). Export the leads as CSV.")


def _csv_problem(error: csv.Error) -> str:
    """The csv module's complaint in words a user can act on."""
    text = str(error)
    if "field larger than field limit" in text:
        return (f"a cell is longer than {MAX_CELL:,} characters, which no lead field holds: is a quote "
                "(\") left open, making the rest of the file one cell?")
    if "new-line character seen in unquoted field" in text:
        return "a line break (CR) inside a cell that is not in quotes: is this a CSV file?"
    return f"it cannot be read as CSV ({text})"


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
    if not path.is_file():
        raise ImportRejected(f"There is no file {path}.")
    if path.stat().st_size == 0:
        raise ImportRejected("The file is empty.")
    _refuse_binary(path)
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
    try:
        headers = next(csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter), [])
    except csv.Error as error:
        raise ImportRejected(f"The header line cannot be read: {_csv_problem(error)}") from None
    # A header our export protected ("'=evil header") names the custom field it was exported from.
    headers = [restore_cell(h.strip()) for h in headers]
    bad = next((i for i, h in enumerate(headers, start=1) if UNSTORABLE in h), None)
    if bad is not None:
        raise ImportRejected(f"Column {bad}'s name in the header line holds a NUL character (a zero byte), "
                             "which cannot be stored: is this a CSV file?")
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
    """(row number, cells) for every data row, streamed. Blank lines are yielded with no cells.

    A line the csv module cannot read (a cell past MAX_CELL characters, a stray CR) raises
    ImportRejected naming the row and the line: the csv module's own error would end the import with
    a traceback."""
    with Path(path).open(encoding=fmt.encoding, newline="") as handle:
        reader = csv.reader(handle, delimiter=fmt.delimiter)
        number, header_read = 0, False
        try:
            next(reader, None)
            header_read = True
            for number, cells in enumerate(reader, start=1):
                yield number, cells
        except csv.Error as error:
            where = (f"Row {number + 1:,} (line {reader.line_num:,} of the file)" if header_read
                     else "The header")
            raise ImportRejected(f"{where} cannot be read: {_csv_problem(error)}") from None



# --- The profile of a file ----------------------------------------------------------------------

MAX_DISTINCT = 20_000  # distinct values counted per column; a column with more is not a list of words
SAMPLE_ROWS = 10  # rows kept for the preview
TEXT = "text"  # the shape of a value that is not a number (or not a date)


@dataclass
class ColumnProfile:
    """What one column holds, over every row of the file."""

    header: str
    filled: int = 0  # cells that are not blank
    counts: Counter[str] = field(default_factory=Counter)  # value (as typed, less spaces) -> rows
    complete: bool = True  # `counts` has every distinct value (else the first MAX_DISTINCT)
    unique: bool = True  # no value appears twice
    number_shapes: Counter[str] = field(default_factory=Counter)  # cells.number_shape (or TEXT) -> rows
    number_examples: dict[str, str] = field(default_factory=dict)  # a value of each shape
    date_shapes: Counter[str] = field(default_factory=Counter)
    date_examples: dict[str, str] = field(default_factory=dict)

    def words(self, missing: tuple[str, ...] | frozenset[str] = ()) -> list[tuple[str, int]]:
        """Distinct values (first spelling, any case) with their rows, most frequent first; placeholder
        words left out."""
        merged: dict[str, list] = {}
        for value, count in self.counts.items():
            key = value.lower()
            if key in missing:
                continue
            if key in merged:
                merged[key][1] += count
            else:
                merged[key] = [value, count]
        return sorted(((v, c) for v, c in merged.values()), key=lambda vc: -vc[1])

    def placeholder_rows(self, missing: tuple[str, ...] | frozenset[str]) -> int:
        return sum(c for v, c in self.counts.items() if v.lower() in missing)


@dataclass
class FileProfile:
    fmt: CsvFormat
    rows: int  # data rows that are not blank
    blank_rows: int
    sample: list[tuple[int, list[str]]]  # the first SAMPLE_ROWS rows that are not blank, with their numbers
    columns: dict[str, ColumnProfile]


_CHUNK = 5_000  # rows counted at a time, column by column


def _profile(path: Path) -> FileProfile:
    """One pass over the file. Cells are counted a chunk of rows at a time, column by column, with
    Counter (which counts in C); a value's shapes and spaces are then looked at once per distinct
    value, not once per cell. A column with more than MAX_DISTINCT values stops being counted (its
    words are not a list to map) and its further cells are looked at one by one."""
    fmt = read_csv_format(path)
    width = len(fmt.headers)
    columns = [ColumnProfile(h) for h in fmt.headers]
    raw_counts: list[Counter[str] | None] = [Counter() for _ in columns]  # cell as read -> rows
    # Values past MAX_DISTINCT, while all differ (as digests: a million values were ~100 MB as a set).
    seen: list[AllDifferent | None] = [AllDifferent() for _ in columns]
    rows = blank_rows = 0
    sample: list[tuple[int, list[str]]] = []
    chunk: list[list[str]] = []

    def count(chunk: list[list[str]]) -> None:
        for i, cells in enumerate(zip(*chunk)):
            counter = raw_counts[i]
            if counter is not None:
                counter.update(cells)
                if len(counter) > MAX_DISTINCT:
                    _settle(columns[i], counter)
                    columns[i].complete, raw_counts[i] = False, None
            else:
                _count_one_by_one(columns[i], cells, seen[i])
                if not columns[i].unique:
                    seen[i] = None

    for number, cells in _rows(path, fmt):
        if not "".join(cells).strip():
            blank_rows += 1
            continue
        rows += 1
        if len(sample) < SAMPLE_ROWS:
            sample.append((number, cells))
        chunk.append(cells if len(cells) == width else (cells + [""] * width)[:width])
        if len(chunk) >= _CHUNK:
            count(chunk)
            chunk = []
    if chunk:
        count(chunk)
    for column, values in zip(columns, seen):
        if values is not None and column.unique and not values.holds():
            column.unique = False
    for column, counter in zip(columns, raw_counts):
        if counter is not None:
            _settle(column, counter)
    return FileProfile(fmt, rows, blank_rows, sample, {c.header: c for c in columns})


def _trimmed(raw: str) -> str | None:
    """cells.trim_cell, None for a blank cell (inlined: called for every distinct value)."""
    cell = raw.strip(" ")
    if not cell or cell.isspace():
        return None
    if cell[0] in FORMULA_STARTS and raw[0] == " ":
        return raw.rstrip(" ")
    return restore_cell(cell) if cell[0] == "'" else cell


def _settle(column: ColumnProfile, counter: Counter[str]) -> None:
    """Fold the raw counts of a column into its profile: values less their spaces, shapes per value."""
    for raw, rows in counter.items():
        cell = _trimmed(raw)
        if cell is None:
            continue
        column.filled += rows
        if rows > 1 or cell in column.counts:
            column.unique = False
        column.counts[cell] += rows
    for cell, rows in column.counts.items():
        kind, when = number_shape(cell) or TEXT, date_shape(cell) or TEXT
        column.number_shapes[kind] += rows
        column.number_examples.setdefault(kind, cell)
        column.date_shapes[when] += rows
        column.date_examples.setdefault(when, cell)


def _count_one_by_one(column: ColumnProfile, cells: tuple[str, ...], seen: AllDifferent | None) -> None:
    fresh: list[str] = []  # values not among the first MAX_DISTINCT: do they all differ?
    for raw in cells:
        cell = _trimmed(raw)
        if cell is None:
            continue
        column.filled += 1
        if cell in column.counts:
            column.counts[cell] += 1
            column.unique = False
            continue
        if seen is not None and column.unique:
            fresh.append(cell)
        kind, when = number_shape(cell) or TEXT, date_shape(cell) or TEXT
        column.number_shapes[kind] += 1
        column.number_examples.setdefault(kind, cell)
        column.date_shapes[when] += 1
        column.date_examples.setdefault(when, cell)
    if seen is not None and column.unique and not seen.add_many(fresh):
        column.unique = False


_KEEP = 4
_profiles: OrderedDict[tuple[str, int, int], FileProfile] = OrderedDict()
_profiles_lock = threading.Lock()


def profile_file(path: Path) -> FileProfile:
    """The file's profile: read once per file (and again when the file changes), then kept."""
    path = Path(path)
    if not path.is_file():
        raise ImportRejected(f"There is no file {path}.")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _profiles_lock:
        if key in _profiles:
            _profiles.move_to_end(key)
            return _profiles[key]
    profile = _profile(path)
    with _profiles_lock:
        _profiles[key] = profile
        while len(_profiles) > _KEEP:
            _profiles.popitem(last=False)
    return profile


def forget_profile(path: Path) -> None:
    """Drop what is kept of a file (it is being deleted)."""
    name = str(Path(path).resolve())
    with _profiles_lock:
        for key in [k for k in _profiles if k[0] == name]:
            del _profiles[key]
