"""Reading an uploaded CSV: its encoding, delimiter and header row, then its rows one by one."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from crm_app.services.errors import ServiceError

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

