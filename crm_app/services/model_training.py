"""Use cases of the predictive score: train a model on the team's closed deals, keep it in the model
registry (table `scoring_models`), make one the active model, and load the active one to score with.

Training reads every closed lead and its activities in two bulk queries (plain rows, no ORM object per
row), builds each lead's features as of one moment of its open life (not its close: see
`open_life_moment`) from the activities before it, and hands them to the pure training code
(crm_app/scoring/training.py), which also measures the rules on the same holdout. What the model page
draws (gains curves, named drivers) is stored with the metrics. Slow (seconds to a minute): run it
as a background job (services/scoring_jobs.py) and pass `progress`.
"""

from __future__ import annotations

import logging

import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlmodel import Session

from crm_app.db.models import ScoringModel, utcnow
from crm_app.domain import ActivityKind, Stage
from crm_app.scoring.engine import ActivityFact, LeadFacts
from crm_app.scoring.evaluation import GAINS_SHARES, Evaluation, gains_curve
from crm_app.scoring.features import group_title, open_life_moment
from crm_app.scoring.model import ModelScoringEngine, OutdatedModel
from crm_app.scoring.rules import RuleBasedScoringEngine
from crm_app.scoring.training import (
    MIN_CLOSED,
    MIN_EACH_OUTCOME,
    LabeledLead,
    TrainingResult,
    check_history,
    fit_scoring_model,
)
from crm_app.scoring.training import NotEnoughHistory as _NotEnoughHistory
from crm_app.services import audit
from crm_app.services.errors import NotFound, ServiceError
from crm_app.services.permissions import CurrentUser, require_manager

logger = logging.getLogger(__name__)


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


def load_closed_leads(session: Session, *, now: datetime, at_close: bool = False) -> list[LabeledLead]:
    """Every lead closed by `now`, oldest close first, each as it was at one moment of its open life
    (`open_life_moment`) with only the activities before that moment; `at_close` takes them at the
    close instead (what earlier versions trained on, kept to measure the difference)."""
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
            SELECT l.id, l.company_size, l.source, l.custom_fields, l.created_at, l.closed_at, l.stage
              FROM leads l
             WHERE {_CLOSED}
             ORDER BY l.closed_at, l.id
            """
        ),
        {"now": now},
    )
    labeled = []
    for row in leads:
        as_of = row.closed_at if at_close else open_life_moment(row.id, row.created_at, row.closed_at)
        labeled.append(
            LabeledLead(
                facts=LeadFacts(
                    company_size=row.company_size,
                    source=row.source,
                    activities=tuple(a for a in activities.get(row.id, ()) if a.occurred_at < as_of),
                    custom_fields=row.custom_fields or {},
                ),
                closed_at=row.closed_at,
                won=row.stage == Stage.WON.value,
                as_of=None if at_close else as_of,
            )
        )
    return labeled


@dataclass(frozen=True)
class HistoryCounts:
    """Closed deals a model could learn from, next to what it needs."""

    won: int
    lost: int
    needed_closed: int = MIN_CLOSED
    needed_each: int = MIN_EACH_OUTCOME

    @property
    def enough(self) -> bool:
        return (
            self.won + self.lost >= self.needed_closed
            and self.won >= self.needed_each
            and self.lost >= self.needed_each
        )

    @property
    def missing(self) -> str:
        """What is still missing, in a sentence; empty when there is enough."""
        wants = []
        if self.won + self.lost < self.needed_closed:
            wants.append(f"{self.needed_closed - self.won - self.lost:,} more closed deals")
        if self.won < self.needed_each:
            wants.append(f"{self.needed_each - self.won:,} more won")
        if self.lost < self.needed_each:
            wants.append(f"{self.needed_each - self.lost:,} more lost")
        return " and ".join(wants)


def history_counts(session: Session, *, now: datetime) -> HistoryCounts:
    """How many won and lost deals there are to learn from (one aggregate query)."""
    return HistoryCounts(*_closed_counts(session, now))


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
    at_close: bool = False,
) -> TrainingReport:
    """Train a model on the deals closed by `now`, store it (inactive) with its metrics, and commit.

    Raises NotEnoughHistory below 200 closed deals or 30 of either outcome: the rules keep scoring.
    """
    say = progress or (lambda message: None)
    try:
        check_history(*_closed_counts(session, now))  # before loading anything
        say("Loading closed leads and their activities")
        leads = load_closed_leads(session, now=now, at_close=at_close)
        result = fit_scoring_model(leads, progress=say, meta={"trained_at": now.isoformat()})
    except _NotEnoughHistory as error:
        raise NotEnoughHistory(str(error)) from None
    metrics = {**result.metrics(), **_chart_metrics(result, leads, at_close)}

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
        metrics=metrics,
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


def _chart_metrics(result: TrainingResult, leads: list[LabeledLead], at_close: bool) -> dict[str, Any]:
    """What the model page draws beyond the stored evaluations: cumulative gains of model and rules
    on the same holdout, and the strongest feature groups in words with their share of the pull."""
    held_out = sorted(leads, key=lambda lead: lead.closed_at)[-result.holdout_rows :]
    won = np.array([lead.won for lead in held_out], dtype=float)
    engine = result.engine
    model_p = engine.probabilities(engine.spec.matrix([l.facts for l in held_out], [l.moment for l in held_out]))
    rules = RuleBasedScoringEngine()
    rules_p = np.array([rules.score(l.facts, l.moment).score / 100 for l in held_out])
    total_pull = sum(value for _, value in result.drivers) or 1.0
    closed_won = sum(lead.won for lead in leads)
    return {
        "gains": {"shares": list(GAINS_SHARES), "model": gains_curve(model_p, won), "rules": gains_curve(rules_p, won)},
        "driver_titles": [[group_title(group), value / total_pull] for group, value in result.drivers],
        "features_at": "close" if at_close else "open_life",
        "history": {"won": closed_won, "lost": len(leads) - closed_won},
    }


def activate_model(session: Session, model_id: int, *, actor: CurrentUser | None, now: datetime | None = None) -> None:
    """Make `model_id` the team's one active model (the others stop being active) and commit.
    Forbidden unless `actor` is a manager (None: the tables' owner, see permissions.require_manager)."""
    require_manager(session, actor, "choose the active model")
    actor_id = actor.id if actor is not None else None
    # Serialise activations: each then sees the others' committed result before it changes rows.
    session.execute(text("LOCK TABLE scoring_models IN EXCLUSIVE MODE"))
    if session.get(ScoringModel, model_id) is None:
        raise NotFound(f"Scoring model {model_id} does not exist.")
    session.execute(
        text("UPDATE scoring_models SET is_active = false WHERE is_active AND id <> :id"), {"id": model_id}
    )
    previous = session.execute(text("SELECT version FROM scoring_models WHERE is_active")).scalar()
    session.execute(text("UPDATE scoring_models SET is_active = true WHERE id = :id"), {"id": model_id})
    version = session.execute(text("SELECT version FROM scoring_models WHERE id = :id"), {"id": model_id}).scalar()
    if previous != version:
        audit.record(session, now=now or utcnow(), actor_id=actor_id, action="model_activated", entity="scoring_model",
                     entity_id=model_id, old={"active_version": previous}, new={"active_version": version})
    session.commit()


def deactivate_models(session: Session, *, actor: CurrentUser | None) -> None:
    """No active model: the rules score the leads again. Commits. Forbidden unless `actor` is a
    manager (None: the tables' owner)."""
    require_manager(session, actor, "choose the active model")
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


def engine_for_model(session: Session, model_id: int | None) -> ModelScoringEngine | None:
    """A stored model's engine, deserialised only when the model differs from the cached one."""
    global _cached
    if model_id is None:
        return None
    with _cache_lock:
        if _cached is not None and _cached[0] == model_id:
            return _cached[1]
    blob = session.execute(text("SELECT model FROM scoring_models WHERE id = :id"), {"id": model_id}).scalar()
    if blob is None:  # deleted meanwhile
        return None
    try:
        engine = ModelScoringEngine.from_bytes(blob)
    except OutdatedModel:
        # Trained by an earlier version (`cli setup` retrains it): the rules score meanwhile.
        logger.warning("Scoring model %s was trained by an earlier version of the app; the rules score "
                       "until a new model is trained", model_id)
        return None
    with _cache_lock:
        _cached = (model_id, engine)
    return engine


def load_active_engine(session: Session) -> ModelScoringEngine | None:
    """The active model's engine, or None when there is none (score with the rules).

    Every worker asks the database which model is active (one indexed lookup) and deserialises it
    only when that changed, so all workers score with the same model.
    """
    active_id = session.execute(text("SELECT id FROM scoring_models WHERE is_active")).scalar()
    return engine_for_model(session, active_id)


def stored_metrics(session: Session, model_id: int) -> dict[str, Any]:
    """The metrics stored with a model (for a report page)."""
    metrics = session.execute(
        text("SELECT metrics FROM scoring_models WHERE id = :id"), {"id": model_id}
    ).scalar()
    if metrics is None:
        raise NotFound(f"Scoring model {model_id} does not exist.")
    return metrics
