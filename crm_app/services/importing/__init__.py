"""Importing leads from any CRM's CSV export, all rows or none.

The steps, shared by the Import page and the `import` command, one module each:

1. `read`: `read_csv_format` sniffs the file: encoding (UTF-8 with or without BOM, else Latin-1),
   delimiter (`,`, `;`, tab or `|`) and the header row. `profile_file` reads it once into a profile
   (every column's values, how its numbers and dates are written, the first rows), kept per file,
   which the mapping step works from without reading the file again.
2. `mapping`: `guess_mapping` proposes a field for each column from its header and values. An
   `ImportMapping` says what each column is: one of FIELDS, "custom" (kept in the lead's
   `custom_fields`, which the scoring model can learn from) or "ignore"; value maps turn the file's
   words into ours; placeholder words are missing values; defaults fill a new lead's missing source or
   stage. `cells` reads one cell as its field (a formatted number, a date, one of our words).
3. `validate`: `validate_file` streams the file through the csv module and checks every row, collecting
   per-row errors (row, column, message; the report keeps the first MAX_REPORTED but counts all; an
   unknown word is one error with its rows) and notes on how columns were read. No database.
   `preview` shows the first rows as they will be stored.
4. `load`: `import_file` validates again, refuses the whole file when any row is wrong, then writes in
   ONE transaction: record the import, COPY into a temporary table, match existing leads (external id,
   else lower(email)), merge the file into the matched leads it changes, then (`derive`) score them
   and the new ones with the team's engine and assess their deal risk, INSERT the new leads and UPDATE
   the changed ones, each written once with its score and risk, record stage changes, commit. A
   failure anywhere rolls everything back; a dry run rolls back too and uses no lead ids.

Rows are numbered as data rows: row 1 is the first row under the header. A new won or lost lead without a
closed date is taken as closed when it was created (or at import time when that is unknown too); a
stored lead that the file moves to won or lost without a date closes at import time. A new lead from
a row without dates is marked `dates_known = false` and gets one stage change, not a made-up path.

Re-import (the same file again, or a newer export) updates the leads it matches instead of adding
new ones. A cell with a value overwrites the stored one; a blank cell keeps what is stored; custom
fields are merged (the file's keys win). When the file states a stage or outcome that differs from
the lead's, the lead moves there and a stage change is recorded (closing sets closed_at; reopening
clears it). Activities, owner and follow-ups are never touched by an import. A matched row that
changes nothing is counted as skipped.
"""

from crm_app.services.importing.cells import AUTO, DATE_ORDERS, MAX_DEAL_VALUE, PLACEHOLDERS, custom_value
from crm_app.services.importing.load import ImportSummary, import_file
from crm_app.services.importing.mapping import (
    CHOICES,
    CUSTOM,
    FIELDS,
    IGNORE,
    NEWEST_FIRST,
    OLDEST_FIRST,
    ROW_ORDERS,
    SOURCE_DETAIL,
    UNKNOWN_ORDER,
    ImportMapping,
    guess_mapping,
    load_mapping,
)
from crm_app.services.importing.read import (
    CsvFormat,
    FileProfile,
    ImportRejected,
    forget_profile,
    profile_file,
    read_csv_format,
)
from crm_app.services.importing.validate import (
    MAX_CUSTOM_KEY,
    MAX_LENGTHS,
    MAX_REPORTED,
    ImportProgress,
    LeadRecord,
    PreviewRow,
    RowError,
    ValidationReport,
    check_mapping,
    file_has_dates,
    preview,
    unknown_values,
    unknown_words,
    validate_file,
    write_skipped_rows,
)

__all__ = [
    "AUTO", "CHOICES", "CUSTOM", "DATE_ORDERS", "FIELDS", "IGNORE", "MAX_CUSTOM_KEY", "MAX_DEAL_VALUE",
    "MAX_LENGTHS", "MAX_REPORTED", "NEWEST_FIRST", "OLDEST_FIRST", "PLACEHOLDERS", "ROW_ORDERS",
    "SOURCE_DETAIL", "UNKNOWN_ORDER", "CsvFormat", "FileProfile", "ImportMapping",
    "ImportProgress", "ImportRejected", "ImportSummary", "LeadRecord", "PreviewRow", "RowError",
    "ValidationReport", "check_mapping", "custom_value", "file_has_dates", "forget_profile", "guess_mapping",
    "import_file", "load_mapping", "preview", "profile_file", "read_csv_format", "unknown_values",
    "unknown_words", "validate_file", "write_skipped_rows",
]
