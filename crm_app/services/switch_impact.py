"""What a switch of the team's scoring engine does, said before it is made (the Model page's
confirmation): how many open leads are re-ranked, and the Hot/Warm/Cold counts now and after.

The counts after come from the model's stored preview scores (services/model_report.impact_preview,
taken when it was trained); for the rules or a blend nothing is stored, so the confirmation says the
counts now and that the new tiers arrive with the rescoring. Counted in SQL; nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import text
from sqlmodel import Session

from crm_app.services.model_report import TierChangeRow, impact_preview
from crm_app.services.scoring import engine_config

_LABELS = {"hot": "Hot", "warm": "Warm", "cold": "Cold"}


@dataclass
class SwitchImpact:
    open_leads: int
    headline: str  # "Re-ranks 1,484 open leads; Hot 293 → 194."
    detail: str  # the other tiers, or why the counts after are not known yet
    tiers: list[TierChangeRow] = field(default_factory=list)


def _tiers_now(session: Session) -> tuple[int, dict[str, int]]:
    rows = session.execute(text(
        "SELECT tier, count(*) FROM leads WHERE stage NOT IN ('won', 'lost') GROUP BY tier")).all()
    counts = {tier: count for tier, count in rows}
    return sum(counts.values()), counts


def switch_impact(session: Session, *, mode: str, model_id: int | None = None) -> SwitchImpact:
    """The impact of scoring with `mode` (rules | model | blend); `model_id` names the model a "model"
    switch will use (default: the active one)."""
    if mode == "model" and model_id is None:
        model_id = engine_config(session).model_id
    if mode == "model" and model_id is not None:
        preview = impact_preview(session, model_id)
        if preview.previewed:
            hot = next(t for t in preview.tiers if t.tier == "hot")
            others = ", ".join(f"{t.label} {t.before:,} \u2192 {t.after:,}" for t in preview.tiers if t.tier != "hot")
            newer = preview.open_leads - preview.previewed
            return SwitchImpact(
                preview.open_leads,
                f"Re-ranks {preview.open_leads:,} open leads; Hot {hot.before:,} \u2192 {hot.after:,}.",
                f"{others}; {preview.changed:,} leads change tier"
                + (f" ({newer:,} newer than the model are scored on the switch)" if newer else "")
                + ". Every rep's queue, board and lists change order.",
                preview.tiers,
            )
    total, now = _tiers_now(session)
    counts = ", ".join(f"{label} {now.get(tier, 0):,}" for tier, label in _LABELS.items())
    return SwitchImpact(
        total,
        f"Re-ranks {total:,} open leads; Hot {now.get('hot', 0):,} now.",
        f"Now: {counts}. The new tiers arrive with the rescoring (a background job); "
        "every rep's queue, board and lists change order.",
    )
