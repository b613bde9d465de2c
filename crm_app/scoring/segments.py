"""Segment insights: which kinds of leads win far more often than the average, said in words.

Pure: the caller counts closed leads per candidate segment in SQL (services/segments.py) and
passes (source, trait, closed, won) rows; this module scores, filters and phrases them.

A segment is a source ("Leads from LinkedIn"), a trait ("who read 2+ case studies"), or both.
Its lift is its win rate over the overall win rate. A segment is shown only when it has at least
MIN_SUPPORT closed leads and the lower end of its 95% Wilson interval is above the overall rate,
so what is shown is unlikely to be luck, and its rate is at least MIN_LIFT_OVER_PARENT times the
average; the strongest (by lift) come first. A source-and-trait segment is held to its source's
own rate instead, so a strong source does not fill the list with everything its leads happen to
have ("Referrals who got a whitepaper" says nothing Referral alone does not).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from crm_app.domain import Play, Source
from crm_app.scoring.intervals import wilson_interval
from crm_app.scoring.next_action import size_band_words

MIN_SUPPORT = 30
MAX_SHOWN = 8
# A segment must win at least this many times as often as its parent (the average; a source's
# own rate for a source with a trait): strong, not merely significant on a large history.
MIN_LIFT_OVER_PARENT = 1.25

# Custom fields whose value reads as a place or a market: "Leads in Software".
PLACE_FIELDS = frozenset({"industry", "country", "region", "city", "market", "sector"})
# Traits are coded "dimension:value" in SQL; these thresholds bound the search.
ENGAGEMENT_THRESHOLDS = (5, 10)
READ_THRESHOLDS = (1, 2)


@dataclass(frozen=True)
class SegmentCount:
    source: str | None  # a Source value, or None for any source
    trait: str | None  # e.g. "size:51-200", "field:industry:Software", "read:case_study:2", or None
    closed: int
    won: int


@dataclass
class SegmentInsight:
    sentence: str  # "Leads from LinkedIn who read 2+ case studies convert 2.4x the average"
    who: str  # "Leads from LinkedIn who read 2+ case studies"
    support: int  # closed leads in the segment
    won: int
    rate: float
    lift: float
    low: float  # 95% Wilson interval of the rate
    high: float
    rate_label: str
    lift_label: str
    interval_label: str
    support_label: str


def _plural(play: Play) -> str:
    return {"case_study": "case studies", "whitepaper": "whitepapers"}.get(play.value, play.label.lower() + "s")


def trait_words(trait: str) -> str:
    """A trait as the end of "Leads ... who/at/with ..."."""
    dimension, _, rest = trait.partition(":")
    if dimension == "size":
        return f"at companies of {size_band_words(rest)}"
    if dimension == "field":
        key, _, value = rest.partition(":")
        if key in PLACE_FIELDS:
            return f"in {value}"  # "Leads in Software", "Leads in Germany"
        return f"with {key.replace('_', ' ')} {value}"
    if dimension == "read":
        play_value, _, count = rest.partition(":")
        play = Play(play_value)
        return f"who read a {play.label.lower()}" if count == "1" else f"who read {count}+ {_plural(play)}"
    if dimension == "play":
        return f"who got a {Play(rest).label.lower()}"
    if dimension == "engaged":
        return f"with {rest}+ interactions"
    raise ValueError(f"Unknown trait {trait!r}")


def segment_words(source: str | None, trait: str | None) -> str:
    """"Leads from LinkedIn who read 2+ case studies"; "Leads at companies of 51-200 employees"."""
    words = ["Leads"]
    if source:
        words.append(f"from {Source(source).label}")
    if trait:
        words.append(trait_words(trait))
    return " ".join(words)


def _lift_label(lift: float) -> str:
    return f"{lift:.1f}x"


def insights(
    counts: Iterable[SegmentCount],
    *,
    overall_closed: int,
    overall_won: int,
    min_support: int = MIN_SUPPORT,
    limit: int = MAX_SHOWN,
) -> list[SegmentInsight]:
    """The strongest segments: support >= min_support, 95% interval entirely above the overall win
    rate, ranked by lift (then support). Nothing when nothing has closed or nobody ever won."""
    if not overall_closed or not overall_won:
        return []
    overall = overall_won / overall_closed
    counts = list(counts)
    source_rates = {c.source: c.won / c.closed for c in counts if c.trait is None and c.source and c.closed}
    found = []
    for c in counts:
        if (c.source is None and c.trait is None) or c.closed < min_support:
            continue
        low, high = wilson_interval(c.won, c.closed)
        parent = max(overall, source_rates.get(c.source, overall)) if c.trait is not None else overall
        if low <= parent or c.won / c.closed < MIN_LIFT_OVER_PARENT * parent:
            continue
        rate = c.won / c.closed
        lift = rate / overall
        who = segment_words(c.source, c.trait)
        found.append(
            SegmentInsight(
                sentence=f"{who} convert {_lift_label(lift)} the average",
                who=who,
                support=c.closed,
                won=c.won,
                rate=rate,
                lift=lift,
                low=low,
                high=high,
                rate_label=f"{rate * 100:.0f}%",
                lift_label=_lift_label(lift),
                interval_label=f"{low * 100:.0f}–{high * 100:.0f}%",
                support_label=f"{c.won:,} won of {c.closed:,} closed",
            )
        )
    found.sort(key=lambda s: (-s.lift, -s.support, s.who))
    return found[:limit]
