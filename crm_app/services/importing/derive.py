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

A new lead has no activities, so what is derived for it depends only on its facts (size, source,
custom fields, stage, dates): the new leads are derived once per distinct facts, in SQL's grouping,
and each row then takes its facts' result in one join. A file's new leads share few (the benchmark's
33,333 new leads: 400), so the Python work no longer grows with the new rows.
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import text
from sqlmodel import Session

from crm_app.scoring import ActivityFact, LeadFacts, RuleBasedScoringEngine, ScoringEngine
from crm_app.scoring.blend import score_many
from crm_app.scoring.risk import RiskResult
from crm_app.services.out_of_fold import score_leads
from crm_app.services.risk import assess_unwritten
from crm_app.services.risk_sql import assessed_sql, score_unscored_messages
from crm_app.services.rules_sql import scored_sql

BATCH = 2_000
DERIVED_COLUMNS = (
    "lead_id int PRIMARY KEY, score int NOT NULL, tier text NOT NULL, reasons jsonb NOT NULL, "
    "valid_until timestamptz, score_at_close int, risk_level text, risk_points int, risk_reasons jsonb NOT NULL, "
    "risk_valid_until timestamptz, last_reply_at timestamptz, last_reply_sentiment double precision"
)
# A new lead's dates as the INSERT stores them (load.py uses the same expressions).
NEW_CREATED_AT = "coalesce(t.created_at, t.closed_at, %(now)s)"
NEW_STAGE_ENTERED_AT = "coalesce(t.closed_at, t.created_at, %(now)s)"

# A new lead has no activities, so its score and risk follow from these facts alone (and the moment):
# rows that share them are derived once (a file's new leads share few: sizes, sources, stages, and
# often no dates). The key is the facts as text: NULL-safe, and custom fields as typed (jsonb's text,
# so 1 and 1.0 stay apart as the scoring reads them).
_NEW_FACTS = (f"t.company_size, t.source, t.custom_fields, t.stage, {NEW_STAGE_ENTERED_AT} AS stage_entered_at, "
              f"{NEW_CREATED_AT} AS created_at, r.stagnation_days")
_NEW_KEY = (f"row(t.company_size, t.source, t.custom_fields::text, t.stage, {NEW_STAGE_ENTERED_AT}, "
            f"{NEW_CREATED_AT}, r.stagnation_days)::text")
_NEW_FACTS_TABLE = f"""
    CREATE TEMP TABLE import_new_facts ON COMMIT DROP AS
    SELECT row_number() OVER (ORDER BY key)::int AS id, f.*
      FROM (SELECT DISTINCT ON (key) key, company_size, source, custom_fields, stage, stage_entered_at, created_at,
                   stagnation_days
              FROM (SELECT {_NEW_KEY} AS key, {_NEW_FACTS}
                      FROM import_rows t LEFT JOIN stage_rules r ON r.stage = t.stage
                     WHERE t.is_new) k
             ORDER BY key) f
"""
_NEW_ROWS_DISTINCT = """
    SELECT id, company_size, source, custom_fields, stage, stage_entered_at, created_at, NULL::timestamptz,
           NULL::int, stagnation_days
      FROM import_new_facts
"""
# Every new lead gets what was derived for its facts.
_NEW_DERIVED = f"""
    INSERT INTO import_derived
    SELECT t.lead_id, d.score, d.tier, d.reasons, d.valid_until, d.score_at_close, d.risk_level, d.risk_points,
           d.risk_reasons, d.risk_valid_until, d.last_reply_at, d.last_reply_sentiment
      FROM import_rows t LEFT JOIN stage_rules r ON r.stage = t.stage
      JOIN import_new_facts f ON f.key = {_NEW_KEY}
      JOIN import_facts_derived d ON d.lead_id = f.id
     WHERE t.is_new
"""
_MATCHED_ROWS = """
    SELECT m.id, m.company_size, m.source, m.custom_fields, m.stage, m.stage_entered_at, m.created_at,
           m.closed_at, m.score_at_close, r.stagnation_days
      FROM import_matched m LEFT JOIN stage_rules r ON r.stage = m.stage
"""


# The changed matched leads as they are about to be written, as the set-based rubric and risk read a lead
# (rules_sql.py, risk_sql.py: the relation is named `leads`). The version is not read: nothing compares it.
_MATCHED_AS_LEADS = """(SELECT m.id, 0 AS version, m.company_size, m.stage, m.stage_entered_at, m.created_at,
                               m.closed_at, m.score_at_close FROM import_matched m) AS leads"""
_ALL_IDS = {"lo": 0, "hi": 2_147_483_647}  # every id: the ranges of rules_sql/risk_sql are not used here
# With the rules, the changed matched leads' scores, scores at close and risk in one statement each, inside
# PostgreSQL (what a rescore and a risk pass of those leads would store, and what the Python path below
# computes, ~10x faster: a 66,667-lead import spent ~25 s scoring them in Python).
_MATCHED_DERIVED_SQL = f"""
    INSERT INTO import_derived
    SELECT s.id, s.score, s.tier, s.reasons, s.valid_until, c.score, r.level, r.points, r.reasons, r.valid_until,
           r.reply_at, r.reply_sentiment
      FROM ({scored_sql("TRUE", ":now", False, dense=False, leads=_MATCHED_AS_LEADS)}) s
      JOIN ({assessed_sql("TRUE", dense=False, leads=_MATCHED_AS_LEADS, changed_only=False)}) r ON r.id = s.id
      LEFT JOIN ({scored_sql("leads.closed_at IS NOT NULL AND leads.score_at_close IS NULL", "leads.closed_at",
                              True, dense=False, leads=_MATCHED_AS_LEADS)}) c ON c.id = s.id
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


def _derive_matched_in_sql(session: Session, now: datetime) -> None:
    """The rubric's scores and the risk of the changed matched leads, set-based (the team scores with the
    rules). Replies and notes of open deals stored without a sentiment are scored first, as the Python
    path does when it reads them."""
    params = {"now": now, **_ALL_IDS}
    score_unscored_messages(session, "TRUE", params,
                             leads="(SELECT m.id, m.stage FROM import_matched m) AS leads")
    session.execute(text("SET LOCAL jit = off"))  # planning this with JIT costs more than running it
    # The matched leads are scattered over the table, so their activities are best read by lead through
    # ix_activities_lead_occurred. At the default random_page_cost (4, a spinning disk's) the planner
    # read all of them by sequential scan and hashed them, twice (the rubric's and the risk's), which
    # under row security runs serially (the policies' functions are not parallel safe): a 100k-row web
    # import into 1M spent 12.6-13.8 s here against the owner's 5.9 s; at 1.1 (an SSD's, or a cached
    # table's) it reads by index: 5.6 s, the owner's 6.2 s (load ~1).
    session.execute(text("SET LOCAL random_page_cost = 1.1"))
    session.execute(text(_MATCHED_DERIVED_SQL), params)
    session.execute(text("RESET jit"))
    session.execute(text("RESET random_page_cost"))


def _moment(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def derive_scores_and_risk(session: Session, engine: ScoringEngine, now: datetime,
                           check: Callable[[], None] | None = None) -> int:
    """Fill `import_derived` with the score and risk of every new lead and every changed matched lead,
    streamed from the temporary tables in batches (memory bounded by the batch, whatever the file's size).
    New leads are derived once per distinct facts (`import_new_facts`), then joined to their rows.
    `check` runs between batches (a cancel). Returns how many were derived (distinct facts of new leads,
    and matched leads)."""
    connection = session.connection().connection.dbapi_connection
    cursor = connection.cursor()
    for table in ("import_derived", "import_facts_derived", "import_new_facts"):
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
    cursor.execute(f"CREATE TEMP TABLE import_derived ({DERIVED_COLUMNS}) ON COMMIT DROP")
    cursor.execute(f"CREATE TEMP TABLE import_facts_derived ({DERIVED_COLUMNS}) ON COMMIT DROP")
    cursor.execute(_NEW_FACTS_TABLE, {"now": now})
    done = 0
    passes = [("import_facts_derived", "import_new_rows", _NEW_ROWS_DISTINCT, False)]
    if type(engine) is RuleBasedScoringEngine:  # the rubric itself, which rules_sql.py computes
        _derive_matched_in_sql(session, now)
        cursor.execute("SELECT count(*) FROM import_derived")
        done += cursor.fetchone()[0]
    else:
        passes.append(("import_derived", "import_matched_rows", _MATCHED_ROWS, True))
    for table, name, query, stored in passes:
        with tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as spool:
            writer = csv.writer(spool)
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
            cursor.copy_expert(f"COPY {table} FROM STDIN WITH (FORMAT csv)", spool)
        if not stored:
            cursor.execute("ANALYZE import_new_facts")
            cursor.execute(_NEW_DERIVED, {"now": now})
    cursor.execute("ANALYZE import_derived")
    return done
