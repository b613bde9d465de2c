"""What each column of a file is: the fields a column can become, the guess from its header, and the
mapping (the Import page's choices, or a `--mapping` JSON file)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from crm_app.services.errors import InvalidInput
from crm_app.services.importing.cells import _aware

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

