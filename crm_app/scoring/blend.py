"""A weighted mix of two engines (the model and the rules), explained like either of them.

The blended score is `weight * model + (1 - weight) * rules`, both on the 0-100 scale where a score
reads as a chance of winning. Each engine's reasons are scaled by its share, so the reasons still
add up to the score: whole points by largest remainder (`apportion`), which never flips a reason's
sign. A reason both engines give in the same words is shown once, with the points of both.

Pure: no Reflex, no SQL, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from crm_app.scoring.engine import LeadFacts, Reason, ScoreResult, ScoringEngine, tier_for
from crm_app.scoring.model import OTHER_TEXT, apportion

MAX_REASONS = 6


def _round_half_up(value: float) -> int:
    return int(value + 0.5) if value >= 0 else -int(-value + 0.5)


def blend_results(model: ScoreResult, rules: ScoreResult, weight: float, max_reasons: int = MAX_REASONS) -> ScoreResult:
    """One blended result from a model's and the rules' results for the same lead and moment."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the blend weight must be within 0-1, got {weight}")
    score = min(100, max(0, _round_half_up(weight * model.score + (1 - weight) * rules.score)))
    merged: dict[str, float] = {}
    for result, share in ((model, weight), (rules, 1 - weight)):
        for reason in result.reasons:
            merged[reason.text] = merged.get(reason.text, 0.0) + share * reason.points
    # The model's own "Other factors" joins the reasons folded here: one line of that name, not two.
    folded = merged.pop(OTHER_TEXT, 0.0)
    ranked = sorted((item for item in merged.items() if item[1] != 0), key=lambda item: -abs(item[1]))
    shown, rest = ranked[:max_reasons], ranked[max_reasons:]
    if rest or folded or not shown:
        shown.append((OTHER_TEXT, folded + sum(points for _, points in rest)))
    whole = apportion([points for _, points in shown], score)
    reasons = sorted(
        (Reason(points, text) for (text, _), points in zip(shown, whole) if points),
        key=lambda reason: -abs(reason.points),
    )
    expiries = [t for t in (model.valid_until, rules.valid_until) if t is not None]
    return ScoreResult(score=score, tier=tier_for(score), reasons=tuple(reasons),
                       valid_until=min(expiries) if expiries else None)


class BlendedScoringEngine:
    """Scores with both engines and mixes them: `weight` is the model's share, the rules get the rest."""

    name = "blend"

    def __init__(self, model: ScoringEngine, rules: ScoringEngine, weight: float) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"the blend weight must be within 0-1, got {weight}")
        self.model = model
        self.rules = rules
        self.weight = weight

    def score(self, facts: LeadFacts, now: datetime) -> ScoreResult:
        return blend_results(self.model.score(facts, now), self.rules.score(facts, now), self.weight)

    def score_many(self, facts: Sequence[LeadFacts], now: datetime) -> list[ScoreResult]:
        """Many leads at once: the model scores them in one batch (what bulk rescoring uses)."""
        return [
            blend_results(m, self.rules.score(f, now), self.weight)
            for f, m in zip(facts, score_many(self.model, facts, now))
        ]


def score_many(engine: ScoringEngine, facts: Sequence[LeadFacts], now: datetime) -> list[ScoreResult]:
    """Score many leads with any engine: in one batch when it can, else one by one."""
    batch = getattr(engine, "score_many", None)
    if batch is not None:
        return list(batch(facts, now))
    return [engine.score(f, now) for f in facts]
