"""Exporting the leads a list shows (its filter, search and sort; every matching row, not one page)
as CSV, streamed from a server-side cursor so 100,000 leads never sit in memory at once.

The columns read back through the importer's header guessing (Name, Email, Company, Source, ...),
so an export can be edited and imported again; custom fields become one column each.

Spreadsheets run a cell that starts with `=`, `+`, `-` or `@` (and, after trimming, TAB or CR) as a
formula: `=HYPERLINK(...)` or `=cmd|' /C calc'!A0` typed into a web form would run on the manager's
machine. Every text cell that could start one is written with a leading single quote, as OWASP
recommends ("CSV injection"); numbers are written as plain numbers (no thousands separators), so a
negative number stays a number.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from crm_app.db.queries import LeadFilter, custom_field_keys, lead_export_query
from crm_app.domain import Source, Stage

FIXED_COLUMNS = (
    "External id", "Name", "Email", "Phone", "Job title", "Company", "Company size", "Source", "Stage", "Owner",
    "Deal value", "Score", "Tier", "Why (score reasons)", "Created", "In stage since", "Closed", "Pipeline CRM id",
)
BATCH = 2000


# What makes a spreadsheet read a cell as a formula: OWASP's list, LF, and the full-width forms
# (＝ ＋ － ＠) that some spreadsheets fold to ASCII.
FORMULA_STARTS = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")
# A plain number ("-5", "+3.25", "1e6") is a value, not a formula: it is written as it is.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _needs_quote(text: str) -> bool:
    if not text or _PLAIN_NUMBER.fullmatch(text):
        return False
    # A quote already in front of a formula is quoted again, so that restore_cell(neutralise(x)) == x.
    return text[0] in FORMULA_STARTS or (text[0] == "'" and _needs_quote(text[1:]))


def neutralise(text: str) -> str:
    """A text cell a spreadsheet will show as text: a leading `'` before anything that starts a formula."""
    return "'" + text if _needs_quote(text) else text


def restore_cell(text: str) -> str:
    """What `neutralise` was given: for an importer reading an export back (undoes exactly one quote)."""
    return text[1:] if text[:1] == "'" and _needs_quote(text[1:]) else text


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else ""


def _cell(value: Any) -> str | int | float:
    """A cell: numbers as numbers, text made safe for spreadsheets."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return neutralise(str(value))


def reasons_in_words(reasons: list[dict[str, Any]]) -> str:
    """"+30 Asked for pricing on 12 Nov; +10 Company over 50 employees" (signs shown, as on the page)."""
    return "; ".join(f"{'+' if r['points'] >= 0 else ''}{r['points']} {r['text']}" for r in reasons or [])


def export_header(connection: Connection, flt: LeadFilter) -> tuple[list[str], list[str]]:
    """(header row, custom field keys in column order)."""
    keys = custom_field_keys(connection, flt)
    header = list(FIXED_COLUMNS) + [neutralise(f"custom: {k}" if k in FIXED_COLUMNS else k) for k in keys]
    return header, keys


def stream_leads_csv(db: Engine | Connection, flt: LeadFilter, sort: str = "score") -> Iterator[str]:
    """The CSV text, a batch of rows at a time: header first, then every matching lead in list order.
    Given an engine it holds one connection for the whole download."""
    if isinstance(db, Engine):
        with db.connect() as connection:
            yield from stream_leads_csv(connection, flt, sort)
        return
    header, keys = export_header(db, flt)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    # Per statement: Connection.execution_options would switch the whole connection to server-side cursors.
    result = db.execute(lead_export_query(flt, sort), execution_options={"stream_results": True, "yield_per": BATCH})
    for count, r in enumerate(result, start=1):
        custom = r.custom_fields or {}
        writer.writerow([
            _cell(r.external_id), _cell(r.name), _cell(r.email), _cell(r.phone), _cell(r.title),
            _cell(r.company),
            "" if r.company_size is None else r.company_size, Source(r.source).label, Stage(r.stage).label,
            _cell(r.owner_name), f"{r.deal_value:.2f}", r.score, r.tier.title(),
            _cell(reasons_in_words(r.score_reasons)),
            _when(r.created_at), _when(r.stage_entered_at), _when(r.closed_at), r.id,
            *(_cell(custom.get(k)) for k in keys),
        ])
        if count % BATCH == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def filter_to_dict(flt: LeadFilter, sort: str) -> dict[str, Any]:
    return {"owner_id": flt.owner_id, "tier": flt.tier, "stage": flt.stage, "source": flt.source,
            "search": flt.search, "sort": sort, "ids": None if flt.ids is None else list(flt.ids)}


def filter_from_dict(data: dict[str, Any]) -> tuple[LeadFilter, str]:
    owner, ids = data.get("owner_id"), data.get("ids")
    return (
        LeadFilter(owner_id=int(owner) if owner is not None else None, tier=data.get("tier"),
                   stage=data.get("stage"), source=data.get("source"), search=data.get("search"),
                   ids=None if ids is None else tuple(int(i) for i in ids)),
        str(data.get("sort") or "score"),
    )
