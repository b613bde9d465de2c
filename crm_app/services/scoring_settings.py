"""The team's choice of scoring engine: the rules, the trained model, or a blend of both.

Stored in one row (`scoring_settings`), read by `services.scoring.active_engine` in every worker.
Choosing the model while no model is active is allowed (it takes effect once one is), and the
status says plainly that the rules score until then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlmodel import Session

from crm_app.services import audit
from crm_app.services.errors import InvalidInput
from crm_app.services.model_training import history_counts
from crm_app.services.permissions import CurrentUser, require_manager
from crm_app.services.scoring import ENGINE_MODES, EngineConfig, engine_config

ENGINE_LABELS = {"rules": "Rules", "model": "Model", "blend": "Blend"}


@dataclass
class EngineStatus:
    """What a manager sees about scoring: the choice, what really scores, and why."""

    mode: str
    blend_percent: str  # the model's share of a blend, as typed in the editor ("50")
    effective: str  # rules | model | blend
    effective_label: str  # "Rules", "Model v3", "Blend: 60% model v3, 40% rules"
    model_version: int  # 0 when no model is active
    note: str  # why the rules score although the model was chosen; "" otherwise
    won: int
    lost: int
    enough_history: bool


def _label(config: EngineConfig) -> str:
    if config.effective == "rules":
        return "Rules"
    if config.effective == "model":
        return f"Model v{config.model_version}"
    share = round(100 * config.blend_weight)
    return f"Blend: {share}% model v{config.model_version}, {100 - share}% rules"


def engine_status(session: Session, *, now: datetime) -> EngineStatus:
    """The choice and what it means now, with the history counts a model needs."""
    config = engine_config(session)
    history = history_counts(session, now=now)
    note = ""
    if config.mode != "rules" and config.model_id is None:
        if history.enough:
            note = "No model is active yet: the rules score every lead until you train and activate one."
        else:
            note = (
                f"Too little history for a model: {history.won:,} won and {history.lost:,} lost deals, "
                f"{history.missing} needed. The rules score every lead until then."
            )
    return EngineStatus(
        mode=config.mode,
        blend_percent=f"{100 * config.blend_weight:g}",
        effective=config.effective,
        effective_label=_label(config),
        model_version=config.model_version or 0,
        note=note,
        won=history.won,
        lost=history.lost,
        enough_history=history.enough,
    )


def parse_blend_percent(typed: str) -> float:
    """The model's share of a blend as typed ("60", "60%"), as a weight 0-1. Raises InvalidInput."""
    cleaned = (typed or "").strip().removesuffix("%").strip()
    try:
        percent = float(cleaned)
    except ValueError:
        raise InvalidInput("Enter the model's share as a percentage, e.g. 50.", field="blend_weight") from None
    if not 0 <= percent <= 100:
        raise InvalidInput("Choose a share between 0 and 100%.", field="blend_weight")
    return round(percent) / 100


def set_engine_choice(
    session: Session, *, mode: str, blend_percent: str | None = None, now: datetime, actor: CurrentUser | None
) -> tuple[EngineConfig, EngineConfig]:
    """Store the team's engine (and the blend's share) as `actor`'s choice and commit. Returns
    (before, after): when their `key` differs, open leads must be rescored. Raises InvalidInput, and
    Forbidden unless `actor` is a manager (None: the tables' owner, see permissions.require_manager);
    nothing changes then."""
    require_manager(session, actor, "change how leads are scored")
    user_id = actor.id if actor is not None else None
    if mode not in ENGINE_MODES:
        raise InvalidInput(f"Unknown scoring engine {mode!r}.", field="engine")
    before = engine_config(session)
    weight = before.blend_weight if blend_percent is None else parse_blend_percent(blend_percent)
    session.execute(
        # An upsert: the migration creates the row, but a TRUNCATE ... CASCADE of users empties it.
        text(
            "INSERT INTO scoring_settings (id, engine, blend_weight, updated_at, updated_by) "
            "VALUES (1, :mode, :weight, :now, :user) ON CONFLICT (id) DO UPDATE SET engine = :mode, "
            "blend_weight = :weight, updated_at = :now, updated_by = :user"
        ),
        {"mode": mode, "weight": weight, "now": now, "user": user_id},
    )
    if (before.mode, before.blend_weight) != (mode, weight):
        audit.record(session, now=now, actor_id=user_id, action="engine_switched", entity="scoring_settings",
                     entity_id=1, old={"engine": before.mode, "blend_weight": before.blend_weight},
                     new={"engine": mode, "blend_weight": weight})
    session.commit()
    return before, engine_config(session)
