"""Use cases of the predictive score: train a model on the team's closed deals, keep it in the model
registry (table `scoring_models`), make one the active model, and load the active one to score with.

Training reads every closed lead and its activities in two bulk queries (plain rows, no ORM object per
row), builds each lead's features as of its close time from the activities before it, and hands them
to the pure training code (crm_app/scoring/training.py), which also measures the rules on the same
holdout. Slow (seconds to a minute): call it from a background task and pass `progress`.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

from crm_app.db.models import ScoringModel
from crm_app.domain import ActivityKind, Stage
from crm_app.scoring.engine import ActivityFact, LeadFacts
from crm_app.scoring.evaluation import Evaluation
from crm_app.scoring.model import ModelScoringEngine
from crm_app.scoring.training import LabeledLead, check_history, fit_scoring_model
from crm_app.scoring.training import NotEnoughHistory as _NotEnoughHistory
from crm_app.services.errors import NotFound, ServiceError


class NotEnoughHistory(ServiceError):
    """Too few closed deals (or of one outcome) to train on; the message says how many are needed."""


@dataclass(frozen=True)
class TrainingReport:
    """What a training run stored and how the model and the rules did on the newest closed leads."""

    model_id: int
    version: int
    trained_at: datetime
    rows: int
    holdout_rows: int
    model: Evaluation
    rules: Evaluation
    base_rate_brier: float
    seconds: float
    summary: str


@dataclass(frozen=True)
class ModelRow:
    """One stored model, as a list of models shows it."""

    id: int
    version: int
    trained_at: datetime
    rows: int
    is_active: bool
    model_roc_auc: float | None
    rules_roc_auc: float | None


_CLOSED = f"l.stage IN ('{Stage.WON.value}', '{Stage.LOST.value}') AND l.closed_at IS NOT NULL AND l.closed_at <= :now"
_KINDS = {kind.value: kind for kind in ActivityKind}


def load_closed_leads(session: Session, *, now: datetime) -> list[LabeledLead]:
    """Every lead closed by `now`, with the activities that happened before it closed."""
    activities: dict[int, list[ActivityFact]] = defaultdict(list)
    rows = session.execute(
        text(
            f"""
            SELECT a.lead_id, a.kind, a.occurred_at
              FROM activities a JOIN leads l ON l.id = a.lead_id
             WHERE {_CLOSED} AND a.occurred_at < l.closed_at
            """
        ),
        {"now": now},
        execution_options={"yield_per": 20_000},
    )
    for lead_id, kind, occurred_at in rows:
        activities[lead_id].append(ActivityFact(_KINDS[kind], occurred_at))
    leads = session.execute(
        text(
            f"""
            SELECT l.id, l.company_size, l.source, l.custom_fields, l.closed_at, l.stage
              FROM leads l
             WHERE {_CLOSED}
             ORDER BY l.closed_at, l.id
            """
        ),
        {"now": now},
    )
    return [
        LabeledLead(
            facts=LeadFacts(
                company_size=row.company_size,
                source=row.source,
                activities=tuple(activities.get(row.id, ())),
                custom_fields=row.custom_fields or {},
            ),
            closed_at=row.closed_at,
            won=row.stage == Stage.WON.value,
        )
        for row in leads
    ]


def _closed_counts(session: Session, now: datetime) -> tuple[int, int]:
    won, lost = session.execute(
        text(
            f"SELECT count(*) FILTER (WHERE l.stage = 'won'), count(*) FILTER (WHERE l.stage = 'lost') "
            f"FROM leads l WHERE {_CLOSED}"
        ),
        {"now": now},
    ).one()
    return won, lost


def train_model(
    session: Session,
    *,
    now: datetime,
    progress: Callable[[str], None] | None = None,
    trained_by: int | None = None,
) -> TrainingReport:
    """Train a model on the deals closed by `now`, store it (inactive) with its metrics, and commit.

    Raises NotEnoughHistory below 200 closed deals or 30 of either outcome: the rules keep scoring.
    """
    say = progress or (lambda message: None)
    try:
        check_history(*_closed_counts(session, now))  # before loading anything
        say("Loading closed leads and their activities")
        leads = load_closed_leads(session, now=now)
        result = fit_scoring_model(leads, progress=say, meta={"trained_at": now.isoformat()})
    except _NotEnoughHistory as error:
        raise NotEnoughHistory(str(error)) from None

    say("Saving the model")
    # One training at a time picks the next version number.
    session.execute(text("LOCK TABLE scoring_models IN EXCLUSIVE MODE"))
    version = session.execute(text("SELECT coalesce(max(version), 0) + 1 FROM scoring_models")).scalar_one()
    engine = result.engine
    engine.meta["version"] = version
    row = ScoringModel(
        version=version,
        trained_at=now,
        rows=result.rows,
        features=engine.spec.as_dict(),
        metrics=result.metrics(),
        is_active=False,
        model=engine.to_bytes(),
        trained_by=trained_by,
    )
    session.add(row)
    session.commit()
    say(f"Model version {version} saved")
    return TrainingReport(
        model_id=row.id,
        version=version,
        trained_at=now,
        rows=result.rows,
        holdout_rows=result.holdout_rows,
        model=result.model,
        rules=result.rules,
        base_rate_brier=result.base_rate_brier,
        seconds=result.seconds,
        summary=result.summary(),
    )


def activate_model(session: Session, model_id: int) -> None:
    """Make `model_id` the team's one active model (the others stop being active) and commit."""
    # Serialise activations: each then sees the others' committed result before it changes rows.
    session.execute(text("LOCK TABLE scoring_models IN EXCLUSIVE MODE"))
    if session.get(ScoringModel, model_id) is None:
        raise NotFound(f"Scoring model {model_id} does not exist.")
    session.execute(
        text("UPDATE scoring_models SET is_active = false WHERE is_active AND id <> :id"), {"id": model_id}
    )
    session.execute(text("UPDATE scoring_models SET is_active = true WHERE id = :id"), {"id": model_id})
    session.commit()


def deactivate_models(session: Session) -> None:
    """No active model: the rules score the leads again. Commits."""
    session.execute(text("UPDATE scoring_models SET is_active = false WHERE is_active"))
    session.commit()


def list_models(session: Session, *, limit: int = 20) -> list[ModelRow]:
    """The newest stored models with their holdout ROC-AUC next to the rules'."""
    rows = session.execute(
        text(
            """
            SELECT id, version, trained_at, rows, is_active,
                   (metrics #>> '{model,roc_auc}')::float AS model_auc,
                   (metrics #>> '{rules,roc_auc}')::float AS rules_auc
              FROM scoring_models ORDER BY version DESC LIMIT :limit
            """
        ),
        {"limit": limit},
    )
    return [ModelRow(r.id, r.version, r.trained_at, r.rows, r.is_active, r.model_auc, r.rules_auc) for r in rows]


_cache_lock = threading.Lock()
_cached: tuple[int, ModelScoringEngine] | None = None


def load_active_engine(session: Session) -> ModelScoringEngine | None:
    """The active model's engine, or None when there is none (score with the rules).

    Every worker asks the database which model is active (one indexed lookup) and deserialises it
    only when that changed, so all workers score with the same model.
    """
    global _cached
    active_id = session.execute(text("SELECT id FROM scoring_models WHERE is_active")).scalar()
    if active_id is None:
        return None
    with _cache_lock:
        if _cached is not None and _cached[0] == active_id:
            return _cached[1]
    blob = session.execute(text("SELECT model FROM scoring_models WHERE id = :id"), {"id": active_id}).scalar()
    if blob is None:  # deleted between the two queries
        return None
    engine = ModelScoringEngine.from_bytes(blob)
    with _cache_lock:
        _cached = (active_id, engine)
    return engine


def stored_metrics(session: Session, model_id: int) -> dict[str, Any]:
    """The metrics stored with a model (for a report page)."""
    metrics = session.execute(
        text("SELECT metrics FROM scoring_models WHERE id = :id"), {"id": model_id}
    ).scalar()
    if metrics is None:
        raise NotFound(f"Scoring model {model_id} does not exist.")
    return metrics
