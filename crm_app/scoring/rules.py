"""The transparent rubric every rep can check by hand.

    pricing interest (pricing request or pricing page visit)   +30
    any engagement within the last 24 hours                    +20
    demo request                                               +15
    company over 50 employees                                  +10
    engagement: +5 per interaction, capped at                  +25

Engagement means something the prospect did: opened, clicked or replied to an email, visited a
page or the pricing page, asked for pricing or a demo, submitted a form, or attended a meeting.
A rep's own calls, sent emails and notes do not count: a rep cannot raise a score by logging work.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from crm_app.domain import ActivityKind
from crm_app.scoring.engine import LeadFacts, Reason, ScoreResult, next_activity_at, sooner, tier_for
from crm_app.scoring.phrases import activity_key, activity_phrase, day

PRICING_POINTS = 30
RECENT_POINTS = 20
DEMO_POINTS = 15
COMPANY_SIZE_POINTS = 10
POINTS_PER_INTERACTION = 5
ENGAGEMENT_CAP = 25
RECENT_WINDOW = timedelta(hours=24)
COMPANY_SIZE_OVER = 50

ENGAGEMENT_KINDS = frozenset(
    {
        ActivityKind.EMAIL_OPENED,
        ActivityKind.EMAIL_CLICKED,
        ActivityKind.EMAIL_RECEIVED,
        ActivityKind.PAGE_VISIT,
        ActivityKind.PRICING_PAGE_VISIT,
        ActivityKind.PRICING_REQUEST,
        ActivityKind.DEMO_REQUEST,
        ActivityKind.FORM_SUBMISSION,
        ActivityKind.MEETING,
    }
)


class RuleBasedScoringEngine:
    """Implements the rubric exactly; every point carries a reason."""

    name = "rules"

    def score(self, facts: LeadFacts, now: datetime) -> ScoreResult:
        # Only what had happened by `now` counts: a fact stamped in the future is not known yet.
        engaged = sorted(
            (a for a in facts.activities if a.kind in ENGAGEMENT_KINDS and a.occurred_at <= now),
            key=lambda a: a.occurred_at,
        )
        reasons: list[Reason] = []
        valid_until = None

        # Pricing interest counts once; the reason names every pricing request (or, with none, the
        # pricing page visits) in the words every engine uses.
        requests = [a.occurred_at for a in engaged if a.kind is ActivityKind.PRICING_REQUEST]
        views = [a.occurred_at for a in engaged if a.kind is ActivityKind.PRICING_PAGE_VISIT]
        if requests or views:
            kind = ActivityKind.PRICING_REQUEST if requests else ActivityKind.PRICING_PAGE_VISIT
            reasons.append(
                Reason(PRICING_POINTS, activity_phrase(kind, requests or views, now), activity_key(kind))
            )

        if engaged and now - engaged[-1].occurred_at < RECENT_WINDOW:
            last = engaged[-1]
            reasons.append(
                Reason(
                    RECENT_POINTS,
                    f"Active in the last 24 hours ({last.kind.label.lower()}, "
                    f"{day(last.occurred_at)} {last.occurred_at:%H:%M})",
                    "recent",
                )
            )
            valid_until = last.occurred_at + RECENT_WINDOW

        demos = [a.occurred_at for a in engaged if a.kind is ActivityKind.DEMO_REQUEST]
        if demos:
            reasons.append(
                Reason(DEMO_POINTS, activity_phrase(ActivityKind.DEMO_REQUEST, demos, now),
                       activity_key(ActivityKind.DEMO_REQUEST))
            )

        if facts.company_size is not None and facts.company_size > COMPANY_SIZE_OVER:
            reasons.append(
                Reason(
                    COMPANY_SIZE_POINTS,
                    f"Company has {facts.company_size:,} employees (over {COMPANY_SIZE_OVER})",
                    "company_size",
                )
            )

        if engaged:
            count = len(engaged)
            points = min(ENGAGEMENT_CAP, POINTS_PER_INTERACTION * count)
            times = "interaction" if count == 1 else "interactions"
            capped = f", capped at {ENGAGEMENT_CAP}" if POINTS_PER_INTERACTION * count > ENGAGEMENT_CAP else ""
            reasons.append(
                Reason(points, f"{count} {times} (+{POINTS_PER_INTERACTION} each{capped})", "engagement")
            )

        # An activity stamped after `now` counts once its moment comes: the score holds until then at most.
        valid_until = sooner(valid_until, next_activity_at(facts.activities, now, ENGAGEMENT_KINDS))

        score = sum(r.points for r in reasons)
        return ScoreResult(score=score, tier=tier_for(score), reasons=tuple(reasons), valid_until=valid_until)
