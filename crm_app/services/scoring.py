"""Keeping stored scores true: rescoring one lead, every lead, or those that time has changed."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from psycopg2.extras import Json, execute_values
from sqlalchemy import select, text
from sqlmodel import Session

from crm_app.db.models import Activity, Lead
from crm_app.domain import ActivityKind, Stage
from crm_app.scoring import ActivityFact, LeadFacts, RuleBasedScoringEngine, ScoreResult, ScoringEngine
from crm_app.scoring.blend import BlendedScoringEngine
from crm_app.services.model_training import engine_for_model
from crm_app.services.out_of_fold import score_leads, score_leads_at
from crm_app.services.risk import assess_lead_risk
from crm_app.services.rules_sql import record_rules_scores_at_close, rescore_rules_where

RULES = RuleBasedScoringEngine()
# Leads per batch a model scores: one call into XGBoost per batch, so large batches (the features of
# 10,000 leads are a few MB) spread its fixed cost; only the changed leads of a batch are written.
MODEL_BATCH = 10_000
ENGINE_MODES = ("rules", "model", "blend")


@dataclass(frozen=True)
class EngineConfig:
    """What the team chose and what actually scores: the model only when one is active."""

    mode: str  # rules | model | blend, as chosen in settings
    blend_weight: float  # the model's share of a blended score
    model_id: int | None  # the active model, if any
    model_version: int | None

    @property
    def effective(self) -> str:
        """The engine that really scores: the rules when the model is chosen but none is active."""
        return "rules" if self.model_id is None else self.mode

    @property
    def key(self) -> tuple:
        """Changes exactly when the scores the team's engine gives can change."""
        if self.effective == "rules":
            return ("rules",)
        if self.effective == "model":
            return ("model", self.model_id)
        return ("blend", self.model_id, round(self.blend_weight, 4))


_ENGINE_CONFIG = text(
    """
    SELECT s.engine, s.blend_weight, m.id AS model_id, m.version AS model_version
      FROM scoring_settings s LEFT JOIN scoring_models m ON m.is_active
     WHERE s.id = 1
    """
)


def engine_config(session: Session) -> EngineConfig:
    """The team's engine choice and active model, in one indexed lookup."""
    row = session.execute(_ENGINE_CONFIG).one_or_none()
    if row is None:  # the migration inserts the row; a database without it scores with the rules
        return EngineConfig("rules", 0.5, None, None)
    return EngineConfig(row.engine, float(row.blend_weight), row.model_id, row.model_version)


_blend_lock = threading.Lock()
_blend_cache: tuple[tuple, ScoringEngine] | None = None


def engine_from_config(session: Session, config: EngineConfig) -> ScoringEngine:
    """The engine for a configuration; the model is deserialised once per worker and version."""
    global _blend_cache
    if config.effective == "rules":
        return RULES
    model = engine_for_model(session, config.model_id)
    if model is None:  # deleted meanwhile
        return RULES
    if config.effective == "model":
        return model
    with _blend_lock:
        if _blend_cache is not None and _blend_cache[0] == (config.key, id(model)):
            return _blend_cache[1]
        blended = BlendedScoringEngine(model, RULES, config.blend_weight)
        _blend_cache = ((config.key, id(model)), blended)
        return blended


def active_engine(session: Session) -> ScoringEngine:
    """The engine the team scores with, as chosen in settings (rules, model or a blend). Every worker
    asks the database (one cheap query), so a switch reaches all of them at their next score."""
    return engine_from_config(session, engine_config(session))


def load_facts(session: Session, leads: Iterable[Lead]) -> dict[int, LeadFacts]:
    """The facts an engine needs for each lead, in one query for all of them."""
    leads = list(leads)
    activities: dict[int, list[ActivityFact]] = defaultdict(list)
    if leads:
        rows = session.execute(
            select(Activity.lead_id, Activity.kind, Activity.occurred_at).where(
                Activity.lead_id.in_([lead.id for lead in leads])
            )
        )
        for lead_id, kind, occurred_at in rows:
            activities[lead_id].append(ActivityFact(ActivityKind(kind), occurred_at))
    return {
        lead.id: LeadFacts(
            company_size=lead.company_size,
            source=lead.source,
            activities=tuple(activities[lead.id]),
            custom_fields=dict(lead.custom_fields or {}),
        )
        for lead in leads
    }


def apply_score(lead: Lead, result: ScoreResult, now: datetime) -> None:
    lead.score = result.score
    lead.tier = result.tier.value
    lead.score_reasons = [r.as_dict() for r in result.reasons]
    lead.scored_at = now
    lead.score_valid_until = result.valid_until


def rescore_lead(session: Session, lead: Lead, now: datetime, engine: ScoringEngine | None = None) -> ScoreResult:
    """Recompute and store one lead's score, and its deal risk, inside the caller's transaction
    (no commit)."""
    session.flush()
    engine = engine or active_engine(session)
    # A closed deal the model learned from keeps the score of a model that did not (out_of_fold.py).
    result = score_leads(session, engine, [lead.id], [load_facts(session, [lead])[lead.id]], now)[0]
    apply_score(lead, result, now)
    assess_lead_risk(session, lead, now)
    session.add(lead)
    return result


_UPDATE_SCORES = """
    UPDATE leads AS l
       SET score = v.score, tier = v.tier, score_reasons = v.reasons,
           scored_at = v.scored_at, score_valid_until = v.valid_until
      FROM (VALUES %s) AS v(id, version, score, tier, reasons, scored_at, valid_until)
     WHERE l.id = v.id AND l.version = v.version
    RETURNING l.id
"""
_VALUES_TEMPLATE = "(%s, %s, %s, %s, %s::jsonb, %s::timestamptz, %s::timestamptz)"


def _store_scores(session: Session, scored: list[tuple[int, int, ScoreResult]], now: datetime) -> int:
    """Write (id, version, result) scores; a lead whose version moved on since it was read was
    rescored by whoever changed it, so it is left alone. Returns how many were written."""
    if not scored:
        return 0
    written = execute_values(
        session.connection().connection.cursor(),
        _UPDATE_SCORES,
        [
            (lead_id, version, r.score, r.tier.value, Json([x.as_dict() for x in r.reasons]), now,
             r.valid_until)
            for lead_id, version, r in scored
        ],
        template=_VALUES_TEMPLATE,
        page_size=1000,
        fetch=True,
    )
    return len(written)


def _changed_scores(rows: list, results: list[ScoreResult]) -> list[tuple[int, int, ScoreResult]]:
    """(id, version, result) of the rows (with their stored score, tier, score_reasons,
    score_valid_until and scored_at) whose stored score differs from the new result, or that were
    never scored. Rewriting a lead costs an entry
    in each of the table's indexes, far more than scoring it, so a rescore sends only what changed."""
    return [
        (row.id, row.version, result)
        for row, result in zip(rows, results)
        if row.scored_at is None
        or (row.score, row.tier, row.score_reasons, row.score_valid_until)
        != (result.score, result.tier.value, [x.as_dict() for x in result.reasons], result.valid_until)
    ]


# Enum lookups by value, once: calling ActivityKind(value) per activity is a large share of reading them.
_KIND_OF = {kind.value: kind for kind in ActivityKind}


def _activities_of(session: Session, lead_ids: list[int]) -> dict[int, list[ActivityFact]]:
    """Activities of just these leads, grouped by lead (one index lookup per lead), read on the
    driver's own cursor as plain tuples (tens of thousands of rows a batch)."""
    activities: dict[int, list[ActivityFact]] = defaultdict(list)
    cursor = session.connection().connection.cursor()
    cursor.execute("SELECT lead_id, kind, occurred_at FROM activities WHERE lead_id = ANY(%(ids)s)",
                   {"ids": list(lead_ids)})
    for lead_id, kind, occurred_at in cursor.fetchall():
        activities[lead_id].append(ActivityFact(_KIND_OF[kind], occurred_at))
    return activities


def _rescore_where(
    session: Session,
    now: datetime,
    condition: str,
    params: dict,
    engine: ScoringEngine | None,
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> int:
    engine = engine or active_engine(session)
    if _is_rules(engine):
        # The rubric runs in the database, a range of leads per statement: ~20x faster than here.
        return rescore_rules_where(session, now, condition, params, progress)
    done = 0
    last_id = 0
    while True:
        leads = session.execute(
            text(
                f"SELECT id, version, company_size, source, custom_fields, score, tier, score_reasons, "
                f"score_valid_until, scored_at FROM leads WHERE leads.id > :last_id AND ({condition}) "
                "ORDER BY id LIMIT :n"
            ),
            {"last_id": last_id, "n": max(batch_size, MODEL_BATCH), **params},
        ).all()
        if not leads:
            break
        last_id = leads[-1].id
        activities = _activities_of(session, [row.id for row in leads])
        facts = [
            LeadFacts(
                company_size=row.company_size,
                source=row.source,
                activities=activities[row.id],
                custom_fields=row.custom_fields or {},
            )
            for row in leads
        ]
        # One call per batch: a model scores a batch ~30x faster than lead by lead. A closed deal the
        # model learned from gets its out-of-fold score instead (out_of_fold.py).
        results = score_leads(session, engine, [row.id for row in leads], facts, now)
        changed = _changed_scores(leads, results)
        # Scored and stored: the unchanged ones, and the changed ones written (not those a concurrent
        # change had already rescored, whose version moved on).
        done += len(leads) - len(changed) + _store_scores(session, changed, now)
        # A batch at a time: row locks are held for one batch, never for the whole table.
        session.commit()
        if progress:
            progress(done)
    return done


def _is_rules(engine: ScoringEngine) -> bool:
    """The rubric itself (which rules_sql.py computes in the database), not a variant of it."""
    return type(engine) is RuleBasedScoringEngine


def rescore_all(
    session: Session,
    now: datetime,
    engine: ScoringEngine | None = None,
    batch_size: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Rescore every lead (after a rule or engine change), committing batch by batch. Returns the
    count written (a lead changed meanwhile keeps the score its change gave it). A closed deal the
    model learned from gets the score of a model that did not learn from it, never an in-sample one."""
    return rescore_scope(session, "all", now, engine, batch_size, progress)


# The sets of leads a switch of engine or model rescores, by name: open leads, and the closed deals
# some stored model learned from (their scores follow the engine, honestly). SQL over `leads`.
SCOPES = {
    "all": "TRUE",
    "open": f"leads.stage NOT IN ('{Stage.WON.value}', '{Stage.LOST.value}')",
    "history": (
        f"leads.stage IN ('{Stage.WON.value}', '{Stage.LOST.value}') AND EXISTS "
        "(SELECT 1 FROM model_scores ms WHERE ms.lead_id = leads.id AND ms.out_of_fold)"
    ),
}
_OPEN = SCOPES["open"]
_HISTORY = SCOPES["history"]


def count_scope(session: Session, scope: str) -> int:
    """How many leads a rescoring of `scope` (a key of SCOPES) goes through."""
    return session.execute(text(f"SELECT count(*) FROM leads WHERE {SCOPES[scope]}")).scalar_one()


def rescore_scope(
    session: Session,
    scope: str,
    now: datetime,
    engine: ScoringEngine | None = None,
    batch_size: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Rescore the leads of `scope` (a key of SCOPES), committing as it goes. The rules score in the
    database, a range of leads per statement (rules_sql.py); a model scores batch by batch."""
    return _rescore_where(session, now, SCOPES[scope], {}, engine, batch_size, progress)


def count_open_leads(session: Session) -> int:
    return count_scope(session, "open")


def rescore_open_leads(
    session: Session,
    now: datetime,
    engine: ScoringEngine | None = None,
    batch_size: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Rescore every open lead (after the team switched engine or model), batch by batch with a
    commit after each. Closed leads keep their scores and score_at_close: what was predicted then."""
    return rescore_scope(session, "open", now, engine, batch_size, progress)


def count_history_leads(session: Session) -> int:
    return count_scope(session, "history")


def rescore_history(
    session: Session,
    now: datetime,
    engine: ScoringEngine | None = None,
    batch_size: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Rescore the closed deals a model learned from (after a switch of engine or model), batch by
    batch with a commit after each: the scoring model's out-of-fold score for the deals it learned
    from (mixed with the rules' under a blend), the engine's score for the others. A close that no
    user recorded (an imported deal) also gets its score at close again, the same honest way, so
    Analytics' win rate by tier at close judges the engine in use. Returns the count written."""
    engine = engine or active_engine(session)
    done = rescore_scope(session, "history", now, engine, batch_size, progress)
    _rescore_unrecorded_closes(session, engine, batch_size)
    return done


def _rescore_unrecorded_closes(session: Session, engine: ScoringEngine, batch_size: int) -> None:
    last_id = 0
    while True:
        leads = session.execute(
            text(
                f"""
                SELECT id, company_size, source, custom_fields, closed_at FROM leads
                 WHERE leads.id > :last_id AND {_HISTORY} AND closed_at IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM stage_changes sc WHERE sc.lead_id = leads.id
                                      AND sc.to_stage = leads.stage AND sc.user_id IS NOT NULL)
                 ORDER BY id LIMIT :n
                """
            ),
            {"last_id": last_id, "n": batch_size},
        ).all()
        if not leads:
            break
        last_id = leads[-1].id
        activities = _activities_of(session, [row.id for row in leads])
        facts = [
            LeadFacts(company_size=row.company_size, source=row.source, custom_fields=row.custom_fields or {},
                      activities=tuple(a for a in activities[row.id] if a.occurred_at < row.closed_at))
            for row in leads
        ]
        results = score_leads_at(session, engine, [row.id for row in leads], facts,
                                 [row.closed_at for row in leads])
        execute_values(
            session.connection().connection.cursor(),
            "UPDATE leads AS l SET score_at_close = v.score FROM (VALUES %s) AS v(id, score) "
            "WHERE l.id = v.id",
            [(row.id, result.score) for row, result in zip(leads, results)],
            page_size=1000,
        )
        session.commit()


def rescore_expired(session: Session, now: datetime, engine: ScoringEngine | None = None) -> int:
    """Rescore the leads whose score the passage of time has changed (a recency bonus ran out)."""
    return _rescore_where(session, now, "leads.score_valid_until <= :now", {"now": now}, engine, 2000, None)


def record_scores_at_close(
    session: Session, engine: ScoringEngine | None = None, batch_size: int = 5000
) -> int:
    """Fill in score_at_close where it is missing: what the engine said at the moment each deal
    closed, from the activities known then (after an import or for generated history). Commits."""
    engine = engine or active_engine(session)
    if _is_rules(engine):
        return record_rules_scores_at_close(session)
    done, last_id = 0, 0
    while True:
        leads = session.execute(
            text(
                "SELECT id, company_size, source, custom_fields, closed_at FROM leads "
                "WHERE id > :last_id AND closed_at IS NOT NULL AND score_at_close IS NULL "
                "ORDER BY id LIMIT :n"
            ),
            {"last_id": last_id, "n": batch_size},
        ).all()
        if not leads:
            break
        last_id = leads[-1].id
        activities = _activities_of(session, [row.id for row in leads])
        values = [
            (
                row.id,
                engine.score(
                    LeadFacts(company_size=row.company_size, source=row.source,
                              activities=activities[row.id], custom_fields=row.custom_fields or {}),
                    row.closed_at,
                ).score,
            )
            for row in leads
        ]
        execute_values(
            session.connection().connection.cursor(),
            "UPDATE leads AS l SET score_at_close = v.score FROM (VALUES %s) AS v(id, score) WHERE l.id = v.id",
            values,
            page_size=1000,
        )
        done += len(values)
    session.commit()
    return done


def rescore_leads_in_transaction(
    session: Session, lead_ids: list[int], now: datetime, engine: ScoringEngine | None = None,
    batch_size: int = 5000,
) -> int:
    """Rescore these leads inside the caller's transaction (no commit, unlike rescore_all), and fill in
    score_at_close where a closed lead lacks it, from the activities before it closed. For writers
    such as the CSV import that must store leads and their scores all at once or not at all.

    With the rules, set-based in the database (rules_sql.py): two statements per range of 50,000
    leads, only changed or never-scored leads written; what an import of many leads should call.
    Returns how many leads were scored."""
    engine = engine or active_engine(session)
    if _is_rules(engine):
        if not lead_ids:
            return 0
        session.flush()
        ids = {"ids": list(lead_ids)}
        done = rescore_rules_where(session, now, "leads.id = ANY(:ids)", ids, commit=False)
        # As the loop below does for a model: the activities before the close, scored at the close.
        record_rules_scores_at_close(session, commit=False, condition="leads.id = ANY(:ids)", params=ids,
                                     strictly_before=True)
        return done
    done = 0
    for start in range(0, len(lead_ids), batch_size):
        batch = lead_ids[start:start + batch_size]
        leads = session.execute(
            text("SELECT id, version, company_size, source, custom_fields, closed_at, score_at_close "
                 "FROM leads WHERE id = ANY(:ids)"),
            {"ids": batch},
        ).all()
        activities = _activities_of(session, batch)
        facts_now = [
            LeadFacts(company_size=row.company_size, source=row.source,
                      activities=activities[row.id], custom_fields=row.custom_fields or {})
            for row in leads
        ]
        # One call per batch for the present scores (a model is far faster batched); a closed deal the
        # model learned from keeps its out-of-fold score (out_of_fold.py).
        present = score_leads(session, engine, [row.id for row in leads], facts_now, now)
        scored = [(row.id, row.version, result) for row, result in zip(leads, present)]
        at_close = []
        for row in leads:
            if row.closed_at is not None and row.score_at_close is None:
                before = tuple(a for a in activities[row.id] if a.occurred_at < row.closed_at)
                facts_then = LeadFacts(company_size=row.company_size, source=row.source,
                                       activities=before, custom_fields=row.custom_fields or {})
                at_close.append((row.id, engine.score(facts_then, row.closed_at).score))
        done += _store_scores(session, scored, now)
        if at_close:
            execute_values(
                session.connection().connection.cursor(),
                "UPDATE leads AS l SET score_at_close = v.score FROM (VALUES %s) AS v(id, score) WHERE l.id = v.id",
                at_close,
                page_size=1000,
            )
    return done
