"""A weighted mix of two engines (the model and the rules), explained like either of them.

The blended score is `weight * model + (1 - weight) * rules`, both on the 0-100 scale where a score
reads as a chance of winning. Each engine's reasons are scaled by its share, so the reasons still
add up to the score: whole points by largest remainder (`apportion`), which never flips a reason's
sign. A fact both engines give a reason for (the same `key`: a pricing request, the company size) is
shown once, with the points of both, in the model's words (the engines share the words for activity,
`phrases.py`). Both engines ignore a rep's own calls, emails and notes and are monotone in the
prospect's activity, so the blend is too.

Pure: no Reflex, no SQL, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from crm_app.scoring.engine import LeadFacts, Reason, ScoreResult, ScoringEngine, tier_for
from crm_app.scoring.model import _LISTED_KEYS, OTHER_TEXT, apportion

def _round_half_up(value: float) -> int:
    return int(value + 0.5) if value >= 0 else -int(-value + 0.5)


def blend_results(model: ScoreResult, rules: ScoreResult, weight: float) -> ScoreResult:
    """One blended result from a model's and the rules' results for the same lead and moment."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the blend weight must be within 0-1, got {weight}")
    score = min(100, max(0, _round_half_up(weight * model.score + (1 - weight) * rules.score)))
    merged: dict[str, list] = {}  # key -> [text, points]
    for result, share in ((model, weight), (rules, 1 - weight)):
        for reason in result.reasons:
            key = reason.key or reason.text
            if key in merged:
                merged[key][1] += share * reason.points
            else:
                merged[key] = [reason.text, share * reason.points]
    # The model's own "Other factors" joins the reasons folded here: one line of that name, not two.
    folded = merged.pop("other", [OTHER_TEXT, 0.0])[1]
    # Every fact either engine named keeps its line (the model already folded its smallest ones, and
    # the rules have five at most); pricing and demo requests whatever their points.
    shown = [(text, points, key) for key, (text, points) in merged.items() if points or key in _LISTED_KEYS]
    if folded or not shown:
        shown.append((OTHER_TEXT, folded, "other"))
    whole = apportion([points for _, points, _ in shown], score)
    reasons = sorted(
        (Reason(points, text, key) for (text, _, key), points in zip(shown, whole)
         if points or key in _LISTED_KEYS),
        key=lambda reason: (reason.key != "baseline", -abs(reason.points)),  # as the model orders them
    )
    # Only an engine with a share can make the blend expire.
    expiries = [t for t, share in ((model.valid_until, weight), (rules.valid_until, 1 - weight))
                if t is not None and share > 0]
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
