"""One cell as what its column is: a number, a date, one of our words, or a custom value. Each reader
raises `CellProblem` with the problem in words.

Numbers come written many ways: "1,532", "$1,200", "12%", "2,5", "1.234,5", "€ 3 400". Whether a
comma or a point is the decimal separator is decided once per column from all its values
(`decide_decimal`), because one cell alone often cannot say: "1,532" is 1532 in an American export and
1.532 in a German one, and "2,5" in the same column settles it. Written here rather than taken from a
library: babel reads numbers for a locale the caller names, and price-parser guesses each value on
its own; neither decides for a column, which is what keeps one file's values from being read two ways.
Dates the same: "03/04/2026" is day first or month first for the whole column (`decide_date_order`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, NamedTuple

from crm_app.domain import Source, Stage
from crm_app.services.exporting import restore_cell

if TYPE_CHECKING:
    from crm_app.services.importing.mapping import ImportMapping

MAX_DEAL_VALUE = Decimal("9999999999.99")  # numeric(12, 2)
MAX_EMPLOYEES = 10_000_000

# Cells that mean "no value" unless the mapping says otherwise (blank cells always do): what CRM
# exports and web forms write for a drop-down left alone or a field nobody filled in.
PLACEHOLDERS = ("select", "n/a", "na", "-", "--", "none", "null", "unknown")
# A cell starting with one of these is a formula to a spreadsheet (OWASP, "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# The one character PostgreSQL cannot keep in text or jsonb (COPY fails on it, and on "\u0000" in JSON).
UNSTORABLE = "\x00"


class CellProblem(ValueError):
    """A cell that cannot be read as its field; the message says why, in words."""


def trim_cell(raw: str) -> str:
    """The cell as typed, less the spaces around it. Tabs and line breaks are kept (they are part of what
    was typed), and spaces are kept too where removing them would leave a formula (" =1+1").

    A formula our own export (or a spreadsheet) protected with a leading quote ("'=1+1", "'\t=1+1")
    is read back as the text it protects (exporting.restore_cell), so a re-import of an export stores
    what was exported, and the next export quotes it again."""
    cell = raw.strip(" ")
    if cell != raw and raw.startswith(" ") and cell.startswith(FORMULA_STARTS):
        return raw.rstrip(" ")
    return restore_cell(cell)


def is_blank(raw: str) -> bool:
    return not raw.strip()


# --- Numbers ----------------------------------------------------------------------------------------

POINT, COMMA = ".", ","
# What one written number says about its column's decimal separator.
PLAIN = "plain"  # nothing: "1532", "1 532", "-7", "1e-05"
SAYS_POINT = "point"  # "12.5", "1,234.5", "1,234,567": a decimal point
SAYS_COMMA = "comma"  # "2,5", "1.234,5", "1.234.567", "1 234,5": a decimal comma
EITHER_COMMA = "either_comma"  # "1,532": 1532 with a decimal point, 1.532 with a decimal comma
EITHER_POINT = "either_point"  # "1.532": 1.532 with a decimal point, 1532 with a decimal comma

_SPACES = " \u00a0\u202f\u2009"
_GROUPERS = _SPACES + "'\u2019_"  # thousands separators that are never a decimal separator
_CURRENCY_SIGNS = "$€£¥₹"
_BODY = re.compile(r"[\d.,'\u2019_ \u00a0\u202f\u2009]*\d")
_EXPONENT = re.compile(r"(?:\d+\.?\d*|\.\d+)[eE][+-]?\d+")
_PLAIN_INTEGER = re.compile(r"[+-]?\d+")


class WrittenNumber(NamedTuple):
    value: Decimal
    percent: bool  # "12%" (value 0.12)
    currency: bool  # "$1,200", "1.200 EUR"
    whole: bool  # written without decimals


def _number_parts(text: str) -> tuple[bool, str, bool, bool] | None:
    """(negative, digits and separators, percent, currency) of a number as written, or None."""
    s = text.strip()
    negative = percent = currency = False
    if s.endswith("%"):
        percent, s = True, s[:-1].rstrip()
    signed = False
    for _ in range(2):  # a sign and a currency before the digits, in either order: "-$5", "$-5"
        if s[:1] in ("-", "+", "\u2212") and not signed:
            negative, signed, s = s[0] != "+", True, s[1:].lstrip()
        elif s[:1] and s[0] in _CURRENCY_SIGNS and not currency:
            currency, s = True, s[1:].lstrip()
        elif len(s) > 3 and s[:3].isalpha() and s[:3].isupper() and (s[3].isdigit() or s[3] in _SPACES):
            currency, s = True, s[3:].lstrip()
    if not currency and s[-1:] and s[-1] in _CURRENCY_SIGNS:
        currency, s = True, s[:-1].rstrip()
    elif not currency and len(s) > 4 and s[-3:].isalpha() and s[-3:].isupper() and s[-4] in _SPACES:
        currency, s = True, s[:-3].rstrip()
    if not s or not (_BODY.fullmatch(s) or _EXPONENT.fullmatch(s)) or not (s[0].isdigit() or s[0] in ".,"):
        return None
    return negative, s, percent, currency


def _grouped(digits: str, separator: str) -> bool:
    """Whether `digits` is an integer with `separator` between thousands ("1,234,567")."""
    if separator in _SPACES:
        for space in _SPACES:
            digits = digits.replace(space, " ")
        separator = " "
    parts = digits.split(separator)
    return (all(p.isdigit() for p in parts) and 1 <= len(parts[0]) <= 3
            and all(len(p) == 3 for p in parts[1:]))


def _shape(body: str) -> str | None:
    """What `body` (digits and separators) says about the decimal separator; None: not a number."""
    if body.isdigit():
        return PLAIN
    if _EXPONENT.fullmatch(body):
        return SAYS_POINT if "." in body else PLAIN
    groupers = {c for c in body if c in _GROUPERS}
    if len({" " if c in _SPACES else c for c in groupers}) > 1:
        return None
    grouper = next(iter(groupers), None)
    dots, commas = body.count("."), body.count(",")
    if dots and commas:
        decimal = POINT if body.rfind(".") > body.rfind(",") else COMMA
        integer, _, fraction = body.rpartition(decimal)
        thousands = COMMA if decimal == POINT else POINT
        if grouper or decimal in integer or not fraction.isdigit() or not _grouped(integer, thousands):
            return None
        return SAYS_POINT if decimal == POINT else SAYS_COMMA
    if not dots and not commas:
        return PLAIN if _grouped(body, grouper or "") else None
    mark = POINT if dots else COMMA
    if dots + commas > 1:  # repeated: it separates thousands ("1,234,567"), so the other one is the decimal
        if grouper or not _grouped(body, mark):
            return None
        return SAYS_COMMA if mark == POINT else SAYS_POINT
    integer, _, fraction = body.partition(mark)
    if not fraction.isdigit():
        return None
    says = SAYS_POINT if mark == POINT else SAYS_COMMA
    if grouper:  # "1 234,5", "1'234.50": thousands are grouped otherwise, so this one is the decimal
        return says if _grouped(integer, grouper) else None
    if not integer:
        return says  # ".5", ",5"
    if not integer.isdigit():
        return None
    if len(fraction) == 3 and len(integer) <= 3 and integer[0] != "0":
        return EITHER_POINT if mark == POINT else EITHER_COMMA
    return says


def number_shape(text: str) -> str | None:
    """What a cell says about its column's decimal separator (PLAIN, SAYS_POINT, ...); None if it is
    not a number at all."""
    parts = _number_parts(text)
    return None if parts is None else _shape(parts[1])


def read_number(text: str, decimal: str = POINT) -> WrittenNumber | None:
    """A written number read with `decimal` as its decimal separator ("1.234,5" with COMMA: 1234.5;
    "12%": 0.12; "$1,200": 1200); None when it is not a number written that way."""
    parts = _number_parts(text)
    if parts is None:
        return None
    negative, body, percent, currency = parts
    shape = _shape(body)
    against = SAYS_COMMA if decimal == POINT else SAYS_POINT  # a decimal comma in a column of points
    if shape is None or shape == against:
        return None
    if _EXPONENT.fullmatch(body):
        cleaned = body
    else:
        thousands = COMMA if decimal == POINT else POINT
        cleaned = body.replace(thousands, "")
        for grouper in _GROUPERS:
            cleaned = cleaned.replace(grouper, "")
        cleaned = cleaned.replace(decimal, ".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    whole = "." not in cleaned and "e" not in cleaned.lower()
    if negative:
        value = -value
    if percent:
        value, whole = value / 100, False
    return WrittenNumber(value, percent, currency, whole)


@dataclass(frozen=True)
class NumberReading:
    """How a column's numbers are read: its decimal separator, and in words why, when its values did
    not settle it on their own (`note`, for the validation report)."""

    decimal: str = POINT
    note: str = ""


def _example(examples: dict[str, str], *shapes: str) -> str:
    return next((examples[s] for s in shapes if s in examples), "")


def decide_decimal(header: str, shapes: Counter[str], examples: dict[str, str],
                   declared: str | None = None) -> NumberReading:
    """The decimal separator of a column, from what its values say (`shapes`: count per shape,
    `examples`: a value of each shape). A value that settles it decides; when values disagree the
    majority does and the note names the others; when none settles it, a point (commas between
    thousands, as most CRMs export) and the note says so."""
    if declared in (POINT, COMMA):
        return NumberReading(declared)
    point, comma = shapes.get(SAYS_POINT, 0), shapes.get(SAYS_COMMA, 0)
    if point and comma:
        decimal = COMMA if comma > point else POINT
        kept, other = (SAYS_POINT, SAYS_COMMA) if decimal == POINT else (SAYS_COMMA, SAYS_POINT)
        mark = "point" if decimal == POINT else "comma"
        return NumberReading(decimal, (
            f'"{header}" writes numbers two ways: "{examples[kept]}" ({max(point, comma):,} values, read '
            f'with a decimal {mark}) and "{examples[other]}" ({min(point, comma):,}, which are then not '
            "numbers). Correct those values in the file, or set the column's decimal separator."))
    if point or comma:
        return NumberReading(POINT if point else COMMA)
    either = _example(examples, EITHER_COMMA, EITHER_POINT)
    if not either:
        return NumberReading(POINT)
    as_point = read_number(either, POINT)
    as_comma = read_number(either, COMMA)
    assert as_point is not None and as_comma is not None
    point_value, comma_value = _plain(as_point.value), _plain(as_comma.value)
    return NumberReading(POINT, (
        f'"{header}": "{either}" could be {point_value} or {comma_value}, and no value in the '
        f"column settles it; read as {point_value} (a decimal point, commas between thousands). "
        "If the file writes decimal commas, set the column's decimal separator to a comma."))


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f") if value == value.to_integral_value() else format(value, "f")


# --- Fields that are numbers ------------------------------------------------------------------------


def read_employees(value: str, decimal: str = POINT) -> int:
    number = read_number(value, decimal)
    if number is None or number.percent or number.currency or number.value < 0 \
            or number.value != number.value.to_integral_value():
        raise CellProblem(f'"{value}" is not a whole number of employees.')
    if number.value > MAX_EMPLOYEES:
        raise CellProblem(f'"{value}" employees is more than any company has.')
    return int(number.value)


def read_amount(value: str, decimal: str = POINT) -> Decimal:
    number = read_number(value, decimal)
    if number is None or number.percent:
        example = "12000, 12,000.50 or $12,000" if decimal == POINT else "12000, 12.000,50 or 12.000 €"
        raise CellProblem(f'"{value}" is not an amount (write {example}).')
    if not number.value.is_finite() or number.value < 0:
        raise CellProblem(f'"{value}" is not an amount of zero or more.')
    if number.value > MAX_DEAL_VALUE:
        raise CellProblem(f'"{value}" is larger than the largest deal value stored (9,999,999,999.99).')
    return number.value.quantize(Decimal("0.01"))


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def custom_value(value: str, decimal: str | None = None) -> int | float | str:
    """A custom field's cell as a number when it is one (the model reads numbers as numbers), else as
    typed. With `decimal`, the column is a column of numbers and formatted ones count too ("1,532",
    "$1,200", "12%"); without, only plain ones ("1532", "-2.5e3"). A number too large for a float
    ("1e999", hundreds of digits) stays text: JSON has no Infinity."""
    if decimal is None:
        if _NUMBER.fullmatch(value) and math.isfinite(float(value)):
            return int(value) if _PLAIN_INTEGER.fullmatch(value) else float(value)
        return value
    if _PLAIN_INTEGER.fullmatch(value) or (decimal == POINT and _NUMBER.fullmatch(value)):
        return custom_value(value)  # the same either way, and quicker
    number = read_number(value, decimal)
    if number is None or not math.isfinite(float(number.value)):
        return value
    return int(number.value) if number.whole else float(number.value)


# --- Dates ------------------------------------------------------------------------------------------

AUTO, DAY_FIRST, MONTH_FIRST, ISO = "auto", "day_first", "month_first", "iso"
DATE_ORDERS = {AUTO: "Find out from the file", DAY_FIRST: "Day first (31/03/2026)",
               MONTH_FIRST: "Month first (03/31/2026)", ISO: "ISO (2026-03-31)"}
_TIMES = ("", " %H:%M", " %H:%M:%S", " %I:%M %p", " %I:%M:%S %p", "T%H:%M", "T%H:%M:%S")
_ISO_DATES = ("%Y-%m-%d", "%Y/%m/%d")
_WORDY_DATES = ("%d %b %Y", "%d %B %Y", "%b %d, %Y", "%B %d, %Y", "%d-%b-%Y", "%d-%b-%y")
_DAY_FIRST = ("%d/%m/%Y", "%d.%m.%Y", "%d-%m-%Y", "%d/%m/%y", "%d.%m.%y")
_MONTH_FIRST = ("%m/%d/%Y", "%m-%d-%Y", "%m.%d.%Y", "%m/%d/%y")
_NUMERIC_DATE = re.compile(r"(\d{1,2})([/.\-])(\d{1,2})\2(\d{2}|\d{4})(?:[ T].*)?")
_ISO_DATE = re.compile(r"\d{4}[-/]\d{1,2}[-/]\d{1,2}(?:[ T].*)?")
# What a date cell says about its column's order.
SAYS_DAY_FIRST, SAYS_MONTH_FIRST, EITHER_DATE, DOTTED_DATE, ISO_DATE = (
    "day_first", "month_first", "either_date", "dotted_date", "iso_date")


def date_shape(text: str) -> str | None:
    """What a cell says about its column's date order; None when it is no date written with numbers."""
    text = text.strip()
    if _ISO_DATE.fullmatch(text):
        return ISO_DATE
    match = _NUMERIC_DATE.fullmatch(text)
    if not match:
        return None
    first, second = int(match.group(1)), int(match.group(3))
    if first > 12 and second <= 12:
        return SAYS_DAY_FIRST
    if second > 12 and first <= 12:
        return SAYS_MONTH_FIRST
    if first <= 12 and second <= 12:
        return DOTTED_DATE if match.group(2) == "." else EITHER_DATE
    return None


def decide_date_order(header: str, shapes: Counter[str], examples: dict[str, str],
                      chosen: str = AUTO) -> tuple[str, str]:
    """(order, problem): the order a date column's day and month come in. With AUTO, a value whose day
    is over 12 settles it; dotted dates (31.03.2026) are day first; a column whose values settle
    nothing, or settle both ways, is a problem for the user to decide (in words), never a guess."""
    if chosen != AUTO:
        return chosen, ""
    day, month = shapes.get(SAYS_DAY_FIRST, 0), shapes.get(SAYS_MONTH_FIRST, 0)
    if day and month:
        day_example, month_example = examples[SAYS_DAY_FIRST], examples[SAYS_MONTH_FIRST]
        return AUTO, (f'"{header}" has dates with the day first ("{day_example}") and with the month first '
                      f'("{month_example}"): correct the file, or choose the date format.')
    if day or month:
        return (DAY_FIRST if day else MONTH_FIRST), ""
    if shapes.get(EITHER_DATE):
        example = examples[EITHER_DATE]
        return AUTO, (f'"{header}": a date like "{example}" could be day first or month first, and no date '
                      "in the column settles it: choose the date format (day first or month first).")
    return (DAY_FIRST if shapes.get(DOTTED_DATE) else ISO), ""


def aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _formats(order: str) -> tuple[str, ...]:
    dates = _ISO_DATES + _WORDY_DATES + {DAY_FIRST: _DAY_FIRST, MONTH_FIRST: _MONTH_FIRST}.get(order, ())
    return tuple(d + t for d in dates for t in _TIMES)


_FORMATS = {order: _formats(order) for order in (ISO, DAY_FIRST, MONTH_FIRST)}


def read_date(value: str, date_format: str = ISO) -> datetime:
    """A date cell as an aware datetime (UTC when it names no zone). `date_format` is ISO, DAY_FIRST,
    MONTH_FIRST (each also reads ISO 8601 and dates with month names), or a strptime format."""
    value = value.strip()
    if "%" in date_format:
        try:
            return aware(datetime.strptime(value, date_format))
        except ValueError:
            raise CellProblem(f'"{value}" is not a date in the format {date_format}.') from None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        for fmt in _FORMATS.get(date_format, _FORMATS[ISO]):
            try:
                return aware(datetime.strptime(value, fmt))
            except ValueError:
                continue
        example = {DAY_FIRST: "31/03/2026 or 2026-03-31", MONTH_FIRST: "03/31/2026 or 2026-03-31"}.get(
            date_format, "2026-03-31 or 2026-03-31 14:05")
        raise CellProblem(f'"{value}" is not a date (write {example}).') from None
    if isinstance(parsed, date) and not isinstance(parsed, datetime):
        parsed = datetime.combine(parsed, time())
    return aware(parsed)


# --- Our words --------------------------------------------------------------------------------------

SOURCE_LABELS = {s.value: s.label for s in Source}
STAGE_LABELS = {s.value: s.label for s in Stage}
OUTCOME_LABELS = {"won": "Won", "lost": "Lost", "open": "Open"}
# How CRM exports write an outcome: a flag (Converted 0/1, Is won true/false) or a word.
OUTCOME_WORDS = {
    **dict.fromkeys(("won", "win", "yes", "y", "true", "t", "1", "1.0", "converted", "closed won", "success"),
                    "won"),
    **dict.fromkeys(("lost", "loss", "no", "n", "false", "f", "0", "0.0", "not converted", "closed lost",
                     "failed"), "lost"),
    "open": "open",
}
STAGE_WORDS = {"closed won": "won", "closed lost": "lost", "closed - won": "won", "closed - lost": "lost"}
LABELS = {"source": SOURCE_LABELS, "stage": STAGE_LABELS, "outcome": OUTCOME_LABELS}
_BUILT_IN_WORDS = {"source": {}, "stage": STAGE_WORDS, "outcome": OUTCOME_WORDS}


def known_word(value: str, field_name: str, mapping: ImportMapping | None = None) -> str | None:
    """The file's word for a source/stage/outcome as ours (through the mapping's value map, our value
    or label, or the words CRM exports use), or None."""
    key = value.strip().lower()
    if mapping is not None:
        mapped = mapping.values.get(field_name, {}).get(key)
        if mapped:
            return mapped
    for ours, label in LABELS[field_name].items():
        if key in (ours, label.lower()):
            return ours
    return _BUILT_IN_WORDS[field_name].get(key)


def read_word(value: str, field_name: str, mapping: ImportMapping) -> str:
    """Like `known_word`, raising CellProblem for a word that is not known."""
    ours = known_word(value, field_name, mapping)
    if ours is None:
        raise CellProblem(unknown_word_message(field_name, value))
    return ours


def unknown_word_message(field_name: str, value: str, rows: int = 1, first_row: int = 0) -> str:
    choices = ", ".join(LABELS[field_name].values())
    where = f" in {rows:,} rows (the first is row {first_row:,})" if rows > 1 else ""
    return (f'Unknown {field_name} "{value}"{where}: map it to one of {choices}'
            + (" or choose a default source." if field_name == "source" else "."))
