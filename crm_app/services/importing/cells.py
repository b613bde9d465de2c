"""One cell as what its column is: a date, a whole number, an amount, one of our words, a custom value.
Each reader raises `_Cell` with the problem in words."""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time, timezone
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from crm_app.domain import Source, Stage

if TYPE_CHECKING:
    from crm_app.services.importing.mapping import ImportMapping

MAX_DEAL_VALUE = Decimal("9999999999.99")  # numeric(12, 2)
_DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y/%m/%d", "%d.%m.%Y")


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

