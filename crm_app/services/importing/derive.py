"""What an import derives from its rows before writing any lead: each lead's score and deal risk.

A lead row written costs an entry in each of the leads table's indexes (two dozen, three of them
trigram indexes) and a run of its row triggers. Writing a matched lead, then its new score, then its
risk rewrote it three times: at 20,000 rows into 100,000 leads that was ~11 s of ~23 s. So the
scores and risk of the new leads (from the file) and of the changed matched leads (the file merged
over the stored lead, with its stored activities) are computed first, streamed in batches into the
temporary table `import_derived` (one row per lead id), and the INSERT and the UPDATE then write
each lead once with everything.

The scores come from the team's engine, in Python, a batch per call (a model scores a batch ~30x
faster than lead by lead); the risk from scoring/risk.py through services/risk.py. A set-based
version of either can replace `_derive_batch` for its part: the rows to derive are in the temporary
tables `import_rows` (new leads, `is_new`) and `import_matched` (changed matched leads, merged).
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

from sqlmodel import Session

from crm_app.scoring import ActivityFact, LeadFacts, ScoringEngine
from crm_app.scoring.blend import score_many
from crm_app.scoring.risk import RiskResult
from crm_app.services.out_of_fold import score_leads
from crm_app.services.risk import assess_unwritten

BATCH = 2_000
DERIVED_COLUMNS = (
    "lead_id int PRIMARY KEY, score int NOT NULL, tier text NOT NULL, reasons jsonb NOT NULL, "
    "valid_until timestamptz, score_at_close int, risk_level text, risk_points int, risk_reasons jsonb NOT NULL, "
    "risk_valid_until timestamptz, last_reply_at timestamptz, last_reply_sentiment double precision"
)
# A new lead's dates as the INSERT stores them (load.py uses the same expressions).
NEW_CREATED_AT = "coalesce(t.created_at, t.closed_at, %(now)s)"
NEW_STAGE_ENTERED_AT = "coalesce(t.closed_at, t.created_at, %(now)s)"

_NEW_ROWS = f"""
    SELECT t.lead_id AS id, t.company_size, t.source, t.custom_fields, t.stage,
           {NEW_STAGE_ENTERED_AT} AS stage_entered_at, {NEW_CREATED_AT} AS created_at,
           NULL::timestamptz AS closed_at, NULL::int AS score_at_close, r.stagnation_days
      FROM import_rows t LEFT JOIN stage_rules r ON r.stage = t.stage
     WHERE t.is_new
"""
_MATCHED_ROWS = """
    SELECT m.id, m.company_size, m.source, m.custom_fields, m.stage, m.stage_entered_at, m.created_at,
           m.closed_at, m.score_at_close, r.stagnation_days
      FROM import_matched m LEFT JOIN stage_rules r ON r.stage = m.stage
"""


class _Row:
    """One lead as it will be written, with the attribute names risk.assess_unwritten reads."""

    __slots__ = ("id", "company_size", "source", "custom_fields", "stage", "stage_entered_at", "created_at",
                 "closed_at", "score_at_close", "stagnation_days")

    def __init__(self, values: tuple):
        for name, value in zip(self.__slots__, values):
            setattr(self, name, value)


def _derive_batch(session: Session, engine: ScoringEngine, rows: list[_Row], now: datetime, *, stored: bool,
                  writer) -> None:
    """Score and assess one batch. New leads (`stored=False`) have no activities: nothing in their facts
    ages, so a new closed deal's score at close is the score it gets now. A stored lead is scored with
    its activities; a closed deal the model learned from keeps its out-of-fold score (out_of_fold.py),
    and one without a score at close gets it from the activities before it closed."""
    if stored:
        # One read of the batch's activities serves the risk and the score.
        activities: dict[int, list[ActivityFact]] = defaultdict(list)
        risks = assess_unwritten(session, rows, now, activities=activities)
        facts = [LeadFacts(company_size=row.company_size, source=row.source, activities=tuple(activities[row.id]),
                           custom_fields=row.custom_fields or {}) for row in rows]
        scores = score_leads(session, engine, [row.id for row in rows], facts, now)
    else:
        facts = [LeadFacts(company_size=row.company_size, source=row.source, custom_fields=row.custom_fields or {})
                 for row in rows]
        scores = score_many(engine, facts, now)
        risks = assess_unwritten(session, rows, now, stored=False)
    for row, fact, score, risk in zip(rows, facts, scores, risks):
        if not stored:
            at_close = score.score if row.stage in ("won", "lost") else None
        elif row.closed_at is not None and row.score_at_close is None:
            before = tuple(a for a in fact.activities if a.occurred_at < row.closed_at)
            then = LeadFacts(company_size=row.company_size, source=row.source, activities=before,
                             custom_fields=row.custom_fields or {})
            at_close = engine.score(then, row.closed_at).score
        else:
            at_close = None  # kept as stored
        writer.writerow((
            row.id, score.score, score.tier.value, json.dumps([x.as_dict() for x in score.reasons], ensure_ascii=False),
            _moment(score.valid_until), at_close, *_risk_columns(risk),
        ))


def _risk_columns(risk: RiskResult) -> tuple:
    """As services/risk.py stores a result: a closed deal has no level, no points."""
    return (risk.level.value if risk.level else None, risk.points if risk.level else None,
            json.dumps([x.as_dict() for x in risk.reasons], ensure_ascii=False), _moment(risk.valid_until),
            _moment(risk.last_reply_at), risk.last_reply_sentiment)


def _moment(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def derive_scores_and_risk(session: Session, engine: ScoringEngine, now: datetime,
                           check: Callable[[], None] | None = None) -> int:
    """Fill `import_derived` with the score and risk of every new lead and every changed matched lead,
    streamed from the temporary tables in batches (memory bounded by the batch, whatever the file's size).
    `check` runs between batches (a cancel). Returns how many leads were derived."""
    connection = session.connection().connection.dbapi_connection
    cursor = connection.cursor()
    cursor.execute("DROP TABLE IF EXISTS import_derived")
    cursor.execute(f"CREATE TEMP TABLE import_derived ({DERIVED_COLUMNS}) ON COMMIT DROP")
    done = 0
    with tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as spool:
        writer = csv.writer(spool)
        for name, query, stored in (("import_new_rows", _NEW_ROWS, False),
                                    ("import_matched_rows", _MATCHED_ROWS, True)):
            reader = connection.cursor(name=name)
            reader.itersize = BATCH
            reader.execute(query, {"now": now})
            while batch := reader.fetchmany(BATCH):
                if check is not None:
                    check()
                _derive_batch(session, engine, [_Row(values) for values in batch], now, stored=stored, writer=writer)
                done += len(batch)
            reader.close()
        spool.seek(0)
        cursor.copy_expert("COPY import_derived FROM STDIN WITH (FORMAT csv)", spool)
    cursor.execute("ANALYZE import_derived")
    return done
