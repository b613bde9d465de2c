"""Lead scoring: pure functions over plain data.

No import of Reflex, SQLModel or the clock: callers pass the lead's facts and ``now``.
"""

from crm_app.scoring.engine import (
    ActivityFact,
    LeadFacts,
    Reason,
    ScoreResult,
    ScoringEngine,
    tier_for,
)
from crm_app.scoring.rules import ENGAGEMENT_KINDS, RuleBasedScoringEngine

__all__ = [
    "ActivityFact",
    "ENGAGEMENT_KINDS",
    "LeadFacts",
    "Reason",
    "RuleBasedScoringEngine",
    "ScoreResult",
    "ScoringEngine",
    "tier_for",
]
