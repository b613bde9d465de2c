"""What the model page shows, read in one go: the engine choice, the history a model needs, the
stored models, the shown model's measures next to the rules' (each with how sure it is), how it was
measured and why, the custom fields it left out, what switching to it would change, and the two
jobs' progress.

Everything the charts need was stored with the model's metrics at training time, and the preview of
a switch joins the model's stored scores of the open leads with their tiers now: this reads a few small
rows and aggregates, and never scores or trains anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

from crm_app.domain import Tier
from crm_app.scoring.engine import HOT_MIN, WARM_MIN
from crm_app.scoring.evaluation import MEASURES, digits_for, figure_text
from crm_app.scoring.field_guard import FieldVerdict
from crm_app.scoring.training import (
    CROSS_VALIDATION,
    NO_DATES_SENTENCE,
    ORDER_NEWEST_FIRST,
    stored_headline,
    stored_interval,
)
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
    """One measure, model next to rules with how sure each is, and which of the two did better ("" for
    a tie, n/a, or when their intervals overlap so much that neither is clearly better)."""

    measure: str
    hint: str
    model: str
    rules: str
    better: str
    model_interval: str = ""  # "0.84-0.88" (bootstrap) or "+- 0.010" (folds); "" when not known
    rules_interval: str = ""


@dataclass
class DriverRow:
    title: str
    share: float  # of the model's total pull on the holdout
    share_label: str


@dataclass
class FieldRow:
    """A custom field the leak and id guard flagged, as the page lists it."""

    key: str
    kind: str  # "leak" or "id"
    reason: str
    kept: bool
    outcome: str  # "Left out of the model." / "Kept, as you asked."


@dataclass
class TierChangeRow:
    tier: str
    label: str
    before: int
    after: int


@dataclass
class ImpactPreview:
    """What scoring the open leads with the shown model would change, from its stored preview scores
    (taken when it was trained) and the leads' tiers now. Nothing is written."""

    open_leads: int  # open leads now
    previewed: int  # of them, scored by the model when it was trained
    changed: int  # previewed leads whose tier would change
    tiers: list[TierChangeRow] = field(default_factory=list)
    history: int = 0  # closed deals that would show the model's out-of-fold scores
    sentence: str = ""


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
    validation: str = "holdout"
    # How the figures were found, in a sentence ("Your history has no close dates, ..."; "Both scored ...").
    method_note: str = ""
    fit_note: str = ""  # how the scoring model was fit and calibrated
    measures: list[MeasureRow] = field(default_factory=list)
    # Cross-validation with a declared order: the newest fifth in that order, and its sentence.
    time_measures: list[MeasureRow] = field(default_factory=list)
    time_note: str = ""
    drivers: list[DriverRow] = field(default_factory=list)
    fields: list[FieldRow] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelPage:
    status: EngineStatus
    versions: list[ModelVersionRow]
    shown: ShownModel | None
    training: JobView | None
    rescoring: JobView | None
    # What switching the team to the shown model would change; None when it already scores (or when
    # not counted: `preview_counted` False).
    preview: ImpactPreview | None = None
    preview_counted: bool = True


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _better(model: float | None, rules: float | None, higher_is_better: bool = True) -> str:
    if model is None or rules is None or abs(model - rules) < 1e-9:
        return ""
    return "model" if (model > rules) == higher_is_better else "rules"


_HINTS = {
    "roc_auc": ("ROC-AUC", "How often a won deal is scored above a lost one (0.5 = chance)"),
    "pr_auc": ("PR-AUC", "Precision across the list, best scores first"),
    "brier": ("Brier score", "Distance between score and outcome (lower is better)"),
    "top_20_win_rate": ("Win rate in the top 20%", "Share of the best-scored fifth that was won"),
    "top_20_lift": ("Lift of the top 20%", "Its win rate over the base rate"),
}


def _interval_text(
    measure: str, value: float | None, metrics: dict[str, Any], scorer: str, digits: int
) -> str:
    interval = stored_interval(metrics, scorer, measure)
    if value is None or interval is None or interval.high - interval.low < 1e-9:
        return ""  # none known, or none to speak of (the rules' constant score)
    shown = figure_text(measure, value, interval, digits=digits)
    return shown.split(" ", 1)[1].strip("()").replace("+- ", "± ") if " " in shown else ""


def measure_rows(metrics: dict[str, Any]) -> list[MeasureRow]:
    """The headline measures of model and rules side by side, in a manager's words, each with its
    interval and no more decimals than that interval supports."""
    rows = []
    for measure in MEASURES:
        title, hint = _HINTS[measure]
        model, rules = stored_headline(metrics, "model", measure), stored_headline(metrics, "rules", measure)
        model_i = stored_interval(metrics, "model", measure)
        rules_i = stored_interval(metrics, "rules", measure)
        digits = digits_for(measure, model_i, rules_i)
        rows.append(MeasureRow(
            measure=title,
            hint=hint,
            model=figure_text(measure, model, model_i, with_interval=False, digits=digits),
            rules=figure_text(measure, rules, rules_i, with_interval=False, digits=digits),
            better=_better(model, rules, higher_is_better=measure != "brier"),
            model_interval=_interval_text(measure, model, metrics, "model", digits),
            rules_interval=_interval_text(measure, rules, metrics, "rules", digits),
        ))
    return rows


def _method_note(metrics: dict[str, Any]) -> str:
    if metrics.get("validation") == CROSS_VALIDATION:
        folds = metrics.get("folds_count", 5)
        return (NO_DATES_SENTENCE.format(folds=folds) + f". Each of the {metrics['rows']:,} closed deals was "
                f"scored by a model trained on the other {folds - 1} fifths; ± is the spread over the "
                f"{folds} folds. "
                "The model that scores learned from every deal.")
    since = str(metrics.get("holdout_from") or "")[:10]
    note = (f"Both scored the newest {metrics.get('holdout_rows', 0):,} closed deals (closed since {since}), "
            "which the model never saw; green is the better of the two")
    if metrics.get("interval_kind"):
        note += ". Under each figure, a 95% interval: where it would likely land on other deals like these"
    return note + "."


def _fit_note(metrics: dict[str, Any]) -> str:
    trees, method = metrics.get("trees", 0), metrics.get("calibration_method", "")
    if metrics.get("calibrated_on") == "out_of_fold":
        return (f"{trees} trees fit on all {metrics.get('fit_rows', 0):,} deals of its training history, "
                f"{method} calibration on their out-of-fold scores.")
    return f"{trees} trees, {method} calibration."


def _time_holdout(metrics: dict[str, Any]) -> tuple[list[MeasureRow], str]:
    held = metrics.get("time_holdout")
    if not held:
        return [], ""
    order = "newest first" if metrics.get("history_order") == ORDER_NEWEST_FIRST else "oldest first"
    return measure_rows({**held, "validation": "holdout"}), (
        f"In the order you said the file lists its deals ({order}), the newest {held['rows']:,} held out "
        "and scored by a model trained on the others:"
    )


def field_rows(metrics: dict[str, Any]) -> list[FieldRow]:
    verdicts = [FieldVerdict.from_dict(v) for v in metrics.get("field_guard") or []]
    return [FieldRow(v.key, v.kind, v.reason, v.kept, v.outcome) for v in verdicts]


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
    time_measures, time_note = _time_holdout(metrics)
    return ShownModel(
        id=chosen.id,
        version=chosen.version,
        is_active=chosen.is_active,
        trained_at=f"{trained_at:%Y-%m-%d %H:%M} UTC",
        rows=int(metrics.get("rows", 0)),
        holdout_rows=int(metrics.get("holdout_rows", 0)),
        holdout_from=str(metrics.get("holdout_from") or "")[:10],
        trees=int(metrics.get("trees", 0)),
        calibration_method=str(metrics.get("calibration_method", "")),
        features_at=str(metrics.get("features_at", "close")),
        validation=str(metrics.get("validation", "holdout")),
        method_note=_method_note(metrics),
        fit_note=_fit_note(metrics),
        measures=measure_rows(metrics),
        time_measures=time_measures,
        time_note=time_note,
        drivers=drivers,
        fields=field_rows(metrics),
        metrics=metrics,
    )


_TIERS = [Tier.HOT, Tier.WARM, Tier.COLD]


def impact_preview(session: Session, model_id: int) -> ImpactPreview:
    """What scoring with this model would change for the open leads (tiers now against the tiers of
    the model's preview scores) and how many closed deals would show its out-of-fold scores: counted
    in SQL, nothing written."""
    row = session.execute(
        text(
            """
            SELECT count(*) AS open_leads,
                   count(ms.lead_id) AS previewed,
                   count(*) FILTER (WHERE ms.tier IS NOT NULL AND ms.tier <> l.tier) AS changed,
                   count(*) FILTER (WHERE ms.lead_id IS NOT NULL AND l.tier = 'hot') AS before_hot,
                   count(*) FILTER (WHERE ms.lead_id IS NOT NULL AND l.tier = 'warm') AS before_warm,
                   count(*) FILTER (WHERE ms.lead_id IS NOT NULL AND l.tier = 'cold') AS before_cold,
                   count(*) FILTER (WHERE ms.tier = 'hot') AS after_hot,
                   count(*) FILTER (WHERE ms.tier = 'warm') AS after_warm,
                   count(*) FILTER (WHERE ms.tier = 'cold') AS after_cold
              FROM leads l
              LEFT JOIN (SELECT p.lead_id,
                                CASE WHEN p.score >= :hot THEN 'hot' WHEN p.score >= :warm THEN 'warm'
                                     ELSE 'cold' END AS tier
                           FROM model_previews mp, unnest(mp.lead_ids, mp.scores) AS p(lead_id, score)
                          WHERE mp.model_id = :id) ms ON ms.lead_id = l.id
             WHERE l.stage NOT IN ('won', 'lost')
            """
        ),
        {"id": model_id, "hot": HOT_MIN, "warm": WARM_MIN},
    ).one()
    history = session.execute(
        text("SELECT count(*) FROM model_scores ms JOIN leads l ON l.id = ms.lead_id "
             "WHERE ms.model_id = :id AND ms.out_of_fold AND l.stage IN ('won', 'lost')"),
        {"id": model_id},
    ).scalar_one()
    tiers = [
        TierChangeRow(t.value, t.label, getattr(row, f"before_{t.value}"), getattr(row, f"after_{t.value}"))
        for t in _TIERS
    ]
    if row.previewed:
        sentence = (f"{row.changed:,} of {row.previewed:,} open leads would change tier"
                    + ("" if row.previewed == row.open_leads else
                       f" ({row.open_leads - row.previewed:,} newer than the model get scored when you "
                       "switch)")
                    + ".")
    elif row.open_leads:
        sentence = (f"The {row.open_leads:,} open leads are newer than this model; they get scored when you "
                    "switch.")
    else:
        sentence = "There are no open leads yet; new ones will be scored by the model."
    if history:
        sentence += (f" The {history:,} closed deals it learned from will show the score of a model that "
                     "did not learn from them, so lists, the export and Analytics judge it fairly.")
    return ImpactPreview(row.open_leads, row.previewed, row.changed, tiers, history, sentence)


def model_page(session: Session, *, now: datetime, with_preview: bool = True) -> ModelPage:
    """Everything the model page shows, from a handful of small queries; `with_preview=False` skips
    the switch preview's aggregate over the open leads (while a job's progress is polled)."""
    versions = [
        ModelVersionRow(
            id=m.id, version=m.version, trained_at=f"{m.trained_at:%Y-%m-%d %H:%M}", rows=f"{m.rows:,}",
            is_active=m.is_active, model_auc=_num(m.model_roc_auc), rules_auc=_num(m.rules_roc_auc),
        )
        for m in list_models(session)
    ]
    status = engine_status(session, now=now)
    shown = _shown_model(session, versions)
    scores_now = shown is not None and status.effective == "model" and status.model_version == shown.version
    return ModelPage(
        status=status,
        versions=versions,
        shown=shown,
        training=latest_job(session, TRAIN, now=now),
        rescoring=latest_job(session, RESCORE, now=now),
        preview=(impact_preview(session, shown.id)
                 if with_preview and shown is not None and not scores_now else None),
        preview_counted=with_preview,
    )

