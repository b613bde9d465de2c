"""What the model page shows, read in one go: the engine choice, the history a model needs, the
stored models, the shown model's measures next to the rules', and the two jobs' progress.

Everything the charts need was stored with the model's metrics at training time, so this reads a
few small rows and never scores or trains anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

from crm_app.services.model_training import list_models, stored_metrics
from crm_app.services.scoring_jobs import RESCORE, TRAIN, JobView, latest_job
from crm_app.services.scoring_settings import EngineStatus, engine_status


@dataclass
class ModelVersionRow:
    id: int
    version: int
    trained_at: str
    rows: str
    is_active: bool
    model_auc: str
    rules_auc: str


@dataclass
class MeasureRow:
    """One measure, model next to rules, and which of the two did better ("" for a tie or n/a)."""

    measure: str
    hint: str
    model: str
    rules: str
    better: str


@dataclass
class DriverRow:
    title: str
    share: float  # of the model's total pull on the holdout
    share_label: str


@dataclass
class ShownModel:
    """The model the page describes (the active one, else the newest)."""

    id: int
    version: int
    is_active: bool
    trained_at: str
    rows: int
    holdout_rows: int
    holdout_from: str
    trees: int
    calibration_method: str
    features_at: str
    measures: list[MeasureRow] = field(default_factory=list)
    drivers: list[DriverRow] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelPage:
    status: EngineStatus
    versions: list[ModelVersionRow]
    shown: ShownModel | None
    training: JobView | None
    rescoring: JobView | None


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _better(model: float | None, rules: float | None, higher_is_better: bool = True) -> str:
    if model is None or rules is None or abs(model - rules) < 1e-9:
        return ""
    return "model" if (model > rules) == higher_is_better else "rules"


def measure_rows(metrics: dict[str, Any]) -> list[MeasureRow]:
    """The holdout measures of model and rules side by side, in a manager's words."""
    m, r = metrics["model"], metrics["rules"]
    rows = [
        MeasureRow("ROC-AUC", "How often a won deal is scored above a lost one (0.5 = chance)",
                   _num(m["roc_auc"]), _num(r["roc_auc"]), _better(m["roc_auc"], r["roc_auc"])),
        MeasureRow("PR-AUC", "Precision across the list, best scores first",
                   _num(m["pr_auc"]), _num(r["pr_auc"]), _better(m["pr_auc"], r["pr_auc"])),
        MeasureRow("Brier score", "Distance between score and outcome (lower is better)",
                   _num(m["brier"], 4), _num(r["brier"], 4), _better(m["brier"], r["brier"], higher_is_better=False)),
        MeasureRow("Win rate in the top 20%", "Share of the best-scored fifth that was won",
                   f"{m['top_20_win_rate']:.1%}", f"{r['top_20_win_rate']:.1%}",
                   _better(m["top_20_win_rate"], r["top_20_win_rate"])),
        MeasureRow("Lift of the top 20%", "Its win rate over the holdout's base rate",
                   _num(m["top_20_lift"], 2) + "x", _num(r["top_20_lift"], 2) + "x",
                   _better(m["top_20_lift"], r["top_20_lift"])),
    ]
    return rows


def _shown_model(session: Session, versions: list[ModelVersionRow]) -> ShownModel | None:
    chosen = next((v for v in versions if v.is_active), versions[0] if versions else None)
    if chosen is None:
        return None
    metrics = stored_metrics(session, chosen.id)
    drivers = [
        DriverRow(title, float(share), f"{share:.0%}") for title, share in metrics.get("driver_titles", [])
    ]
    trained_at = session.execute(
        text("SELECT trained_at FROM scoring_models WHERE id = :id"), {"id": chosen.id}
    ).scalar_one()
    return ShownModel(
        id=chosen.id,
        version=chosen.version,
        is_active=chosen.is_active,
        trained_at=f"{trained_at:%Y-%m-%d %H:%M} UTC",
        rows=int(metrics.get("rows", 0)),
        holdout_rows=int(metrics.get("holdout_rows", 0)),
        holdout_from=str(metrics.get("holdout_from", ""))[:10],
        trees=int(metrics.get("trees", 0)),
        calibration_method=str(metrics.get("calibration_method", "")),
        features_at=str(metrics.get("features_at", "close")),
        measures=measure_rows(metrics),
        drivers=drivers,
        metrics=metrics,
    )


def model_page(session: Session, *, now: datetime) -> ModelPage:
    """Everything the model page shows, from a handful of small queries."""
    versions = [
        ModelVersionRow(
            id=m.id, version=m.version, trained_at=f"{m.trained_at:%Y-%m-%d %H:%M}", rows=f"{m.rows:,}",
            is_active=m.is_active, model_auc=_num(m.model_roc_auc), rules_auc=_num(m.rules_roc_auc),
        )
        for m in list_models(session)
    ]
    return ModelPage(
        status=engine_status(session, now=now),
        versions=versions,
        shown=_shown_model(session, versions),
        training=latest_job(session, TRAIN, now=now),
        rescoring=latest_job(session, RESCORE, now=now),
    )
