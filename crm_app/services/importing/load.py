"""Writing a checked file in one transaction: COPY into a temporary table, match stored leads, merge
the file into the matched ones, score and assess every lead to write (derive.py), insert the new ones
and update the changed ones (each written once, with its score and risk), record their history,
audit, commit."""

from __future__ import annotations

import csv
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from time import perf_counter

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from crm_app.domain import Role
from crm_app.scoring import ScoringEngine
from crm_app.services import audit
from crm_app.services.import_runs import ImportCancelled, ImportControl, end_dead_imports, limit_orphans
from crm_app.services.importing.derive import NEW_CREATED_AT, NEW_STAGE_ENTERED_AT, derive_scores_and_risk
from crm_app.services.importing.mapping import NEWEST_FIRST, UNKNOWN_ORDER, ImportMapping
from crm_app.services.importing.read import ImportRejected
from crm_app.services.importing.validate import (
    ImportProgress,
    LeadRecord,
    RowError,
    ValidationReport,
    _checked_rows,
)
from crm_app.services.permissions import acting_user, require_role
from crm_app.services.scoring import active_engine

log = logging.getLogger(__name__)
_IMPORT_LOCK_KEY = 0x1A9017  # one import at a time: two imports of the same people would race


@dataclass(frozen=True)
class ImportSummary:
    rows: int
    created: int
    updated: int
    skipped: int  # matched rows that changed nothing, and blank lines
    seconds: float
    dry_run: bool = False
    notes: tuple[RowError, ...] = ()  # the validation report's notes: how columns were read
    import_id: int | None = None  # the import's row in `imports` (None for a dry run)
    invalid: int = 0  # rows with problems left out (only with skip_invalid)

    def describe(self) -> str:
        verb = "Would create" if self.dry_run else "Created"
        left_out = (f" {self.invalid:,} row{'s' if self.invalid != 1 else ''} with problems "
                    f"{'were' if self.invalid != 1 else 'was'} not imported.") if self.invalid else ""
        return (f"{verb} {self.created:,}, updated {self.updated:,}, skipped {self.skipped:,} "
                f"(unchanged or blank) of {self.rows:,} rows in {self.seconds:.1f} s.{left_out}")


# --- Writing ------------------------------------------------------------------------------------

_TEMP_COLUMNS = (
    "row_no int, external_id text, name text, email text, phone text, title text, company text, "
    "company_size int, source text, stage text, deal_value numeric(12,2), created_at timestamptz, "
    "closed_at timestamptz, custom_fields jsonb, dated boolean NOT NULL, lead_id int, email_lead_id int, "
    "is_new boolean NOT NULL DEFAULT false, "
    # Compared with leads.email_key: a plain text comparison the planner may use an index for under
    # row-level security, where lower(leads.email) (not leakproof) may not be (migration 0027).
    "email_key text GENERATED ALWAYS AS (lower(email)) STORED"
)
_COPY_COLUMNS = (
    "row_no", "external_id", "name", "email", "phone", "title", "company", "company_size", "source", "stage",
    "deal_value", "created_at", "closed_at", "custom_fields", "dated",
)


def _spool_records(records: Iterator[LeadRecord], spool) -> int:
    """Write each valid record as a CSV line for COPY; nothing is scored yet (a file with a bad row is
    refused before any scoring: validating a 200 MB file with one bad last row used to score every
    valid row first)."""
    writer = csv.writer(spool)
    count = 0
    for r in records:
        writer.writerow((
            r.row, r.external_id, r.name, r.email, r.phone, r.title, r.company, r.company_size, r.source,
            r.stage, r.deal_value, r.created_at.isoformat() if r.created_at else None,
            r.closed_at.isoformat() if r.closed_at else None,
            json.dumps(r.custom_fields, ensure_ascii=False), r.dated,
        ))
        count += 1
    return count


def _refuse_duplicates(cursor) -> None:
    """A lead appears once per file: the same email or external id on two rows is refused, found in SQL
    after COPY (memory bounded by the database, not a map of every email in the worker)."""
    cursor.execute(
        """
        SELECT kind, rows FROM (
            SELECT 'email' AS kind, array_agg(row_no ORDER BY row_no) AS rows FROM import_rows
             WHERE email_key IS NOT NULL GROUP BY email_key HAVING count(*) > 1
            UNION ALL
            SELECT 'external id', array_agg(row_no ORDER BY row_no) FROM import_rows
             WHERE external_id IS NOT NULL GROUP BY external_id HAVING count(*) > 1
        ) d ORDER BY rows[2] LIMIT 20
        """
    )
    twice = cursor.fetchall()
    if twice:
        report = ValidationReport()
        for kind, rows in twice:
            for row in rows[1:]:
                report.add(RowError(row, kind, f"Same {kind} as row {rows[0]}: a lead appears once per file."))
        listed = "; ".join(f"rows {', '.join(map(str, rows[:5]))}{' ...' if len(rows) > 5 else ''} have the same {kind}"
                           for kind, rows in twice[:5])
        raise ImportRejected(f"A lead appears once per file: {listed}. Nothing was imported.", report)


def _take_import_lock(cursor, control: ImportControl | None, say: Callable[[str, int], None]) -> None:
    """One import at a time. A lock held by an import whose process died is freed (its job marked
    interrupted, its backend ended) instead of waited behind; a live import is waited for."""
    from crm_app.db.engine import get_engine

    told = False
    while True:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", (_IMPORT_LOCK_KEY,))
        if cursor.fetchone()[0]:
            return
        if not told:
            say("Waiting for another import to finish", 0)
            told = True
        if control is not None:
            control.check()
        try:
            with Session(get_engine()) as owner:
                end_dead_imports(owner, datetime.now(timezone.utc))
        except Exception:  # no owner login here (or it failed): the dead backend's client check ends it
            log.debug("Could not check for dead imports", exc_info=True)
        time.sleep(0.5)


def _write(session: Session, spool, now: datetime, mapping: ImportMapping, say: Callable[[str, int], None], *,
           import_id: int | None, dry_run: bool, newest_first: bool, engine: ScoringEngine,
           control: ImportControl | None = None) -> tuple[int, int, int]:
    """COPY, check duplicates, match, merge the matched leads with the file, score and assess the new
    and changed leads, insert, update (each lead written once), stage changes. Returns (leads created,
    updated, matched but unchanged).

    A dry run numbers its new leads -1, -2, ... instead of drawing from the leads' id sequence: a
    sequence does not roll back, so a dry run would otherwise use up the ids the real import then
    gives (the sequence never hands out negative ids, so they cannot clash)."""
    connection = session.connection().connection.dbapi_connection
    cursor = connection.cursor()
    cursor.execute("DROP TABLE IF EXISTS import_rows")
    cursor.execute(f"CREATE TEMP TABLE import_rows ({_TEMP_COLUMNS}) ON COMMIT DROP")
    spool.seek(0)
    cursor.copy_expert(f"COPY import_rows ({', '.join(_COPY_COLUMNS)}) FROM STDIN WITH (FORMAT csv)", spool)
    cursor.execute("CREATE INDEX ON import_rows (row_no)")
    cursor.execute("ANALYZE import_rows")
    say("Checking for duplicate rows", 0)
    _refuse_duplicates(cursor)
    say("Matching existing leads", 0)
    # Match, in one statement: the external id first, else the email. The leads are looked up once per
    # key (the planner probes the unique indexes for a small file and hashes for a large one); before,
    # a clash query and an UPDATE per key read them four times. A row whose external id is one stored
    # lead's and email another's is refused.
    cursor.execute(
        """
        UPDATE import_rows t SET lead_id = coalesce(m.by_id, m.by_email), email_lead_id = m.by_email
          FROM (SELECT r.row_no, by_id.id AS by_id, by_email.id AS by_email
                  FROM import_rows r
                  LEFT JOIN leads by_id ON by_id.external_id = r.external_id
                  LEFT JOIN leads by_email ON by_email.email_key = r.email_key
                 WHERE r.external_id IS NOT NULL OR r.email_key IS NOT NULL) m
         WHERE m.row_no = t.row_no AND (m.by_id IS NOT NULL OR m.by_email IS NOT NULL)
        """
    )
    cursor.execute("SELECT row_no, lead_id, email_lead_id FROM import_rows WHERE lead_id <> email_lead_id "
                   "ORDER BY row_no LIMIT 5")
    clashes = cursor.fetchall()
    if clashes:
        rows = ", ".join(str(r[0]) for r in clashes)
        raise ImportRejected(f"Row {rows}: the external id belongs to one stored lead and the email to another "
                             "(lead ids " + ", ".join(f"{r[1]} and {r[2]}" for r in clashes) + "). Fix the file or "
                             "the leads, then import again.")
    cursor.execute(
        """
        SELECT lead_id, array_agg(row_no ORDER BY row_no) FROM import_rows
         WHERE lead_id IS NOT NULL GROUP BY lead_id HAVING count(*) > 1 ORDER BY min(row_no) LIMIT 5
        """
    )
    twice = cursor.fetchall()
    if twice:
        raise ImportRejected("; ".join(f"Rows {', '.join(map(str, rows))} are all stored lead {lead_id} (one by its "
                                       "external id, another by its email)" for lead_id, rows in twice)
                             + ". A lead appears once per file.")
    # New leads get their ids oldest first: in file order, or from the last row up when the manager
    # says the file lists the newest first, so "newest id" means "newer". The mapping's defaults fill
    # their missing source and stage.
    order = "DESC" if newest_first else "ASC"
    new_id = ("-row_number() OVER (ORDER BY row_no)" if dry_run
              else "nextval(pg_get_serial_sequence('leads', 'id'))")
    cursor.execute(
        f"""
        UPDATE import_rows t SET lead_id = n.id, is_new = true, source = coalesce(t.source, %(source)s),
                                 stage = coalesce(t.stage, %(stage)s, 'new')
          FROM (SELECT row_no, {new_id} AS id
                  FROM (SELECT row_no FROM import_rows WHERE lead_id IS NULL ORDER BY row_no {order}) o) n
         WHERE n.row_no = t.row_no
        """,
        {"source": mapping.defaults.get("source"), "stage": mapping.defaults.get("stage")},
    )
    created = cursor.rowcount
    # Statistics of the rows as matched: the planner then looks a small file's leads up by id instead
    # of reading the whole table.
    cursor.execute("ANALYZE import_rows")
    say("Comparing matched leads", 0)
    changed, unchanged = _merge_matched(cursor, now)
    say(f"Scoring {created:,} new and {changed:,} updated leads", 0)
    derive_scores_and_risk(session, engine, now, control.check if control is not None else None)
    say(f"Storing {created:,} new leads", 0)
    # Each lead is written once, with its score and risk (derive.py says why).
    cursor.execute(
        f"""
        INSERT INTO leads (id, external_id, name, email, phone, title, company, company_size, source, stage,
                           deal_value, created_at, updated_at, stage_entered_at, closed_at, score, tier,
                           score_reasons, scored_at, score_valid_until, score_at_close, custom_fields,
                           import_id, import_row, dates_known, risk_level, risk_points, risk_reasons, risk_at,
                           risk_valid_until, last_reply_at, last_reply_sentiment)
        SELECT t.lead_id, t.external_id, coalesce(t.name, replace(%(template)s, '{{row}}', t.row_no::text)), t.email,
               t.phone, t.title, t.company, t.company_size, t.source, t.stage, coalesce(t.deal_value, 0),
               {NEW_CREATED_AT}, %(now)s, {NEW_STAGE_ENTERED_AT},
               CASE WHEN t.stage IN ('won', 'lost') THEN coalesce(t.closed_at, t.created_at, %(now)s) END,
               d.score, d.tier, d.reasons, %(now)s, d.valid_until, d.score_at_close, t.custom_fields,
               %(import_id)s, t.row_no, t.dated, d.risk_level, d.risk_points, d.risk_reasons,
               CASE WHEN {_RISK_OF_D} IS DISTINCT FROM {_NO_RISK} THEN %(now)s END,
               d.risk_valid_until, d.last_reply_at, d.last_reply_sentiment
          FROM import_rows t JOIN import_derived d ON d.lead_id = t.lead_id WHERE t.is_new ORDER BY t.row_no
        """,
        {"now": now, "template": mapping.name_template, "import_id": import_id},
    )
    say(f"Updating {changed:,} matched leads", cursor.rowcount)
    # A blank cell kept the stored value, a value overwrote it (merged in import_matched).
    assignments = ", ".join(f"{c} = m.{c}" for c in _MERGED_COLUMNS + (
        "custom_fields", "stage", "stage_entered_at", "closed_at"))
    cursor.execute(
        f"""
        UPDATE leads l
           SET {assignments}, score_at_close = coalesce(m.score_at_close, d.score_at_close),
               version = l.version + 1, updated_at = %(now)s,
               score = d.score, tier = d.tier, score_reasons = d.reasons, scored_at = %(now)s,
               score_valid_until = d.valid_until,
               risk_level = d.risk_level, risk_points = d.risk_points, risk_reasons = d.risk_reasons,
               risk_valid_until = d.risk_valid_until, last_reply_at = d.last_reply_at,
               last_reply_sentiment = d.last_reply_sentiment,
               -- when the risk last changed: a reassessment that finds the same risk keeps it
               risk_at = CASE WHEN {_RISK_OF_D} IS DISTINCT FROM {_RISK_OF_L} THEN %(now)s ELSE l.risk_at END
          FROM import_matched m JOIN import_derived d ON d.lead_id = m.id
         WHERE l.id = m.id
        """,
        {"now": now},
    )
    say("Recording the stage history", cursor.rowcount)
    # History, in one statement: a new lead was created in "new", then (if elsewhere) moved to where it
    # is; a row without dates says nothing of the way (it only arrived, at the import, in its stage).
    # A matched lead the file moves has the move recorded.
    #
    # Each change is written with the stay it ends (previous_stage, days_in_previous_stage) as the
    # history trigger (crm_analytics_history, migration 0037) computes it: the trigger rewrites every
    # change whose stored stay differs from its own, so a change written without its stay was written
    # twice (at 100,000 rows into 1M, ~54,000 moves inserted, then updated, with their four indexes and
    # the update's trigger). A stay worked out here that the trigger would not agree with (a file date
    # before the lead's later history, say) is still put right by the trigger: this only spares it the
    # work in the usual case. A new dated lead's move ends its stay in "new" since its creation; a
    # matched lead's move ends the stay that began with its latest recorded change at or before the
    # move, else (no change before it, none recording its arrival) the stay since its creation in the
    # stage the move leaves.
    cursor.execute(
        f"""
        INSERT INTO stage_changes (lead_id, from_stage, to_stage, changed_at, previous_stage, days_in_previous_stage)
        SELECT t.lead_id, NULL, 'new', {NEW_CREATED_AT}, NULL, NULL FROM import_rows t
         WHERE t.is_new AND (t.dated OR t.stage = 'new')
        UNION ALL
        SELECT t.lead_id, 'new', t.stage, {NEW_STAGE_ENTERED_AT},
               CASE WHEN {NEW_CREATED_AT} <= {NEW_STAGE_ENTERED_AT} THEN 'new' END,
               CASE WHEN {NEW_CREATED_AT} <= {NEW_STAGE_ENTERED_AT}
                    THEN extract(epoch FROM {NEW_STAGE_ENTERED_AT} - {NEW_CREATED_AT}) / 86400.0 END
          FROM import_rows t WHERE t.is_new AND t.dated AND t.stage <> 'new'
        UNION ALL
        SELECT t.lead_id, NULL, t.stage, %(now)s, NULL, NULL
          FROM import_rows t WHERE t.is_new AND NOT t.dated AND t.stage <> 'new'
        UNION ALL
        SELECT m.id, m.from_stage, m.stage, m.stage_entered_at, coalesce(p.stage, c.stage),
               extract(epoch FROM m.stage_entered_at - coalesce(p.entered_at, c.entered_at)) / 86400.0
          FROM import_matched m
          LEFT JOIN LATERAL (
              SELECT s.to_stage::text AS stage, s.changed_at AS entered_at FROM stage_changes s
               WHERE s.lead_id = m.id AND s.changed_at <= m.stage_entered_at
               ORDER BY s.changed_at DESC, s.id DESC LIMIT 1) p ON true
          LEFT JOIN LATERAL (
              SELECT m.from_stage AS stage, m.created_at AS entered_at
               WHERE p.stage IS NULL AND m.created_at <= m.stage_entered_at
                 AND NOT EXISTS (SELECT FROM stage_changes s WHERE s.lead_id = m.id AND s.from_stage IS NULL)) c
            ON true
         WHERE m.moved
        """,
        {"now": now},
    )
    return created, changed, unchanged


# A lead's stored risk, and the risk derived for it: compared to stamp risk_at only when it changed.
_RISK_OF_D = ("(d.risk_level, d.risk_points, d.risk_reasons, d.risk_valid_until, d.last_reply_at, "
              "d.last_reply_sentiment)")
_RISK_OF_L = ("(l.risk_level::text, l.risk_points, l.risk_reasons, l.risk_valid_until, l.last_reply_at, "
              "l.last_reply_sentiment)")
_NO_RISK = "(NULL::text, NULL::int, '[]'::jsonb, NULL::timestamptz, NULL::timestamptz, NULL::double precision)"
# Columns where a cell with a value overwrites the stored one and a blank cell keeps it.
_MERGED_COLUMNS = ("external_id", "name", "email", "phone", "title", "company", "company_size", "source",
                   "deal_value", "created_at")


def _merge_matched(cursor, now: datetime) -> tuple[int, int]:
    """The matched leads the file changes, as they will be stored, into `import_matched` (locked until
    the import ends, so what is scored is what is written; a lead being edited is waited for). A cell
    with a value overwrites, a blank keeps; custom fields are merged (the file's keys win); a stage the
    file states and the lead is not in is a move (closing sets closed_at, reopening clears it).
    Returns (changed, unchanged) matched leads."""
    moved = "(t.stage IS NOT NULL AND t.stage <> l.stage)"
    entered = "CASE WHEN t.stage IN ('won', 'lost') THEN coalesce(t.closed_at, %(now)s) ELSE %(now)s END"
    merged = [f"coalesce(t.{c}, l.{c}) AS {c}" for c in _MERGED_COLUMNS] + [
        "l.custom_fields || t.custom_fields AS custom_fields",
        f"CASE WHEN {moved} THEN t.stage ELSE l.stage END AS stage",
        f"CASE WHEN {moved} THEN {entered} ELSE l.stage_entered_at END AS stage_entered_at",
        f"CASE WHEN {moved} AND t.stage IN ('won', 'lost') THEN coalesce(t.closed_at, %(now)s) "
        f"WHEN {moved} THEN NULL WHEN l.stage IN ('won', 'lost') THEN coalesce(t.closed_at, l.closed_at) "
        "ELSE l.closed_at END AS closed_at",
        f"CASE WHEN {moved} OR (t.closed_at IS DISTINCT FROM l.closed_at AND t.closed_at IS NOT NULL"
        " AND l.stage IN ('won', 'lost')) THEN NULL ELSE l.score_at_close END AS score_at_close",
    ]
    differs = [f"(t.{c} IS NOT NULL AND t.{c} IS DISTINCT FROM l.{c})" for c in _MERGED_COLUMNS] + [
        moved,
        "NOT (l.custom_fields @> t.custom_fields)",
        "(l.stage IN ('won', 'lost') AND t.closed_at IS NOT NULL AND t.closed_at IS DISTINCT FROM l.closed_at)",
    ]
    cursor.execute("DROP TABLE IF EXISTS import_matched")
    cursor.execute(
        f"""
        CREATE TEMP TABLE import_matched ON COMMIT DROP AS
        SELECT l.id, l.stage::text AS from_stage, {moved} AS moved, {', '.join(merged)}
          FROM import_rows t JOIN leads l ON l.id = t.lead_id
         WHERE NOT t.is_new AND ({' OR '.join(differs)})
           FOR NO KEY UPDATE OF l
        """,
        {"now": now},
    )
    changed = cursor.rowcount
    cursor.execute("ANALYZE import_matched")
    cursor.execute("SELECT count(*) FROM import_rows WHERE NOT is_new")
    return changed, cursor.fetchone()[0] - changed


def _record_import(session: Session, report: ValidationReport, mapping: ImportMapping, *, now: datetime,
                   file_name: str, actor_id: int | None) -> int:
    """Add the import's row to `imports` and return its id. The id is drawn first: under row security
    an INSERT ... RETURNING needs a read policy the owner's command line does not go through anyway."""
    import_id = session.execute(text("SELECT nextval(pg_get_serial_sequence('imports', 'id'))")).scalar_one()
    session.execute(
        text("INSERT INTO imports (id, file_name, imported_at, actor_id, row_count, dated_rows, date_format, "
             "row_order) VALUES (:id, :file_name, :now, :actor_id, :rows, :dated, :date_format, :row_order)"),
        {"id": import_id, "file_name": file_name, "now": now, "actor_id": actor_id, "rows": report.rows,
         "dated": report.dated_rows, "date_format": mapping.date_format,
         "row_order": None if report.has_dates else (mapping.row_order or UNKNOWN_ORDER)},
    )
    return import_id


def import_file(
    session: Session,
    path: Path,
    mapping: ImportMapping,
    *,
    now: datetime,
    dry_run: bool = False,
    progress: Callable[[ImportProgress], None] | None = None,
    engine: ScoringEngine | None = None,
    actor_id: int | None = None,
    file_name: str | None = None,
    control: ImportControl | None = None,
    skip_invalid: bool = False,
) -> ImportSummary:
    """Import every row of the file or none (recorded in the audit log as `actor_id`'s import): validate
    all rows, then write and score them in one transaction and commit (roll back with `dry_run`, which
    still reports what would happen and leaves even the id sequences alone).

    `file_name` is the name the user knows the file by (an upload is kept under a random one); the
    import is recorded under it in `imports`, with how its dates were read and the order of its rows
    (mapping.row_order) when it has no dates. Every new lead keeps its import and file row.

    With `skip_invalid` the rows with problems are left out (the manager chose "import the valid rows,
    skip the rest"; validate.write_skipped_rows lists them) and the others are imported, unless the
    file or mapping as a whole is wrong or no row is valid.

    Raises ImportRejected (with the validation report) when any row is wrong, and for rows that clash
    with stored leads; the database is then exactly as it was. Only a manager imports (Forbidden for a
    rep: under their row security the rows could not be matched to the leads they cannot see); the
    command line runs as the tables' owner, acting for nobody in particular.

    `control` lets another thread cancel the import (ImportCancelled; nothing stored) and see its step.
    """
    actor = acting_user(session, actor_id)
    if actor is not None:
        require_role(actor, Role.MANAGER, "import leads")
    started = perf_counter()
    path = Path(path)
    engine = engine or active_engine(session)
    report = ValidationReport()
    rows_read = 0

    def say(message: str, written: int, phase: str = "writing") -> None:
        if control is not None:
            control.step = message
            control.check()
        if progress:
            progress(ImportProgress(phase, rows_read, written, message))

    def reading(step: ImportProgress) -> None:
        if control is not None:
            control.step = f"Checking rows ({step.rows_read:,} read)"
            control.check()
        if progress:
            progress(step)

    with tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as spool:
        # Pass 1, streamed: check every row; valid ones go to a spool file ready for COPY. Nothing is
        # scored before the whole file is known to be valid.
        # Duplicates within the file are found in SQL after COPY (bounded memory), except when the manager
        # chose to skip the rows with problems: then a repeated row is one of them, skipped and listed in
        # the download like any other (write_skipped_rows), so this pass must know it.
        count = _spool_records(_checked_rows(path, mapping, now, report, reading, duplicates=skip_invalid), spool)
        rows_read = report.rows
        # A wrong mapping stops before any row is read: no valid rows either.
        if not report.ok and (not skip_invalid or report.valid_rows == 0):
            raise ImportRejected(report.summary(), report)
        name = (file_name or path.name).strip()[:255] or "import.csv"
        try:
            connection = session.connection().connection.dbapi_connection
            cursor = connection.cursor()
            limit_orphans(cursor)
            cursor.execute("SELECT pg_backend_pid()")
            if control is not None:
                control.attach(connection, cursor.fetchone()[0])
            _take_import_lock(cursor, control, say)
            import_id = None if dry_run else _record_import(session, report, mapping, now=now, file_name=name,
                                                             actor_id=actor.id if actor is not None else None)
            say(f"Writing {count:,} rows", 0)
            created, updated, unchanged = _write(
                session, spool, now, mapping,
                lambda message, n: say(message, n),
                import_id=import_id, dry_run=dry_run,
                newest_first=mapping.row_order == NEWEST_FIRST and not report.has_dates,
                engine=engine, control=control,
            )
            say("Committing", created + updated)
            audit.record(session, now=now, actor_id=actor.id if actor is not None else None, action="leads_imported",
                         entity="import", entity_id=import_id,
                         new={"file": name, "rows": report.rows, "created": created,
                              "updated": updated, "unchanged": unchanged})
            if control is not None:
                control.check()  # a cancel that came during the last statement
            if dry_run:
                session.rollback()
            else:
                session.commit()
        except IntegrityError as error:
            session.rollback()
            raise ImportRejected(f"The database refused the import, nothing was stored: {error.orig}".strip()) from None
        except BaseException as error:
            session.rollback()
            if (control is not None and control.cancelled.is_set() and isinstance(error, Exception)
                    and not isinstance(error, ImportCancelled)):
                raise ImportCancelled() from None  # the cancel request ended a statement
            raise
        finally:
            if control is not None:
                control.detach()
    summary = ImportSummary(rows=report.rows, created=created, updated=updated,
                            skipped=unchanged + report.blank_rows, seconds=perf_counter() - started,
                            dry_run=dry_run, notes=tuple(report.warnings), import_id=import_id,
                            invalid=report.rows - report.valid_rows)
    say(summary.describe(), created + updated, "done")
    return summary

