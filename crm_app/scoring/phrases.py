"""How a prospect's activities read in a score's reasons: the same words in every engine.

A reason names facts a rep can check on the timeline: "Asked for pricing on 2 Dec and 28 Nov",
"Replied 3 times, last on 1 Dec". Pricing and demo requests are named one by one with their dates
(the strongest buying signals a rep must never have to hunt for); other kinds by count and latest.

Each phrase comes with a *key* naming the fact, so an engine that mixes two others (the blend) shows
one line per fact even where the two engines word it differently.

Pure: the caller passes the moments and `now` (used only to add the year to old dates).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from functools import lru_cache

from crm_app.domain import ActivityKind

# Requests are listed date by date up to this many (a lead with more is rare; a bot is not a rep's
# concern): the rest are counted.
MAX_DATES = 8
_OLD = timedelta(days=300)

# kind: (one occurrence "... on <date>", several "... <n> times, last on <date>")
_PHRASES = {
    ActivityKind.PRICING_REQUEST: ("Asked for pricing", "Asked for pricing {n} times"),
    ActivityKind.DEMO_REQUEST: ("Requested a demo", "Requested a demo {n} times"),
    ActivityKind.PRICING_PAGE_VISIT: ("Viewed the pricing page", "Viewed the pricing page {n} times"),
    ActivityKind.EMAIL_RECEIVED: ("Replied", "Replied {n} times"),
    ActivityKind.FORM_SUBMISSION: ("Submitted a form", "Submitted {n} forms"),
    ActivityKind.MEETING: ("Had a meeting", "Had {n} meetings"),
    ActivityKind.EMAIL_CLICKED: ("Clicked a link in an email", "Clicked email links {n} times"),
    ActivityKind.EMAIL_OPENED: ("Opened an email", "Opened emails {n} times"),
    ActivityKind.PAGE_VISIT: ("Visited the website", "Visited the website {n} times"),
}
# Named date by date: every one of these is a buying signal a rep acts on.
LISTED_KINDS = frozenset({ActivityKind.PRICING_REQUEST, ActivityKind.DEMO_REQUEST})


def day(moment: datetime, now: datetime | None = None) -> str:
    """`2 Dec`, or `2 Dec 2025` when it is most of a year before `now`."""
    return _day_words(moment.date(), now is not None and now - moment > _OLD)


@lru_cache(maxsize=4096)
def _day_words(date: date, with_year: bool) -> str:
    # Remembered: strftime costs more than the rest of a reason, and training words a hundred
    # thousand deals' activity, on a few hundred distinct days.
    return f"{date.day} {date:%b %Y}" if with_year else f"{date.day} {date:%b}"


def _join(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def activity_key(kind: ActivityKind) -> str:
    """The fact's name shared by every engine: `pricing_request`."""
    return kind.value


def activity_phrase(kind: ActivityKind, moments: Sequence[datetime], now: datetime | None = None) -> str:
    """The prospect's activities of one kind in one sentence (moments in any order, at least one)."""
    if not moments:
        raise ValueError("a phrase needs at least one activity")
    one, many = _PHRASES[kind]
    newest = sorted(moments, reverse=True)
    n = len(newest)
    if n == 1:
        return f"{one} on {day(newest[0], now)}"
    if kind in LISTED_KINDS:
        dates = [day(m, now) for m in newest[:MAX_DATES]]
        if n > MAX_DATES:
            dates.append(f"{n - MAX_DATES} earlier")
        return f"{many.format(n=n)}: {_join(dates)}"
    return f"{many.format(n=n)}, last on {day(newest[0], now)}"


def has_phrase(kind: ActivityKind) -> bool:
    """True for the prospect's own kinds (a rep's calls, emails and notes are never a reason)."""
    return kind in _PHRASES
