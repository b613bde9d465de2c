"""Churn and stall risk of an open deal: facts in, a level and its reasons out. Pure: no Reflex,
no SQL, no clock (the caller passes `now`).

Every reason carries its points, like a score's; the risk is their sum, capped at 100:

    negative reply: the prospect's latest email (last 30 days) reads negative        +40
    unanswered: their request (a reply, a pricing or demo request, a form; last 30
             days) has had no contact from us for a day or more, counted from their
             first request since our last contact                                    +15
    negative note: the latest note (last 30 days) reads negative                     +20
    stalled: more whole days in the stage than its limit (the board's "stuck")        +20
             more than twice the limit                                               +25
    falling engagement: the last 14 days hold under half the engagement of the
             14 before (which held at least 3); negative replies do not count         +20
    no reply for 21 days or more: our outreach has had no answer (a reply, a pricing
             or demo request, a form, a meeting), counted from our first call or
             email after their last answer (or our first contact, if they never
             answered)                                                               +10
             42 days or more                                                          +15
             (not after a negative reply: that reason already says it)
    no contact from us for 14 days or more (since our last call/email/meeting, or
             since the lead arrived)                                                 +10

Any answer from the prospect counts, whatever its channel: a lead that asked for pricing today is
never "no reply since our first contact". "No reply" is our outreach waiting on them, "unanswered"
their request waiting on us, so adding an answer can only shorten the silence (tests/test_risk_rules.py
checks both as properties).

Levels: High 55-100, Medium 25-54, Low 0-24. The quiet reasons (stalled, no reply, no contact) add
up to 50 at most, so a deal is at High risk only with a sign from the deal itself: a negative reply
or note, a reply left unanswered, or falling engagement. A deal that is merely old and quiet is at
Medium risk (and shows in the queue as stuck, if it is). Only the latest reply's tone counts, so a later
friendly reply clears a negative one. Closed deals (won, lost) have no risk at all.

Risk also changes with time alone (a deal goes past its limit, a reply ages out); the result says
when (`valid_until`), so a sweep can reassess exactly the deals whose risk has moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Sequence

from crm_app.domain import ANSWER_KINDS, CONTACT_KINDS, REQUEST_KINDS, ActivityKind, RiskLevel, Stage
from crm_app.scoring.engine import ActivityFact, next_activity_at
from crm_app.scoring.rules import ENGAGEMENT_KINDS
from crm_app.scoring.sentiment import NEGATIVE_FROM

NEGATIVE_REPLY_POINTS = 40
UNANSWERED_POINTS = 15
NEGATIVE_NOTE_POINTS = 20
STALLED_POINTS = 20
STALLED_TWICE_POINTS = 25
FALLING_POINTS = 20
NO_REPLY_POINTS = 10
NO_REPLY_LONG_POINTS = 15
NO_CONTACT_POINTS = 10
MAX_POINTS = 100
# High needs a warning sign from the deal itself (a negative reply or note, an unanswered reply,
# falling engagement): the quiet reasons alone (stalled, no reply, no contact) add up to 50 at most.
HIGH_FROM = 55
MEDIUM_FROM = 25

MESSAGE_WINDOW = timedelta(days=30)  # how long a reply's or note's tone counts
UNANSWERED_AFTER = timedelta(days=1)
ENGAGEMENT_WINDOW = timedelta(days=14)
FALLING_MIN_BEFORE = 3  # fewer than this in the earlier window is too little to call a trend
NO_REPLY_AFTER = timedelta(days=21)
NO_REPLY_LONG_AFTER = timedelta(days=42)
NO_CONTACT_AFTER = timedelta(days=14)
DAY = timedelta(hours=24)

# What the prospect's answer was, and our outreach, as a rep says them ("their pricing request").
ANSWER_NOUNS = {
    ActivityKind.EMAIL_RECEIVED: "reply",
    ActivityKind.PRICING_REQUEST: "pricing request",
    ActivityKind.DEMO_REQUEST: "demo request",
    ActivityKind.FORM_SUBMISSION: "form",
    ActivityKind.MEETING: "meeting",
}
OUTREACH_NOUNS = {
    ActivityKind.CALL: "call", ActivityKind.EMAIL_SENT: "email", ActivityKind.MEETING: "meeting",
}


def level_for(points: int) -> RiskLevel:
    """High 55-100, Medium 25-54, Low 0-24."""
    if not 0 <= points <= MAX_POINTS:
        raise ValueError(f"risk points must be within 0-{MAX_POINTS}, got {points}")
    if points >= HIGH_FROM:
        return RiskLevel.HIGH
    if points >= MEDIUM_FROM:
        return RiskLevel.MEDIUM
    return RiskLevel.LOW


@dataclass(frozen=True, slots=True)
class Message:
    """A reply from the prospect (email_received) or a rep's note, with its sentiment (-1..1;
    None when it has no text)."""

    kind: ActivityKind
    occurred_at: datetime
    sentiment: float | None = None


@dataclass(frozen=True, slots=True)
class RiskFacts:
    """What the risk of one deal is assessed from: only facts, never the clock."""

    stage: Stage
    stage_entered_at: datetime
    created_at: datetime
    stage_limit_days: int | None = None  # stage_rules; None: the stage has no limit
    activities: Sequence[ActivityFact] = ()
    messages: Sequence[Message] = ()


@dataclass(frozen=True, slots=True)
class RiskReason:
    """One contribution to a risk: its points, a sentence a rep understands, which rule (`code`)
    and the moment it is about (the reply, the last contact, the day the stage was entered); `kind`
    is the activity that moment was, where the queue's words need it (an unanswered request)."""

    points: int
    text: str
    code: str
    at: datetime | None = None
    kind: ActivityKind | None = None

    def as_dict(self) -> dict[str, Any]:
        stored = {"points": self.points, "text": self.text, "code": self.code,
                  "at": self.at.isoformat() if self.at else None}
        if self.kind is not None:  # only where it says something: stored reasons stay as they were
            stored["kind"] = self.kind.value
        return stored


@dataclass(frozen=True, slots=True)
class RiskResult:
    level: RiskLevel | None  # None: a closed deal
    points: int = 0
    reasons: tuple[RiskReason, ...] = ()
    # When time alone will change this result; None when only new facts can.
    valid_until: datetime | None = None
    # The prospect's latest reply and its tone (shown and sorted on without reading bodies again).
    last_reply_at: datetime | None = None
    last_reply_sentiment: float | None = None


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _day(moment: datetime) -> str:
    """`2 Dec` (what `%b` gives in the C locale the app runs in, without strftime's cost per call)."""
    return f"{moment.day} {_MONTHS[moment.month - 1]}"


def _latest(items, kinds) -> Any:
    found = [x for x in items if x.kind in kinds]
    return max(found, key=lambda x: x.occurred_at) if found else None


def assess_risk(facts: RiskFacts, now: datetime) -> RiskResult:
    """The deal's risk at `now` from its facts (see the module docstring for the rules)."""
    if facts.stage.is_closed:
        return RiskResult(level=None)
    # Only what had happened by `now` counts.
    activities = [a for a in facts.activities if a.occurred_at <= now]
    messages = [m for m in facts.messages if m.occurred_at <= now]
    reasons: list[RiskReason] = []
    moments: list[datetime] = []  # when a rule's outcome flips by time alone

    reply = _latest(messages, {ActivityKind.EMAIL_RECEIVED})
    last_contact = _latest(activities, set(CONTACT_KINDS))
    contact_at = last_contact.occurred_at if last_contact else None
    if reply and now - reply.occurred_at < MESSAGE_WINDOW:
        moments.append(reply.occurred_at + MESSAGE_WINDOW)
        if reply.sentiment is not None and reply.sentiment <= NEGATIVE_FROM:
            reasons.append(RiskReason(NEGATIVE_REPLY_POINTS, f"Negative reply on {_day(reply.occurred_at)}",
                                      "negative_reply", reply.occurred_at))
    # Their requests since our last contact, within the window: unanswered from the first of them (a
    # second request does not restart the clock).
    waiting = sorted((a for a in activities if a.kind in REQUEST_KINDS
                      and (contact_at is None or a.occurred_at > contact_at)
                      and now - a.occurred_at < MESSAGE_WINDOW), key=lambda a: a.occurred_at)
    moments += [a.occurred_at + MESSAGE_WINDOW for a in waiting]
    if waiting:
        first = waiting[0]
        moments.append(first.occurred_at + UNANSWERED_AFTER)
        if now - first.occurred_at >= UNANSWERED_AFTER:
            reasons.append(RiskReason(
                UNANSWERED_POINTS,
                f"No contact from us since their {ANSWER_NOUNS[first.kind]} on {_day(first.occurred_at)}",
                "unanswered", first.occurred_at, first.kind))

    note = _latest(messages, {ActivityKind.NOTE})
    if note and now - note.occurred_at < MESSAGE_WINDOW:
        moments.append(note.occurred_at + MESSAGE_WINDOW)
        if note.sentiment is not None and note.sentiment <= NEGATIVE_FROM:
            reasons.append(RiskReason(NEGATIVE_NOTE_POINTS, f"Negative note on {_day(note.occurred_at)}",
                                      "negative_note", note.occurred_at))

    if facts.stage_limit_days is not None:
        limit = facts.stage_limit_days
        # The board's rule for "stuck": in the stage for at least (limit + 1) x 24 hours.
        past, twice = facts.stage_entered_at + (limit + 1) * DAY, facts.stage_entered_at + (2 * limit + 1) * DAY
        moments += [past, twice]
        where = f"In {facts.stage.label} since {_day(facts.stage_entered_at)}"
        if now >= twice:
            reasons.append(RiskReason(STALLED_TWICE_POINTS, f"{where}, over twice its {limit}-day limit",
                                      "stalled", facts.stage_entered_at))
        elif now >= past:
            reasons.append(RiskReason(STALLED_POINTS, f"{where}, past its {limit}-day limit",
                                      "stalled", facts.stage_entered_at))

    # A reply saying no is not engagement that keeps a deal alive.
    refusals = {m.occurred_at for m in messages if m.kind is ActivityKind.EMAIL_RECEIVED
                and m.sentiment is not None and m.sentiment <= NEGATIVE_FROM}
    engaged = [a.occurred_at for a in activities if a.kind in ENGAGEMENT_KINDS
               and not (a.kind is ActivityKind.EMAIL_RECEIVED and a.occurred_at in refusals)]
    recent = sum(1 for t in engaged if now - t < ENGAGEMENT_WINDOW)
    before = sum(1 for t in engaged if ENGAGEMENT_WINDOW <= now - t < 2 * ENGAGEMENT_WINDOW)
    moments += [t + w for t in engaged for w in (ENGAGEMENT_WINDOW, 2 * ENGAGEMENT_WINDOW)]
    if before >= FALLING_MIN_BEFORE and recent * 2 < before:
        reasons.append(RiskReason(FALLING_POINTS,
                                  f"Engagement fell: {recent} in the last 14 days, {before} in the 14 before",
                                  "falling_engagement"))

    # Silence is our outreach waiting on them: from our first call or email after their last answer.
    last_answer = max((a.occurred_at for a in activities if a.kind in ANSWER_KINDS), default=None)
    outreach = min((a for a in activities if a.kind in CONTACT_KINDS
                    and (last_answer is None or a.occurred_at > last_answer)),
                   key=lambda a: a.occurred_at, default=None)
    # After a negative reply, silence is its consequence, not a second reason.
    if outreach is not None and not any(r.code == "negative_reply" for r in reasons):
        silent_since = outreach.occurred_at
        moments += [silent_since + NO_REPLY_AFTER, silent_since + NO_REPLY_LONG_AFTER]
        what = (f"No reply since our first contact on {_day(silent_since)}" if last_answer is None
                else f"No reply since our {OUTREACH_NOUNS[outreach.kind]} on {_day(silent_since)}")
        if now - silent_since >= NO_REPLY_LONG_AFTER:
            reasons.append(RiskReason(NO_REPLY_LONG_POINTS, f"{what} (6 weeks or more)", "no_reply", silent_since))
        elif now - silent_since >= NO_REPLY_AFTER:
            reasons.append(RiskReason(NO_REPLY_POINTS, f"{what} (3 weeks or more)", "no_reply", silent_since))

    quiet_since = contact_at or facts.created_at
    moments.append(quiet_since + NO_CONTACT_AFTER)
    if now - quiet_since >= NO_CONTACT_AFTER:
        text = (f"No contact from us since {_day(contact_at)}" if contact_at
                else f"Never contacted since it arrived on {_day(facts.created_at)}")
        reasons.append(RiskReason(NO_CONTACT_POINTS, text, "no_contact", contact_at))

    # An activity stamped after `now` (logged ahead, or sent with a later time) counts once its moment
    # comes: the assessment holds until then at most.
    upcoming = next_activity_at(facts.activities, now)
    if upcoming is not None:
        moments.append(upcoming)

    points = min(MAX_POINTS, sum(r.points for r in reasons))
    later = [m for m in moments if m > now]
    return RiskResult(
        level=level_for(points), points=points, reasons=tuple(reasons),
        valid_until=min(later) if later else None,
        last_reply_at=reply.occurred_at if reply else None,
        last_reply_sentiment=reply.sentiment if reply else None,
    )


# --- Words for the action queue ------------------------------------------------------------------


def _ago(moment: datetime, now: datetime) -> str:
    days = int((now - moment).total_seconds() // 86400)
    if days < 1:
        hours = int((now - moment).total_seconds() // 3600)
        return "just now" if hours < 1 else f"{hours} h ago"
    return "1 day ago" if days == 1 else f"{days} days ago"


def risk_headline(reasons: Sequence[dict[str, Any]], stage_label: str, now: datetime) -> str:
    """The stored reasons as a rep says them, relative to `now`:
    "At risk: negative reply 2 days ago, no contact since". Uses the first two reasons."""
    phrases: list[str] = []
    codes = {r.get("code") for r in reasons}
    for reason in reasons:
        code = reason.get("code")
        at = datetime.fromisoformat(reason["at"]) if reason.get("at") else None
        if code == "negative_reply" and at:
            phrase = f"negative reply {_ago(at, now)}"
        elif code == "unanswered" and at:
            noun = ANSWER_NOUNS.get(ActivityKind(reason.get("kind") or "email_received"), "reply")
            phrase = "no contact since" if "negative_reply" in codes else f"{noun} {_ago(at, now)} unanswered"
        elif code == "negative_note" and at:
            phrase = f"negative note {_ago(at, now)}"
        elif code == "stalled" and at:
            phrase = f"{int((now - at).total_seconds() // 86400)} days in {stage_label}"
        elif code == "falling_engagement":
            phrase = "engagement falling"
        elif code == "no_reply" and at:
            phrase = f"no reply for {int((now - at).total_seconds() // 86400)} days"
        elif code == "no_contact":
            phrase = f"last contact {_ago(at, now)}" if at else "never contacted"
        else:
            continue
        phrases.append(phrase)
        if len(phrases) == 2:
            break
    return "At risk: " + (", ".join(phrases) if phrases else "several warning signs")
