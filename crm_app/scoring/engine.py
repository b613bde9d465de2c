"""The interface every scoring engine implements (Strategy), and the values it speaks in."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Collection, Iterable, Protocol, Sequence

from crm_app.domain import ActivityKind, Tier

HOT_MIN = 70
WARM_MIN = 40


def tier_for(score: int) -> Tier:
    """Hot 70-100 (most likely to buy: work first; "call within the hour" when a signal is fresh, which
    the action queue decides), Warm 40-69 (nurture), Cold 0-39 (leave to marketing)."""
    if not 0 <= score <= 100:
        raise ValueError(f"score must be within 0-100, got {score}")
    if score >= HOT_MIN:
        return Tier.HOT
    if score >= WARM_MIN:
        return Tier.WARM
    return Tier.COLD


@dataclass(frozen=True, slots=True)
class ActivityFact:
    kind: ActivityKind
    occurred_at: datetime


def next_activity_at(activities: Iterable[ActivityFact], now: datetime,
                     kinds: Collection[ActivityKind] | None = None) -> datetime | None:
    """The moment of the first activity (of `kinds`, or any) stamped after `now`: not known at `now`, it
    counts from then, so what was worked out at `now` holds until then at most. None without one."""
    return min((a.occurred_at for a in activities if a.occurred_at > now and (kinds is None or a.kind in kinds)),
               default=None)


def sooner(first: datetime | None, second: datetime | None) -> datetime | None:
    """The earlier of two expiries, None standing for "never"."""
    return second if first is None else first if second is None else min(first, second)


def check_points_add_up(score: int, points: Iterable[int]) -> None:
    """Every point of a score carries a reason: the reasons' points must sum to it (ScoreResult, and
    training's out-of-fold rows, which are written without making ScoreResults)."""
    if sum(points) != score:
        raise ValueError("the points of the reasons must add up to the score")


@dataclass(frozen=True, slots=True)
class LeadFacts:
    """What an engine may know about a lead: only facts, never the clock."""

    company_size: int | None = None
    source: str | None = None
    activities: Sequence[ActivityFact] = ()
    custom_fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reason:
    """One contribution to a score: its points and a sentence a rep understands.

    `key` names the fact ("pricing_request", "company_size"), the same in every engine, so a blend of
    two engines shows one line per fact; it is not stored (the text is what a rep reads)."""

    points: int
    text: str
    key: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"points": self.points, "text": self.text}


@dataclass(frozen=True, slots=True)
class ScoreResult:
    score: int
    tier: Tier
    reasons: tuple[Reason, ...]
    # When the score will change by the passage of time alone (a recency bonus running out);
    # None when only new facts can change it.
    valid_until: datetime | None = None

    def __post_init__(self) -> None:
        check_points_add_up(self.score, (r.points for r in self.reasons))
        if tier_for(self.score) is not self.tier:
            raise ValueError(f"tier {self.tier} does not match score {self.score}")


class ScoringEngine(Protocol):
    """Scores one lead from its facts at a given moment."""

    name: str

    def score(self, facts: LeadFacts, now: datetime) -> ScoreResult: ...
