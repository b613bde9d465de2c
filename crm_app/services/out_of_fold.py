"""The scores closed deals show while a model scores the team: never the model grading its own homework.

A model learns from the closed deals. Scoring one of them with that same model gives a score the model
has partly memorised: on an imported history the model's ROC-AUC on its own training deals was 0.93
where fresh deals got 0.86, so lists, the CSV export and Analytics' win rate by tier at close would
all flatter it. Training therefore stores, for every closed deal, the score of a model that did not
train on it (`model_scores` rows with `out_of_fold`, see training.TrainingResult.honest_results), and
whenever a closed deal the scoring model learned from is scored again (a switch, `cli rescore`, an
edit, a re-import), that stored score is used: as it is under the model, mixed with the rules' score
under a blend. Open leads, and deals the model never saw, are scored by the engine as usual.

`score_leads` is the one place that decides; services/scoring.py calls it for every batch it writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import text
from sqlmodel import Session

from crm_app.scoring import LeadFacts, Reason, ScoreResult, ScoringEngine, tier_for
from crm_app.scoring.blend import blend_results, score_many

# A stored out-of-fold score whose reasons were pruned (see model_training.KEEP_REASONS_OF) reads so.
PRUNED_REASON = "Scored by a model that did not learn from this deal"


def _model_and_weight(engine: ScoringEngine) -> tuple[ScoringEngine | None, float | None]:
    """The engine's learned model, and the model's share when the engine is a blend (None: all of it)."""
    if getattr(engine, "name", "") == "model":
        return engine, None
    if getattr(engine, "name", "") == "blend":
        return engine.model, float(engine.weight)  # type: ignore[attr-defined]
    return None, None


def stored_out_of_fold(
    session: Session, engine: ScoringEngine, lead_ids: Sequence[int]
) -> dict[int, ScoreResult]:
    """For the closed leads among `lead_ids` that the engine's model learned from: the score a model
    that did not train on them gave, with its reasons. Empty for the rules."""
    model, _weight = _model_and_weight(engine)
    version = None if model is None else getattr(model, "meta", {}).get("version")
    if version is None or not lead_ids:
        return {}
    rows = session.execute(
        text(
            """
            SELECT ms.lead_id, ms.score, ms.reasons
              FROM model_scores ms
              JOIN scoring_models m ON m.id = ms.model_id
              JOIN leads l ON l.id = ms.lead_id
             WHERE m.version = :version AND ms.out_of_fold AND ms.lead_id = ANY(:ids)
               AND l.stage IN ('won', 'lost')
            """
        ),
        {"version": version, "ids": list(lead_ids)},
    )
    found = {}
    for lead_id, score, reasons in rows:
        listed = tuple(
            Reason(int(r["points"]), str(r["text"]), str(r.get("key", ""))) for r in (reasons or ())
        )
        if not reasons:
            listed = (Reason(score, PRUNED_REASON),)
        found[lead_id] = ScoreResult(score=score, tier=tier_for(score), reasons=listed, valid_until=None)
    return found


def _honest(engine: ScoringEngine, stored: ScoreResult, facts: LeadFacts, moment: datetime) -> ScoreResult:
    _model, weight = _model_and_weight(engine)
    if weight is None:
        return stored
    return blend_results(stored, engine.rules.score(facts, moment), weight)  # type: ignore[attr-defined]


def score_leads(
    session: Session,
    engine: ScoringEngine,
    lead_ids: Sequence[int],
    facts: Sequence[LeadFacts],
    now: datetime,
) -> list[ScoreResult]:
    """Score leads with `engine` as of `now` (one batch call), except the closed deals its model
    learned from: those get their stored out-of-fold score (blended with the rules' under a blend)."""
    stored = stored_out_of_fold(session, engine, lead_ids)
    fresh = [i for i, lead_id in enumerate(lead_ids) if lead_id not in stored]
    results: list[ScoreResult | None] = [None] * len(lead_ids)
    for i, result in zip(fresh, score_many(engine, [facts[i] for i in fresh], now)):
        results[i] = result
    for i, lead_id in enumerate(lead_ids):
        if lead_id in stored:
            results[i] = _honest(engine, stored[lead_id], facts[i], now)
    return results  # type: ignore[return-value]


def score_leads_at(
    session: Session, engine: ScoringEngine, lead_ids: Sequence[int], facts: Sequence[LeadFacts],
    moments: Sequence[datetime],
) -> list[ScoreResult]:
    """Like score_leads, each lead as of its own moment (its close, for a score at close)."""
    stored = stored_out_of_fold(session, engine, lead_ids)
    return [
        _honest(engine, stored[lead_id], f, moment) if lead_id in stored else engine.score(f, moment)
        for lead_id, f, moment in zip(lead_ids, facts, moments)
    ]
