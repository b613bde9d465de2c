"""Deal risk (scoring/risk.py) as set-based SQL: every lead of a range assessed in one statement.

Reassessing lead by lead in Python read each lead's activities into objects, assessed them and wrote
the results back: ~1,200-3,300 leads/s, over five minutes for a million generated leads. The rules need
a handful of per-lead aggregates (the latest reply and note with their tone, the last contact and
answer, the first request since our last contact, the first outreach since their last answer, the
engagement of the last two fortnights), which PostgreSQL computes in one pass over the range's
activities; the reasons are built with the engine's own words and constants, and only the leads whose
stored risk differs are written (as services/risk.py's Python path does).

tests/test_risk_sql.py compares every level, point, reason, expiry and last reply with
`assess_risk` lead by lead on generated deals covering the rules' boundaries.

Ties (two activities at the same instant) are broken by id, lowest first, in the SQL and in the Python
path (services/risk.py reads a lead's activities in id order): the latest reply is the first-written
of the latest ones, the first request or outreach the first-written of the earliest.

Moments are formatted in the session's time zone (`to_char`), as the Python path formats the datetimes
the driver returns in that same zone (the app's connections run in UTC); intervals are in hours, the
timedelta arithmetic of an aware datetime.

Replies and notes stored without a sentiment (an older database, an import) are scored in Python first
(found through a partial index, migration 0038) and kept, as the Python path does: the SQL then reads
numbers only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from psycopg2.extras import execute_values
from sqlalchemy import text
from sqlmodel import Session

from crm_app.domain import ANSWER_KINDS, CONTACT_KINDS, REQUEST_KINDS, ActivityKind
from crm_app.scoring import risk
from crm_app.scoring.rules import ENGAGEMENT_KINDS
from crm_app.scoring.sentiment import NEGATIVE_FROM, sentiment_of
from crm_app.services import rules_sql

CHUNK = rules_sql.CHUNK
# The kinds whose tone is stored (services/risk.py's MESSAGE_KINDS), as the partial index names them.
assert {k.value for k in (ActivityKind.EMAIL_RECEIVED, ActivityKind.NOTE)} == {'email_received', 'note'}


def _kinds(kinds) -> str:
    return "(" + ", ".join(f"'{k.value}'" for k in sorted(kinds)) + ")"


def _hours(delta: timedelta) -> str:
    assert not delta.microseconds and not delta.seconds % 3600, delta
    return f"interval '{delta.days * 24 + delta.seconds // 3600} hours'"


def _quote(words: str) -> str:
    return "'" + words.replace("'", "''") + "'"


def _day(moment: str) -> str:
    """risk._day(): `2 Dec`."""
    return f"to_char({moment}, 'FMDD Mon')"


def _iso(moment: str) -> str:
    """datetime.isoformat() of an aware moment: microseconds only when there are some."""
    return (f"to_char({moment}, 'YYYY-MM-DD\"T\"HH24:MI:SS') "
            f"|| CASE WHEN to_char({moment}, 'US') <> '000000' THEN '.' || to_char({moment}, 'US') ELSE '' END "
            f"|| to_char({moment}, 'TZH:TZM')")


def _noun(nouns: dict, kind: str) -> str:
    return "CASE " + kind + " " + " ".join(f"WHEN '{k.value}' THEN {_quote(v)}" for k, v in nouns.items()) + " END"


def _reason(points: str, words: str, code: str, at: str | None, kind: str | None = None) -> str:
    parts = [f"'points', {points}", f"'text', {words}", f"'code', '{code}'",
             f"'at', {_iso(at) if at else 'NULL'}"]
    if kind is not None:
        parts.append(f"'kind', {kind}")
    return f"jsonb_build_object({', '.join(parts)})"


def assessed_sql(condition: str, dense: bool, leads: str = "leads", changed_only: bool = True) -> str:
    """A SELECT of the leads with :lo < id <= :hi meeting `condition` (SQL over `leads`) whose stored
    risk differs from their risk at :now: (id, version, level, points, reasons, valid_until, reply_at,
    reply_sentiment). `dense`: most leads of the range qualify, so their activities are read in one
    index range scan rather than lead by lead.

    `leads` is the relation the leads are read from, named `leads` (the table by default; an import
    passes its leads as they are about to be written); `changed_only=False` returns every lead, the
    stored risk columns then unread."""
    window, day = _hours(risk.MESSAGE_WINDOW), _hours(risk.DAY)
    unanswered_after, engagement = _hours(risk.UNANSWERED_AFTER), _hours(risk.ENGAGEMENT_WINDOW)
    no_reply, no_reply_long = _hours(risk.NO_REPLY_AFTER), _hours(risk.NO_REPLY_LONG_AFTER)
    no_contact = _hours(risk.NO_CONTACT_AFTER)
    contact, answer, request = _kinds(CONTACT_KINDS), _kinds(ANSWER_KINDS), _kinds(REQUEST_KINDS)
    engaged_kinds = _kinds(ENGAGEMENT_KINDS)
    received, note = ActivityKind.EMAIL_RECEIVED.value, ActivityKind.NOTE.value
    negative = f"sentiment <= {NEGATIVE_FROM!r}"
    # An engagement that counts: not a reply saying no (nor any reply at the instant of one).
    engaged = f"kind IN {engaged_kinds} AND NOT (kind = '{received}' AND refused_then)"
    waiting = (f"kind IN {request} AND (contact_at IS NULL OR occurred_at > contact_at) "
               f"AND occurred_at > :now - {window}")
    outreach = f"kind IN {contact} AND (last_answer IS NULL OR occurred_at > last_answer)"
    range_filter = "a.lead_id > :lo AND a.lead_id <= :hi AND " if dense else ""
    neg_reply = f"coalesce(g.reply_at > :now - {window} AND g.reply_sentiment <= {NEGATIVE_FROM!r}, false)"
    unanswered = f"(g.wait_at <= :now - {unanswered_after})"
    neg_note = f"(g.note_at > :now - {window} AND g.note_sentiment <= {NEGATIVE_FROM!r})"
    past = f"(c.stage_entered_at + (c.stagnation_days + 1) * {day})"
    twice = f"(c.stage_entered_at + (2 * c.stagnation_days + 1) * {day})"
    stalled_twice, stalled = f"(:now >= {twice})", f"(:now >= {past} AND :now < {twice})"
    recent, before = "coalesce(g.recent, 0)", "coalesce(g.before, 0)"
    falling = f"({before} >= {risk.FALLING_MIN_BEFORE} AND {recent} * 2 < {before})"
    silent_long = f"(g.out_at IS NOT NULL AND NOT {neg_reply} AND :now - g.out_at >= {no_reply_long})"
    silent = (f"(g.out_at IS NOT NULL AND NOT {neg_reply} AND :now - g.out_at >= {no_reply} "
              f"AND :now - g.out_at < {no_reply_long})")
    quiet_since = "coalesce(g.contact_at, c.created_at)"
    quiet = f"(:now - {quiet_since} >= {no_contact})"
    stage_words = f"'In ' || initcap(c.stage) || ' since ' || {_day('c.stage_entered_at')}"
    silent_words = (f"CASE WHEN g.last_answer IS NULL THEN 'No reply since our first contact on ' "
                    f"ELSE 'No reply since our ' || {_noun(risk.OUTREACH_NOUNS, 'g.out_kind')} || ' on ' END "
                    f"|| {_day('g.out_at')}")
    reasons = [
        (neg_reply, risk.NEGATIVE_REPLY_POINTS,
         _reason(str(risk.NEGATIVE_REPLY_POINTS), f"'Negative reply on ' || {_day('g.reply_at')}",
                 "negative_reply", "g.reply_at")),
        (unanswered, risk.UNANSWERED_POINTS,
         _reason(str(risk.UNANSWERED_POINTS),
                 f"'No contact from us since their ' || {_noun(risk.ANSWER_NOUNS, 'g.wait_kind')} || ' on ' "
                 f"|| {_day('g.wait_at')}", "unanswered", "g.wait_at", "g.wait_kind")),
        (neg_note, risk.NEGATIVE_NOTE_POINTS,
         _reason(str(risk.NEGATIVE_NOTE_POINTS), f"'Negative note on ' || {_day('g.note_at')}",
                 "negative_note", "g.note_at")),
        (stalled_twice, risk.STALLED_TWICE_POINTS,
         _reason(str(risk.STALLED_TWICE_POINTS),
                 f"{stage_words} || ', over twice its ' || c.stagnation_days || '-day limit'",
                 "stalled", "c.stage_entered_at")),
        (stalled, risk.STALLED_POINTS,
         _reason(str(risk.STALLED_POINTS), f"{stage_words} || ', past its ' || c.stagnation_days || '-day limit'",
                 "stalled", "c.stage_entered_at")),
        (falling, risk.FALLING_POINTS,
         _reason(str(risk.FALLING_POINTS),
                 f"'Engagement fell: ' || {recent} || ' in the last 14 days, ' || {before} || ' in the 14 before'",
                 "falling_engagement", None)),
        (silent_long, risk.NO_REPLY_LONG_POINTS,
         _reason(str(risk.NO_REPLY_LONG_POINTS), f"{silent_words} || ' (6 weeks or more)'", "no_reply", "g.out_at")),
        (silent, risk.NO_REPLY_POINTS,
         _reason(str(risk.NO_REPLY_POINTS), f"{silent_words} || ' (3 weeks or more)'", "no_reply", "g.out_at")),
        (quiet, risk.NO_CONTACT_POINTS,
         _reason(str(risk.NO_CONTACT_POINTS),
                 f"CASE WHEN g.contact_at IS NOT NULL THEN 'No contact from us since ' || {_day('g.contact_at')} "
                 f"ELSE 'Never contacted since it arrived on ' || {_day('c.created_at')} END",
                 "no_contact", "g.contact_at")),
    ]
    # (Each condition is false where its inputs are NULL: `coalesce(..., false)` keeps CASE simple.)
    reasons_sql = ("to_jsonb(array_remove(ARRAY["
                   + ", ".join(f"CASE WHEN coalesce({cond}, false) THEN {obj} END" for cond, _, obj in reasons)
                   + "]::jsonb[], NULL))")
    points_sql = (f"least({risk.MAX_POINTS}, "
                  + " + ".join(f"CASE WHEN coalesce({cond}, false) THEN {pts} ELSE 0 END" for cond, pts, _ in reasons)
                  + ")")
    stored = ("leads.risk_level, leads.risk_points, leads.risk_reasons, leads.risk_valid_until, "
              "leads.last_reply_at, leads.last_reply_sentiment" if changed_only else
              "NULL::text AS risk_level, NULL::int AS risk_points, NULL::jsonb AS risk_reasons, "
              "NULL::timestamptz AS risk_valid_until, NULL::timestamptz AS last_reply_at, "
              "NULL::double precision AS last_reply_sentiment")
    differs = ("WHERE (risk_level, risk_points, risk_reasons, risk_valid_until, last_reply_at, last_reply_sentiment) "
               "IS DISTINCT FROM (level, points, reasons, valid_until, reply_at, reply_sentiment)"
               if changed_only else "")
    level = (f"CASE WHEN points >= {risk.HIGH_FROM} THEN 'high' WHEN points >= {risk.MEDIUM_FROM} THEN 'medium' "
             "ELSE 'low' END")
    # When time alone changes the result: the earliest of the rules' moments still to come.
    moments = [
        f"CASE WHEN g.reply_at > :now - {window} THEN g.reply_at + {window} END",
        f"g.wait_at + {window}",
        f"g.wait_at + {unanswered_after}",
        f"CASE WHEN g.note_at > :now - {window} THEN g.note_at + {window} END",
        past, twice,
        "g.engaged_next",
        f"CASE WHEN NOT {neg_reply} THEN g.out_at + {no_reply} END",
        f"CASE WHEN NOT {neg_reply} THEN g.out_at + {no_reply_long} END",
        f"{quiet_since} + {no_contact}",
        "f.next_at",  # an activity stamped after :now counts once its moment comes
    ]
    valid_until = "least(" + ", ".join(f"(SELECT m FROM (SELECT {m} AS m) x WHERE m > :now)" for m in moments) + ")"
    return f"""
        WITH c AS MATERIALIZED (
            SELECT leads.id, leads.version, leads.stage::text AS stage, leads.stage_entered_at, leads.created_at,
                   r.stagnation_days, leads.stage IN ('won', 'lost') AS closed, {stored}
              FROM {leads} LEFT JOIN stage_rules r ON r.stage = leads.stage
             WHERE leads.id > :lo AND leads.id <= :hi AND ({condition})
        ), a AS (
            SELECT a.id, a.lead_id, a.kind, a.occurred_at, a.sentiment,
                   max(a.occurred_at) FILTER (WHERE a.kind IN {contact}) OVER (PARTITION BY a.lead_id) AS contact_at,
                   max(a.occurred_at) FILTER (WHERE a.kind IN {answer}) OVER (PARTITION BY a.lead_id) AS last_answer,
                   coalesce(bool_or(a.kind = '{received}' AND a.{negative})
                            OVER (PARTITION BY a.lead_id, a.occurred_at), false) AS refused_then
              FROM activities a JOIN c ON c.id = a.lead_id AND NOT c.closed
             WHERE {range_filter}a.occurred_at <= :now
        ), g AS (
            SELECT lead_id,
                   max(contact_at) AS contact_at,
                   max(last_answer) AS last_answer,
                   max(occurred_at) FILTER (WHERE kind = '{received}') AS reply_at,
                   (array_agg(sentiment ORDER BY occurred_at DESC, id) FILTER (WHERE kind = '{received}'))[1]
                       AS reply_sentiment,
                   max(occurred_at) FILTER (WHERE kind = '{note}') AS note_at,
                   (array_agg(sentiment ORDER BY occurred_at DESC, id) FILTER (WHERE kind = '{note}'))[1]
                       AS note_sentiment,
                   min(occurred_at) FILTER (WHERE {waiting}) AS wait_at,
                   (array_agg(kind ORDER BY occurred_at, id) FILTER (WHERE {waiting}))[1] AS wait_kind,
                   min(occurred_at) FILTER (WHERE {outreach}) AS out_at,
                   (array_agg(kind ORDER BY occurred_at, id) FILTER (WHERE {outreach}))[1] AS out_kind,
                   count(*) FILTER (WHERE {engaged} AND occurred_at > :now - {engagement}) AS recent,
                   count(*) FILTER (WHERE {engaged} AND occurred_at <= :now - {engagement}
                                    AND occurred_at > :now - 2 * {engagement}) AS before,
                   least(min(occurred_at + {engagement}) FILTER (WHERE {engaged} AND occurred_at + {engagement} > :now),
                         min(occurred_at + 2 * {engagement})
                             FILTER (WHERE {engaged} AND occurred_at + 2 * {engagement} > :now)) AS engaged_next
              FROM a GROUP BY lead_id
        ), f AS (
            SELECT a.lead_id, min(a.occurred_at) AS next_at
              FROM activities a JOIN c ON c.id = a.lead_id AND NOT c.closed
             WHERE {range_filter}a.occurred_at > :now
             GROUP BY a.lead_id
        ), p AS (
            SELECT c.*, g.reply_at, g.reply_sentiment,
                   CASE WHEN NOT c.closed THEN {points_sql} END AS points,
                   CASE WHEN NOT c.closed THEN {reasons_sql} ELSE '[]'::jsonb END AS reasons,
                   CASE WHEN NOT c.closed THEN {valid_until} END AS valid_until
              FROM c LEFT JOIN g ON g.lead_id = c.id LEFT JOIN f ON f.lead_id = c.id
        ), v AS (
            SELECT id, version, CASE WHEN NOT closed THEN {level} END AS level, points, reasons, valid_until,
                   reply_at, reply_sentiment,
                   risk_level, risk_points, risk_reasons, risk_valid_until, last_reply_at, last_reply_sentiment
              FROM p
        )
        SELECT id, version, level, points, reasons, valid_until, reply_at, reply_sentiment FROM v
         {differs}
    """


def assessed_rows(session: Session, lo: int, hi: int, now: datetime, condition: str = "TRUE",
                  params: dict | None = None) -> list:
    """The risk of the leads with lo < id <= hi meeting `condition` whose stored risk differs, without
    storing it: (id, version, level, points, reasons, valid_until, reply_at, reply_sentiment) rows.
    For tests and inspection (a lead never assessed differs unless it is a closed deal)."""
    score_unscored_messages(session, f"leads.id > :lo AND leads.id <= :hi AND ({condition})",
                             {"lo": lo, "hi": hi, "now": now, **(params or {})})
    return session.execute(text(assessed_sql(condition, True) + " ORDER BY id"),
                           {"lo": lo, "hi": hi, "now": now, **(params or {})}).all()


def score_unscored_messages(session: Session, condition: str, params: dict, batch: int = 5000,
                             leads: str = "leads") -> int:
    """Score and keep the sentiment of the replies and notes of open deals meeting `condition` that have
    a body but no sentiment yet (as the Python path does when it reads them). Returns how many.
    `leads`: the relation the leads (id, stage) are read from, named `leads` (as in assessed_sql)."""
    # The partial index ix_activities_unscored (migration 0038) holds exactly these: normally none.
    read = text(
        f"SELECT a.id, a.body FROM activities a JOIN {leads} ON leads.id = a.lead_id "
        "WHERE a.id > :after AND a.sentiment IS NULL AND a.body IS NOT NULL "
        "AND a.kind IN ('email_received', 'note') AND leads.stage NOT IN ('won', 'lost') "
        f"AND ({condition}) ORDER BY a.id LIMIT :batch"
    )
    after, done = 0, 0
    while rows := session.execute(read, {**params, "after": after, "batch": batch}).all():
        after = rows[-1].id
        # A blank body has no tone (the Python path leaves it unscored too).
        scored = [(row.id, sentiment_of(row.body)) for row in rows if row.body.strip()]
        if scored:
            execute_values(session.connection().connection.cursor(),
                           "UPDATE activities AS a SET sentiment = v.s FROM (VALUES %s) AS v(id, s) WHERE a.id = v.id",
                           scored, page_size=1000)
            done += len(scored)
    return done


def reassess_risk_where(session: Session, now: datetime, condition: str = "TRUE", params: dict | None = None,
                        progress: Callable[[int], None] | None = None, chunk: int = CHUNK, commit: bool = True,
                        workers: int | None = None) -> int:
    """Assess, in the database, the risk of every lead meeting `condition` (SQL over `leads`) and store
    it where it changed (with risk_at = :now); one statement and one commit per range of `chunk` leads,
    on `workers` connections at once where the session may fan out (rules_sql._run). A lead whose
    version moved on since the statement read it was reassessed by whoever changed it and is left
    alone. Returns how many leads were written."""
    def update(dense: bool) -> str:
        return f"""
            WITH v AS MATERIALIZED ({assessed_sql(condition, dense)}),
            written AS (
                UPDATE leads AS l
                   SET risk_level = v.level, risk_points = v.points, risk_reasons = v.reasons, risk_at = :now,
                       risk_valid_until = v.valid_until, last_reply_at = v.reply_at,
                       last_reply_sentiment = v.reply_sentiment
                  FROM v
                 WHERE l.id = v.id AND l.version = v.version AND l.id > :lo AND l.id <= :hi
                RETURNING 1
            )
            SELECT count(*) FROM written
        """

    # Unscored replies and notes (rare: an older database, an import) are scored up front, so the
    # statements read numbers only.
    params = {"now": now, **(params or {})}
    if score_unscored_messages(session, condition, params) and commit:
        session.commit()
    return rules_sql._run(session, condition, params, chunk, update, progress, commit,  # noqa: SLF001
                          workers=rules_sql.WORKERS if workers is None else workers)
