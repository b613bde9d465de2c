"""What each column of a file is: the fields a column can become, the guess from its header and values,
and the mapping (the Import page's choices, or a `--mapping` JSON file)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crm_app.services.errors import InvalidInput
from crm_app.services.importing.cells import (
    AUTO,
    COMMA,
    DATE_ORDERS,
    OUTCOME_WORDS,
    PLACEHOLDERS,
    POINT,
    aware,
)

if TYPE_CHECKING:
    from crm_app.services.importing.read import FileProfile

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
    "outcome": ("outcome", "result", "wonlost", "won", "iswon", "converted", "isconverted", "closedwon"),
    # A close value (what the deal was won for) is the deal's value: issue #16's forecast sums it.
    "deal_value": ("value", "dealvalue", "amount", "dealamount", "revenue", "dealsize", "closevalue",
                   "closedvalue", "closeamount", "closedamount", "wonamount", "wonvalue"),
    "created_at": ("created", "createdat", "createddate", "datecreated", "createdon", "createdtime"),
    # An expected close date is the close date of a closed deal; on an open deal it is not a close and
    # is left out (validate.py), the forecast timing open deals from the team's history instead.
    "closed_at": ("closed", "closedat", "closeddate", "closedate", "dateclosed", "closedon",
                  "expectedclosedate", "expectedclose", "estimatedclosedate"),
    "external_id": ("id", "externalid", "recordid", "leadid", "contactid", "crmid"),
}


# Files without dates: what the manager says about the order of the rows. Stored with the import
# (imports.row_order) so training can use it, and used to number new leads oldest first.
NEWEST_FIRST, OLDEST_FIRST, UNKNOWN_ORDER = "newest_first", "oldest_first", "unknown"
ROW_ORDERS = {NEWEST_FIRST: "Newest first", OLDEST_FIRST: "Oldest first", UNKNOWN_ORDER: "Unknown"}
SOURCE_DETAIL = "source_detail"  # the custom field keeping the file's own source word


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
    # Cells that mean "no value" (besides blank), any case: "Select", "N/A", "-" ... by default.
    missing_values: tuple[str, ...] = PLACEHOLDERS
    # Files without dates: row n was created (and closed) at first + (n - 1) * every. Keeps the file's
    # order as time, so a time-ordered holdout holds out the newest rows.
    row_clock_first: datetime | None = None
    row_clock_every: timedelta = timedelta(minutes=1)
    # The date columns' format: "auto" (found from the values), "day_first", "month_first", "iso", or a
    # strptime format ("%d %b %Y").
    date_format: str = AUTO
    # Files without dates: the order of their rows (NEWEST_FIRST, OLDEST_FIRST, UNKNOWN_ORDER), or None.
    row_order: str | None = None
    # Per column, its decimal separator ("." or ","), where its values alone do not settle it.
    decimal_separators: dict[str, str] = field(default_factory=dict)

    def field_of(self, header: str) -> str:
        return self.columns.get(header, self.unmapped)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportMapping:
        """From the JSON form (the `--mapping` file, or the Import page's choices)."""
        known = {"columns", "unmapped", "values", "defaults", "row_id_prefix", "name_template",
                 "missing_values", "row_clock", "date_format", "row_order", "decimal_separators",
                 "description"}
        unknown = set(data) - known
        if unknown:
            raise InvalidInput(f"Unknown mapping keys: {', '.join(sorted(unknown))}.", field="mapping")
        clock = data.get("row_clock") or {}
        first = None
        if clock:
            try:
                first = aware(datetime.fromisoformat(str(clock["first"])))
                every = timedelta(minutes=float(clock.get("every_minutes", 1)))
            except (KeyError, ValueError, TypeError):
                raise InvalidInput('row_clock needs {"first": "<ISO date>", "every_minutes": <number>}.',
                                   field="mapping") from None
        date_format = str(data.get("date_format") or AUTO)
        if date_format not in DATE_ORDERS and "%" not in date_format:
            raise InvalidInput(f'date_format is one of {", ".join(DATE_ORDERS)} or a strptime format such as '
                               '"%d %b %Y".', field="mapping")
        row_order = data.get("row_order") or None
        if row_order is not None and row_order not in ROW_ORDERS:
            raise InvalidInput(f'row_order is one of {", ".join(ROW_ORDERS)}.', field="mapping")
        separators = {str(k): str(v) for k, v in (data.get("decimal_separators") or {}).items()}
        if any(v not in (POINT, COMMA) for v in separators.values()):
            raise InvalidInput('decimal_separators gives "." or "," per column.', field="mapping")
        missing = data.get("missing_values")
        return cls(
            columns={str(k): str(v) for k, v in (data.get("columns") or {}).items()},
            unmapped=str(data.get("unmapped", CUSTOM)),
            values={f: {str(k).strip().lower(): str(v) for k, v in m.items()}
                    for f, m in (data.get("values") or {}).items()},
            defaults={str(k): str(v) for k, v in (data.get("defaults") or {}).items()},
            row_id_prefix=data.get("row_id_prefix") or None,
            name_template=str(data.get("name_template") or "Imported lead {row}"),
            missing_values=(PLACEHOLDERS if missing is None
                            else tuple(str(v).strip().lower() for v in missing)),
            row_clock_first=first,
            row_clock_every=every if clock else timedelta(minutes=1),
            date_format=date_format,
            row_order=row_order,
            decimal_separators=separators,
        )

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"columns": dict(self.columns), "unmapped": self.unmapped,
                                "values": self.values, "defaults": self.defaults,
                                "name_template": self.name_template}
        if self.row_id_prefix:
            data["row_id_prefix"] = self.row_id_prefix
        data["missing_values"] = list(self.missing_values)
        if self.row_clock_first:
            data["row_clock"] = {"first": self.row_clock_first.isoformat(),
                                 "every_minutes": self.row_clock_every.total_seconds() / 60}
        data["date_format"] = self.date_format
        if self.row_order:
            data["row_order"] = self.row_order
        if self.decimal_separators:
            data["decimal_separators"] = dict(self.decimal_separators)
        return data


def load_mapping(path: Path) -> ImportMapping:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"There is no mapping file {path}.", field="mapping") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"The mapping file {path} cannot be read: {error}", field="mapping") from None
    except json.JSONDecodeError as error:
        raise InvalidInput(f"The mapping file is not valid JSON: {error}", field="mapping") from None
    if not isinstance(data, dict):
        raise InvalidInput('The mapping file should hold one JSON object ({"columns": ...}).',
                           field="mapping")
    return ImportMapping.from_dict(data)


def _squash(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


def _header_words(header: str) -> list[str]:
    """"ProspectID" -> ["prospect", "id"]; "Lead Number" -> ["lead", "number"]."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", header))
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


_STAGE_OR_OUTCOME = ("stage", "status", "dealstage", "leadstatus", "pipelinestage")
_ID_WORDS = ("id", "number", "no", "nr", "num", "key", "uuid", "guid")
_NOT_IDS = ("phone", "mobile", "tel", "fax", "telephone", "zip", "postal", "vat", "tax")


def _flag_values(profile: FileProfile, header: str, missing: tuple[str, ...]) -> bool:
    """Whether the column holds an outcome written as a flag or a word: 0/1, yes/no, true/false, won/lost."""
    column = profile.columns[header]
    words = {w.lower() for w, _ in column.words(missing)}
    said = {OUTCOME_WORDS.get(w) for w in words}
    return column.complete and bool(words) and None not in said and {"won", "lost"} <= said


def _id_values(profile: FileProfile, header: str) -> bool:
    """Whether every row has a value in the column and no value repeats."""
    column = profile.columns[header]
    return column.unique and column.filled == profile.rows and profile.rows > 0


def guess_mapping(headers: tuple[str, ...] | list[str], profile: FileProfile | None = None,
                  missing: tuple[str, ...] = PLACEHOLDERS) -> dict[str, str]:
    """A field for each header when its name says so ("E-mail address" -> email); the rest custom.
    Each field is proposed for one column only, the first that fits.

    With the file's `profile`, the values count too: an outcome column (Converted, Won, Is won, Status,
    Stage, Outcome) is one whose values are won/lost flags (0/1, yes/no, true/false, won/lost), else a
    Stage or Status column is the stage; an id column (a name ending in ID, Id, Number, ...) has a
    value in every row and never the same twice. A second such id column is ignored: an id says
    nothing about a lead's chances, and one that counts up tells the model the row's position."""
    guessed: dict[str, str] = {}
    taken: set[str] = set()
    for header in headers:
        key = _squash(header)
        choice = CUSTOM
        if profile is not None and key in _STAGE_OR_OUTCOME + _GUESSES["outcome"]:
            flags = _flag_values(profile, header, missing)
            if flags and "outcome" not in taken:
                choice = "outcome"
            elif not flags and key in _STAGE_OR_OUTCOME and "stage" not in taken:
                choice = "stage"
        else:
            for field_name, names in _GUESSES.items():
                if field_name not in taken and key in names:
                    choice = field_name
                    break
        if choice == CUSTOM and profile is not None:
            words = _header_words(header)
            named_id = bool(words) and words[-1] in _ID_WORDS and not set(words) & set(_NOT_IDS)
            if named_id and _id_values(profile, header):
                choice = IGNORE if "external_id" in taken else "external_id"
        elif choice == "external_id" and profile is not None and not _id_values(profile, header):
            choice = CUSTOM
        if choice not in (CUSTOM, IGNORE):
            taken.add(choice)
        guessed[header] = choice
    return guessed
