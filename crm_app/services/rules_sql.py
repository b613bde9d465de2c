"""The rules rubric (scoring/rules.py) as set-based SQL: every lead of a range scored in one statement.

Rescoring lead by lead in Python reads each lead's activities into objects, scores them and writes
the results back: ~7,000 leads/s, 2.5 minutes for a million. The rubric only needs a handful of
aggregates per lead (how many engagements, the last one, the pricing and demo requests with their
dates), which PostgreSQL computes in one pass over the activities, so the whole rubric runs inside
the database: one `UPDATE ... FROM (aggregate)` per range of lead ids, committed range by range so
row locks are held for one range at a time, never for the whole table.

The words are the engine's own, built with the same constants (`rules.py`, `phrases.py`), and a test
(tests/test_rules_sql.py) compares scores, tiers, reasons and expiry with the engine on generated data.
Dates are formatted by `to_char` in the session's time zone, as the engine formats the datetimes the
driver returns in that same zone (the app's connections run in UTC).

The engine breaks a tie between two engagements at the same instant by the order the activities came
in; here the later-inserted one (higher id) is the last, which is the order they were read in.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime

from sqlalchemy import Engine, text
from sqlmodel import Session

from crm_app.db.security import acting_user_id

from crm_app.domain import ActivityKind
from crm_app.scoring import phrases, rules
from crm_app.scoring.engine import HOT_MIN, WARM_MIN

# Leads per statement: large enough that per-statement overhead vanishes, small enough that one
# range's row locks are held for about a second.
CHUNK = 50_000
# Connections a full rescore runs its ranges on at once: the scoring is CPU work in PostgreSQL, and each
# range's rows are written apart, so two cores rescore nearly twice as fast.
WORKERS = max(1, min(4, os.cpu_count() or 1))

_ENGAGED = ", ".join(f"'{k.value}'" for k in sorted(rules.ENGAGEMENT_KINDS))
_LABELS = " ".join(
    f"WHEN '{k.value}' THEN '{k.label.lower()}'" for k in sorted(rules.ENGAGEMENT_KINDS)
)
_OLD_DAYS = phrases._OLD.days  # noqa: SLF001 - the same threshold the engine's phrases use
assert phrases._OLD.seconds == 0 and not phrases._OLD.microseconds  # noqa: SLF001 - whole days


def _quote(words: str) -> str:
    return "'" + words.replace("'", "''") + "'"


def _day(moment: str, asof: str | None) -> str:
    """phrases.day(): `2 Dec`, with the year when the moment is more than _OLD before `asof`."""
    short = f"to_char({moment}, 'FMDD Mon')"
    if asof is None:
        return short
    return (f"CASE WHEN {asof} - {moment} > interval '{_OLD_DAYS} days' "
            f"THEN to_char({moment}, 'FMDD Mon YYYY') ELSE {short} END")


def _phrase(kind: ActivityKind, count: str, newest: str, dates: str, asof: str) -> str:
    """phrases.activity_phrase() for `count` activities of `kind`: `newest` is the latest moment,
    `dates` (for the listed kinds) an array of the newest MAX_DATES moments, newest first."""
    one, many = phrases._PHRASES[kind]  # noqa: SLF001 - the engine's own words
    head, tail = many.split("{n}")
    several = f"{_quote(head)} || {count} || {_quote(tail)}"
    if kind in phrases.LISTED_KINDS:
        listed = (
            f"ARRAY(SELECT {_day('d.m', asof)} FROM unnest({dates}) WITH ORDINALITY AS d(m, i) ORDER BY d.i)"
            f" || CASE WHEN {count} > {phrases.MAX_DATES} "
            f"THEN ARRAY[({count} - {phrases.MAX_DATES}) || ' earlier'] ELSE '{{}}'::text[] END"
        )
        joined = (
            f"(SELECT array_to_string(w[1:cardinality(w) - 1], ', ') || ' and ' || w[cardinality(w)] "
            f"FROM (SELECT {listed} AS w) AS words)"
        )
        many_sql = f"{several} || ': ' || {joined}"
    else:
        many_sql = f"{several} || ', last on ' || {_day(newest, asof)}"
    return f"CASE WHEN {count} = 1 THEN {_quote(one + ' on ')} || {_day(newest, asof)} ELSE {many_sql} END"


def _reason(points: str, words: str) -> str:
    return f"jsonb_build_object('points', {points}, 'text', {words})"


def _dates(kind: ActivityKind, before: str) -> str:
    """The newest MAX_DATES moments of one kind for the lead `c`, newest first (an index lookup,
    run only for a lead with several)."""
    return (
        "ARRAY(SELECT a2.occurred_at FROM activities a2 "
        f"WHERE a2.lead_id = c.id AND a2.kind = '{kind.value}' AND a2.occurred_at {before} c.asof "
        f"ORDER BY a2.occurred_at DESC LIMIT {phrases.MAX_DATES})"
    )


def scored_sql(condition: str, asof: str, strictly_before: bool, dense: bool = True,
                changed_only: bool = False, leads: str = "leads") -> str:
    """A SELECT of (id, version, score, tier, reasons, valid_until) for the leads with :lo < id <= :hi
    that meet `condition` (SQL over the table `leads`), each scored at `asof` (:now, or an expression
    over `leads`). `dense`: most leads of the range meet the condition, so the activities of the whole
    range are read in one index range scan rather than lead by lead. `changed_only`: only the leads
    whose stored score, tier, reasons or expiry differ (or that were never scored), with a column
    `tier_changed`; compared in the
    same pass that reads the lead, so an unchanged lead costs no second lookup.

    `leads` is the relation the leads are read from, named `leads` (the table by default; an import
    passes its leads as they are about to be written, with the columns read here)."""
    before = "<" if strictly_before else "<="
    pricing, page, demo = (ActivityKind.PRICING_REQUEST, ActivityKind.PRICING_PAGE_VISIT,
                           ActivityKind.DEMO_REQUEST)
    pricing_words = _phrase(pricing, "g.n_req", "g.last_req", _dates(pricing, before), "c.asof")
    page_words = _phrase(page, "g.n_view", "g.last_view", "NULL", "c.asof")
    demo_words = _phrase(demo, "g.n_demo", "g.last_demo", _dates(demo, before), "c.asof")
    window = f"interval '{int(rules.RECENT_WINDOW.total_seconds())} seconds'"
    recent = f"(g.last_at IS NOT NULL AND c.asof - g.last_at < {window})"
    last_kind = (
        "(SELECT a.kind FROM activities a WHERE a.lead_id = c.id AND a.occurred_at = g.last_at "
        f"AND a.kind IN ({_ENGAGED}) ORDER BY a.id DESC LIMIT 1)"
    )
    engagement_points = f"least({rules.ENGAGEMENT_CAP}, {rules.POINTS_PER_INTERACTION} * g.n)"
    engagement_words = (
        f"g.n || CASE WHEN g.n = 1 THEN ' interaction' ELSE ' interactions' END "
        f"|| ' (+{rules.POINTS_PER_INTERACTION} each' "
        f"|| CASE WHEN {rules.POINTS_PER_INTERACTION} * g.n > {rules.ENGAGEMENT_CAP} "
        f"THEN ', capped at {rules.ENGAGEMENT_CAP}' ELSE '' END || ')'"
    )
    big = f"(c.company_size IS NOT NULL AND c.company_size > {rules.COMPANY_SIZE_OVER})"
    reasons = "to_jsonb(array_remove(ARRAY[" + ", ".join(
        [
            f"CASE WHEN g.n_req > 0 THEN "
            f"{_reason(str(rules.PRICING_POINTS), pricing_words)} "
            f"WHEN g.n_view > 0 THEN "
            f"{_reason(str(rules.PRICING_POINTS), page_words)} "
            "ELSE NULL END",
            f"CASE WHEN {recent} THEN "
            + _reason(
                str(rules.RECENT_POINTS),
                f"'Active in the last 24 hours (' || CASE {last_kind} {_LABELS} END || ', ' || "
                f"{_day('g.last_at', None)} || ' ' || to_char(g.last_at, 'HH24:MI') || ')'",
            )
            + " ELSE NULL END",
            f"CASE WHEN g.n_demo > 0 THEN "
            f"{_reason(str(rules.DEMO_POINTS), demo_words)} "
            "ELSE NULL END",
            f"CASE WHEN {big} THEN "
            + _reason(
                str(rules.COMPANY_SIZE_POINTS),
                f"'Company has ' || to_char(c.company_size, 'FM9,999,999,990') "
                f"|| ' employees (over {rules.COMPANY_SIZE_OVER})'",
            )
            + " ELSE NULL END",
            f"CASE WHEN g.n > 0 THEN {_reason(engagement_points, engagement_words)} ELSE NULL END",
        ]
    ) + "]::jsonb[], NULL))"
    score = " + ".join(
        [
            f"CASE WHEN g.n_req > 0 OR g.n_view > 0 THEN {rules.PRICING_POINTS} ELSE 0 END",
            f"CASE WHEN {recent} THEN {rules.RECENT_POINTS} ELSE 0 END",
            f"CASE WHEN g.n_demo > 0 THEN {rules.DEMO_POINTS} ELSE 0 END",
            f"CASE WHEN {big} THEN {rules.COMPANY_SIZE_POINTS} ELSE 0 END",
            f"CASE WHEN g.n > 0 THEN {engagement_points} ELSE 0 END",
        ]
    )
    tier_sql = f"CASE WHEN score >= {HOT_MIN} THEN 'hot' WHEN score >= {WARM_MIN} THEN 'warm' ELSE 'cold' END"
    if changed_only:
        stored = (", leads.score AS old_score, leads.tier AS old_tier, leads.score_reasons AS old_reasons, "
                  "leads.score_valid_until AS old_valid_until, leads.scored_at AS old_scored_at")
        stored_s = " c.old_score, c.old_tier, c.old_reasons, c.old_valid_until, c.old_scored_at,"
        final = f"""id, version, score, tier, reasons, valid_until,
               tier IS DISTINCT FROM old_tier AS tier_changed
          FROM (SELECT s.*, {tier_sql} AS tier FROM s) AS t
         WHERE old_scored_at IS NULL  -- never scored: written whatever it holds
            OR (old_score, old_tier, old_reasons, old_valid_until)
               IS DISTINCT FROM (score, tier, reasons, valid_until)"""
    else:
        stored = stored_s = ""
        final = f"id, version, score, {tier_sql} AS tier, reasons, valid_until FROM s"
    # Scored at :now, the activities stamped later are read too: the earliest of them (`next_at`) is
    # when the score may change by time alone, as the engine's `valid_until` says. Scored at a moment
    # of each lead's own (a close), only what came before it is read.
    upcoming = asof == ":now"
    if upcoming and dense:
        # One moment for all: aggregate the range's activities on their own (an index range scan
        # in lead order), then match them to the leads.
        source = "activities a WHERE a.lead_id > :lo AND a.lead_id <= :hi"
    elif upcoming:
        source = "activities a JOIN c ON c.id = a.lead_id WHERE TRUE"
    else:
        source = f"activities a JOIN c ON c.id = a.lead_id WHERE a.occurred_at {before} c.asof"
        if dense:
            source += " AND a.lead_id > :lo AND a.lead_id <= :hi"

    def known(condition: str = "") -> str:
        """The FILTER that keeps an aggregate to what had happened by :now (and `condition`)."""
        parts = (["a.occurred_at <= :now"] if upcoming else []) + ([condition] if condition else [])
        return f" FILTER (WHERE {' AND '.join(parts)})" if parts else ""

    next_at = ",\n                   min(a.occurred_at) FILTER (WHERE a.occurred_at > :now) AS next_at" if upcoming else ""
    valid_until = f"CASE WHEN {recent} THEN g.last_at + {window} END"
    if upcoming:
        valid_until = f"least({valid_until}, g.next_at)"
    return f"""
        WITH c AS (
            SELECT leads.id, leads.version, leads.company_size, {asof} AS asof{stored}
              FROM {leads}
             WHERE leads.id > :lo AND leads.id <= :hi AND ({condition})
        ), g AS (
            SELECT a.lead_id,
                   count(*){known()} AS n,
                   max(a.occurred_at){known()} AS last_at,
                   count(*){known(f"a.kind = '{pricing.value}'")} AS n_req,
                   max(a.occurred_at){known(f"a.kind = '{pricing.value}'")} AS last_req,
                   count(*){known(f"a.kind = '{page.value}'")} AS n_view,
                   max(a.occurred_at){known(f"a.kind = '{page.value}'")} AS last_view,
                   count(*){known(f"a.kind = '{demo.value}'")} AS n_demo,
                   max(a.occurred_at){known(f"a.kind = '{demo.value}'")} AS last_demo{next_at}
              FROM {source} AND a.kind IN ({_ENGAGED})
             GROUP BY a.lead_id
        ), s AS (
            SELECT c.id, c.version,{stored_s}
                   {score} AS score,
                   {reasons} AS reasons,
                   {valid_until} AS valid_until
              FROM c LEFT JOIN g ON g.lead_id = c.id
        )
        SELECT {final}
    """


def scored_rows(session: Session, lo: int, hi: int, condition: str = "TRUE", params: dict | None = None,
                asof: str = ":now", strictly_before: bool = False) -> list:
    """The rubric's results for the leads with lo < id <= hi meeting `condition`, without storing
    them: (id, version, score, tier, reasons, valid_until) rows. For tests and inspection."""
    return session.execute(
        text(scored_sql(condition, asof, strictly_before) + " ORDER BY id"),
        {"lo": lo, "hi": hi, **(params or {})},
    ).all()


def _ranges(session: Session, condition: str, params: dict, chunk: int):
    """(lo, hi, count, dense) id ranges holding `chunk` leads that meet `condition` each, in id order."""
    lo = 0
    step = text(
        f"SELECT max(id), count(*) FROM (SELECT id FROM leads WHERE leads.id > :lo AND ({condition}) "
        "ORDER BY id LIMIT :n) AS r"
    )
    while True:
        hi, count = session.execute(step, {**params, "lo": lo, "n": chunk}).one()
        if not count:
            return
        # Most leads of the range to score: read the range's activities in one index range scan;
        # else (an expiry sweep, a few leads spread wide) lead by lead.
        yield lo, hi, count, count * 2 >= hi - lo
        lo = hi


def _can_fan_out(session: Session) -> bool:
    """Whether ranges may run on connections of their own: the session is bound to an engine (not to a
    connection whose transaction a caller holds) and acts as the tables' owner (no acting user, whose
    row-level security the other connections would not carry)."""
    return isinstance(session.get_bind(), Engine) and acting_user_id(session) is None


def _run_range(session: Session, statement: str, params: dict) -> int:
    # Planning this statement with JIT costs seconds, more than running it.
    session.execute(text("SET LOCAL jit = off"))
    session.execute(text("SET LOCAL work_mem = '64MB'"))
    # No `synchronous_commit = off` here: with commit=False the range runs in the caller's transaction,
    # which may hold an acknowledged write of its own (the fault test lost one that way).
    return session.execute(text(statement), params).scalar_one()


def _run(session: Session, condition: str, params: dict, chunk: int, statement: Callable[[bool], str],
         progress: Callable[[int], None] | None, commit: bool = True, workers: int = 1,
         count_ranges: bool = False) -> int:
    """Run `statement` range by range; returns the sum of what the statements return, or with
    `count_ranges` the leads the ranges hold. With `workers` > 1 (and commits), ranges run on that
    many connections at once, each committing its own; `progress` is still called from this thread."""
    ranges = list(_ranges(session, condition, params, chunk))
    done = 0
    if workers > 1 and commit and len(ranges) > 1 and _can_fan_out(session):
        # What this session wrote must be visible to the other connections (it would be committed
        # after the first range anyway).
        session.commit()
        bind = session.get_bind()

        def one(lo: int, hi: int, count: int, dense: bool) -> int:
            with Session(bind) as own:
                result = _run_range(own, statement(dense), {**params, "lo": lo, "hi": hi})
                own.commit()
            return count if count_ranges else result

        with ThreadPoolExecutor(max_workers=min(workers, len(ranges)), thread_name_prefix="rescore") as pool:
            futures = [pool.submit(one, *r) for r in ranges]
            try:
                for future in as_completed(futures):
                    done += future.result()
                    if progress:
                        progress(done)
            except BaseException:
                # A failed range or a progress callback that stops the work (an engine switch): the
                # ranges not started are dropped, the running ones end (each commits on its own).
                for future in futures:
                    future.cancel()
                raise
        return done
    for lo, hi, count, dense in ranges:
        result = _run_range(session, statement(dense), {**params, "lo": lo, "hi": hi})
        done += count if count_ranges else result
        # A range at a time: row locks are held for one range, never for the whole table.
        if commit:
            session.commit()
        if progress:
            progress(done)
    return done


def rescore_rules_where(
    session: Session,
    now: datetime,
    condition: str = "TRUE",
    params: dict | None = None,
    progress: Callable[[int], None] | None = None,
    chunk: int = CHUNK,
    commit: bool = True,
    workers: int | None = None,
) -> int:
    """Score with the rubric, in the database, every lead meeting `condition` (SQL over the table
    `leads`); one statement and one commit per range of `chunk` leads (no commit with `commit=False`:
    a bulk load scores inside its own transaction). Returns how many were scored.

    Ranges run on `workers` connections at once (default WORKERS) when the session may fan out (bound
    to an engine, as the tables' owner, committing); else one after the other in this session.

    Only a lead whose score, tier, reasons or expiry changed is written (with scored_at): rewriting
    a row costs an entry in each of the table's 24 indexes (the score is in several, so never a
    HOT update) and, at 1M leads, ~36 kB of WAL (~7 full-page images) and ~0.4 ms of CPU, against
    ~0.014 ms to score a lead that stays the same; so a rescore that changes little writes little.
    The tier is named in the write only where it changed, so the tier's triggers (hot_since, the Hot
    notification) run for those rows alone. A lead whose version moved on since the statement read
    it was rescored by whoever changed it and is left alone."""
    def update(dense: bool) -> str:
        match = "l.id = v.id AND l.version = v.version AND l.id > :lo AND l.id <= :hi"
        return f"""
            WITH v AS MATERIALIZED ({scored_sql(condition, ':now', False, dense, changed_only=True)}),
            tiered AS (
                UPDATE leads AS l
                   SET score = v.score, tier = v.tier, score_reasons = v.reasons,
                       scored_at = :now, score_valid_until = v.valid_until
                  FROM v
                 WHERE {match} AND v.tier_changed
                RETURNING 1
            ), same_tier AS (
                UPDATE leads AS l
                   SET score = v.score, score_reasons = v.reasons,
                       scored_at = :now, score_valid_until = v.valid_until
                  FROM v
                 WHERE {match} AND NOT v.tier_changed
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM tiered) + (SELECT count(*) FROM same_tier)
        """

    return _run(session, condition, {"now": now, **(params or {})}, chunk, update, progress, commit,
                workers=WORKERS if workers is None else workers, count_ranges=True)


def record_rules_scores_at_close(session: Session, chunk: int = CHUNK, commit: bool = True,
                                 condition: str = "TRUE", params: dict | None = None,
                                 strictly_before: bool = False) -> int:
    """Fill in score_at_close where it is missing with the rubric's score as of each deal's close,
    from the activities known then (as services.scoring.record_scores_at_close does lead by lead),
    for the leads meeting `condition` (SQL over `leads`; all by default); `strictly_before`: only
    the activities before the close, not at its very moment. Commits range by range (unless
    `commit=False`); returns the count written."""
    condition = f"leads.closed_at IS NOT NULL AND leads.score_at_close IS NULL AND ({condition})"

    def update(dense: bool) -> str:
        return f"""
            WITH written AS (
                UPDATE leads AS l SET score_at_close = v.score
                  FROM ({scored_sql(condition, 'leads.closed_at', strictly_before, dense)}) AS v
                 WHERE l.id = v.id
                RETURNING 1
            )
            SELECT count(*) FROM written
        """

    return _run(session, condition, dict(params or {}), chunk, update, None, commit)
