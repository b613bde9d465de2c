"""Keeping stored deal risk true: one lead inside a change's transaction, every lead, or the leads
whose risk time alone has moved (the sweep). The rules are in scoring/risk.py.

Sentiment is computed once per reply or note, when it is written (`message_sentiment`), and stored
on the activity: reassessing risk reads numbers, never bodies. Replies stored before that (an older
database, an import) are scored the first time their lead is reassessed and the result is kept.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime

from psycopg2.extras import Json, execute_values
from sqlalchemy import text
from sqlmodel import Session

from crm_app.db.models import Lead
from crm_app.domain import ActivityKind, Stage
from crm_app.scoring.engine import ActivityFact
from crm_app.scoring.risk import Message, RiskFacts, RiskResult, assess_risk
from crm_app.scoring.sentiment import sentiment_of
from crm_app.services.risk_sql import reassess_risk_where

# Texts whose tone says something about the deal: what the prospect wrote, what the rep noted.
MESSAGE_KINDS = (ActivityKind.EMAIL_RECEIVED, ActivityKind.NOTE)
_MESSAGE_KIND_VALUES = [k.value for k in MESSAGE_KINDS]


def message_sentiment(kind: ActivityKind | str, body: str | None, names: Iterable[str] = ()) -> float | None:
    """The sentiment to store on a new activity: for a reply or note with text, else None. `names`
    (the lead's, its company's) do not count as words of sentiment."""
    if ActivityKind(kind) in MESSAGE_KINDS and body and body.strip():
        return sentiment_of(body, names)
    return None


# Run on the driver's cursor (psycopg2 parameters).
_ACTIVITIES_SQL = """
    SELECT id, lead_id, kind, occurred_at, sentiment,
           CASE WHEN sentiment IS NULL AND kind = ANY(%(kinds)s) THEN body END AS unscored_body
      FROM activities
     WHERE lead_id = ANY(%(ids)s)
     -- In id order: of two activities at the same instant the first written counts as the earlier,
     -- as in the set-based assessment (services/risk_sql.py).
     ORDER BY id
"""


# Enum lookups by value, once: calling ActivityKind(value) per activity cost a third of reading them.
_KIND_OF = {kind.value: kind for kind in ActivityKind}
_STAGE_OF = {stage.value: stage for stage in Stage}
_MESSAGE_KIND_SET = frozenset(MESSAGE_KINDS)


def _facts_of(session: Session, leads: list,
              every_leads_activities: dict[int, list[ActivityFact]] | None = None) -> dict[int, RiskFacts]:
    """RiskFacts for rows with (id, stage, stage_entered_at, created_at, stagnation_days), in one
    query for all their activities. Scores and stores the sentiment of replies and notes that
    have none yet. With `every_leads_activities`, the activities of every lead, closed ones too, are
    added to it from the same query (an import scores the leads with them: one read, not two)."""
    open_ids = [row.id for row in leads if not _STAGE_OF[row.stage].is_closed]
    open_set = set(open_ids)
    read_ids = open_ids if every_leads_activities is None else [row.id for row in leads]
    activities: dict[int, list[ActivityFact]] = defaultdict(list)
    messages: dict[int, list[Message]] = defaultdict(list)
    newly_scored: list[tuple[int, float]] = []
    if read_ids:
        # The driver's own cursor: tens of thousands of rows a batch, read as plain tuples.
        cursor = session.connection().connection.cursor()
        cursor.execute(_ACTIVITIES_SQL, {"ids": read_ids, "kinds": _MESSAGE_KIND_VALUES})
        for activity_id, lead_id, kind_value, occurred_at, sentiment, unscored_body in cursor.fetchall():
            kind = _KIND_OF[kind_value]
            fact = ActivityFact(kind, occurred_at)
            if every_leads_activities is not None:
                every_leads_activities[lead_id].append(fact)
            if lead_id not in open_set:
                continue  # a closed deal's risk reads no activity
            activities[lead_id].append(fact)
            if kind in _MESSAGE_KIND_SET:
                if sentiment is None and unscored_body and unscored_body.strip():
                    sentiment = sentiment_of(unscored_body)
                    newly_scored.append((activity_id, sentiment))
                messages[lead_id].append(Message(kind, occurred_at, sentiment))
    if newly_scored:
        execute_values(
            session.connection().connection.cursor(),
            "UPDATE activities AS a SET sentiment = v.s FROM (VALUES %s) AS v(id, s) WHERE a.id = v.id",
            newly_scored,
            page_size=1000,
        )
    return {
        row.id: RiskFacts(
            stage=_STAGE_OF[row.stage], stage_entered_at=row.stage_entered_at, created_at=row.created_at,
            stage_limit_days=row.stagnation_days, activities=tuple(activities[row.id]),
            messages=tuple(messages[row.id]),
        )
        for row in leads
    }


_LEADS_SQL = """
    SELECT l.id, l.version, l.stage, l.stage_entered_at, l.created_at, r.stagnation_days,
           l.risk_level, l.risk_points, l.risk_reasons, l.risk_valid_until, l.last_reply_at, l.last_reply_sentiment
      FROM leads l LEFT JOIN stage_rules r ON r.stage = l.stage
"""


def _stored_as(result: RiskResult) -> tuple:
    """A result as the lead's risk columns hold it (level, points, reasons, expiry, last reply, tone)."""
    return (result.level.value if result.level else None, result.points if result.level else None,
            [x.as_dict() for x in result.reasons], result.valid_until, result.last_reply_at,
            result.last_reply_sentiment)


def _changed(rows: list, results: list[RiskResult]) -> list[tuple[int, int, RiskResult]]:
    """(id, version, result) of the rows whose stored risk differs from the new result: only those are
    sent to be written (the UPDATE checks again, in SQL), so an unchanged pass sends nothing."""
    return [
        (row.id, row.version, result)
        for row, result in zip(rows, results)
        if (row.risk_level, row.risk_points, row.risk_reasons, row.risk_valid_until, row.last_reply_at,
            row.last_reply_sentiment) != _stored_as(result)
    ]


def apply_risk(lead: Lead, result: RiskResult, now: datetime) -> None:
    lead.risk_level = result.level.value if result.level else None
    lead.risk_points = result.points if result.level else None
    lead.risk_reasons = [r.as_dict() for r in result.reasons]
    lead.risk_at = now
    lead.risk_valid_until = result.valid_until
    lead.last_reply_at = result.last_reply_at
    lead.last_reply_sentiment = result.last_reply_sentiment


def assess_lead_risk(session: Session, lead: Lead, now: datetime) -> RiskResult:
    """Reassess and store one lead's risk inside the caller's transaction (no commit)."""
    session.flush()
    row = session.execute(text(_LEADS_SQL + " WHERE l.id = :id"), {"id": lead.id}).one()
    result = assess_risk(_facts_of(session, [row])[lead.id], now)
    apply_risk(lead, result, now)
    session.add(lead)
    return result


_UPDATE_RISK = """
    UPDATE leads AS l
       SET risk_level = v.level, risk_points = v.points, risk_reasons = v.reasons, risk_at = v.at,
           risk_valid_until = v.valid_until, last_reply_at = v.reply_at, last_reply_sentiment = v.reply_sentiment
      FROM (VALUES %s) AS v(id, version, level, points, reasons, at, valid_until, reply_at, reply_sentiment)
     WHERE l.id = v.id AND l.version = v.version
       -- Only what changed: most reassessments (every closed deal, a quiet day) change nothing,
       -- and an unchanged row is not rewritten with its indexes.
       AND (l.risk_level, l.risk_points, l.risk_reasons, l.risk_valid_until, l.last_reply_at, l.last_reply_sentiment)
           IS DISTINCT FROM (v.level, v.points, v.reasons, v.valid_until, v.reply_at, v.reply_sentiment)
    RETURNING l.id
"""
_UPDATE_TEMPLATE = ("(%s, %s, %s, %s::integer, %s::jsonb, %s::timestamptz, %s::timestamptz, %s::timestamptz, "
                    "%s::double precision)")


def _store(session: Session, assessed: list[tuple[int, int, RiskResult]], now: datetime) -> int:
    """Write (id, version, result) where the risk changed; a lead changed since it was read was
    reassessed by that change and is left alone. Returns how many were written."""
    if not assessed:
        return 0
    written = execute_values(
        session.connection().connection.cursor(),
        _UPDATE_RISK,
        [
            (lead_id, version, r.level.value if r.level else None, r.points if r.level else None,
             Json([x.as_dict() for x in r.reasons]), now, r.valid_until, r.last_reply_at, r.last_reply_sentiment)
            for lead_id, version, r in assessed
        ],
        template=_UPDATE_TEMPLATE,
        page_size=1000,
        fetch=True,
    )
    return len(written)


def reassess_all_risk(
    session: Session, now: datetime, batch_size: int = 5000, progress: Callable[[int], None] | None = None,
    ids: tuple[int, int] | None = None,
) -> int:
    """Reassess every lead's risk (after a rule change, or for generated data), set-based in the
    database (services/risk_sql.py), range by range on several connections where the session may fan
    out; only the leads with ids in the inclusive range `ids` when given. Returns how many changed.
    (`batch_size` is kept for callers; ranges hold risk_sql.CHUNK leads.)"""
    # A closed deal already without risk has nothing to reassess.
    condition, params = _within(ids, "leads.stage NOT IN ('won', 'lost') OR leads.risk_level IS NOT NULL")
    return reassess_risk_where(session, now, condition, params, progress)


def reassess_expired_risk(session: Session, now: datetime, batch_size: int = 2000,
                          ids: tuple[int, int] | None = None) -> int:
    """Reassess the deals whose risk time alone has changed (a deal past its stage limit, a reply
    ageing out): what the periodic sweep runs, set-based in the database; only among the leads with
    ids in the inclusive range `ids` when given. Returns how many changed."""
    condition, params = _within(ids, "leads.risk_valid_until <= :now")
    return reassess_risk_where(session, now, condition, params)


def _within(ids: tuple[int, int] | None, condition: str) -> tuple[str, dict]:
    """`condition` (SQL over `leads`) narrowed to the leads with ids in the inclusive range `ids`
    (all when None), with the range's parameters."""
    if ids is None:
        return condition, {}
    return (f"leads.id BETWEEN :range_first AND :range_last AND ({condition})",
            {"range_first": ids[0], "range_last": ids[1]})


def expire_stage_risk(session: Session, stage: str) -> None:
    """A stage's limit changed: its deals' risk is due again, for the sweep (no commit). Any moment
    already past will do; the moment each entered the stage needs no clock."""
    session.execute(text("UPDATE leads SET risk_valid_until = stage_entered_at WHERE stage = :stage"),
                    {"stage": stage})


def reassess_risk_in_transaction(session: Session, lead_ids: list[int], now: datetime, batch_size: int = 5000) -> int:
    """Assess these leads' risk inside the caller's transaction (no commit, unlike reassess_all_risk):
    for writers such as the CSV import that store leads and what is derived from them all at once."""
    done = 0
    for start in range(0, len(lead_ids), batch_size):
        leads = session.execute(text(_LEADS_SQL + " WHERE l.id = ANY(:ids)"),
                                {"ids": lead_ids[start:start + batch_size]}).all()
        facts = _facts_of(session, leads)
        done += _store(session, _changed(leads, [assess_risk(facts[row.id], now) for row in leads]), now)
    return done


def assess_unwritten(session: Session, rows: list, now: datetime, *, stored: bool = True,
                     activities: dict[int, list[ActivityFact]] | None = None) -> list[RiskResult]:
    """The risk of leads as they are about to be written, without writing it: rows with (id, stage,
    stage_entered_at, created_at, stagnation_days), in order. An import computes its leads' risk
    before its one write of each lead (rewriting a lead costs an entry in each of its indexes).
    `stored=False`: leads not stored yet, so without activities (none are read). With `activities`
    (a defaultdict(list), stored leads), every lead's activities are added to it from the same read."""
    if not stored:
        return [assess_risk(RiskFacts(stage=Stage(row.stage), stage_entered_at=row.stage_entered_at,
                                      created_at=row.created_at, stage_limit_days=row.stagnation_days), now)
                for row in rows]
    facts = _facts_of(session, rows, activities)
    return [assess_risk(facts[row.id], now) for row in rows]
