"""Next best action: the play most associated with moving similar leads forward, or a tier rule.

Pure: the caller passes the lead's situation and the precomputed play statistics of its stage
(services/next_action.py computes them in SQL). The unit of history is a *stay*: a lead entering
an open stage. A stay "moved forward" when the lead went on to a later stage, or won, within
MOVE_WINDOW_DAYS of entering it. For each play, stays with that play are compared with stays
without it, among similar leads: same stage, then same source and company size band, widening
to same source, same size band, and the whole stage when the narrow segment is too thin.

A play is recommended only when it was used in at least MIN_SUPPORT similar stays (and as many
went without it), and the lower end of the 95% Wilson interval of its rate is above the rate
without it. Among those, the highest rate wins. Otherwise, the tier rules (labelled as such).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from crm_app.domain import Play, Source, Stage, Tier
from crm_app.scoring.intervals import wilson_interval

MOVE_WINDOW_DAYS = 45
MIN_SUPPORT = 30
HIGH_SUPPORT = 100
ANY = "any"
# A deal this long in its stage without a stage rule counts as stalled (rules usually exist).
DEFAULT_STALL_DAYS = 21

# Company size bands: (label, smallest, largest or None). The SQL uses the same bounds.
SIZE_BANDS: tuple[tuple[str, int, int | None], ...] = (
    ("1-50", 0, 50),
    ("51-200", 51, 200),
    ("201-1000", 201, 1000),
    ("1000+", 1001, None),
)
UNKNOWN_SIZE = "unknown"


def size_band(company_size: int | None) -> str:
    """The band a company size falls in ("51-200"), or "unknown"."""
    if company_size is None:
        return UNKNOWN_SIZE
    for label, low, high in SIZE_BANDS:
        if company_size >= low and (high is None or company_size <= high):
            return label
    return UNKNOWN_SIZE


def size_band_sql(column: str) -> str:
    """A SQL CASE giving size_band(column)."""
    whens = " ".join(
        f"WHEN {column} <= {high} THEN '{label}'" if high is not None else f"ELSE '{label}'"
        for label, _, high in SIZE_BANDS
    )
    return f"(CASE WHEN {column} IS NULL THEN '{UNKNOWN_SIZE}' {whens} END)"


def size_band_words(band: str) -> str:
    return "unknown size" if band == UNKNOWN_SIZE else f"{band} employees"


@dataclass(frozen=True)
class PlayStat:
    """Stays in one stage and segment with and without one play, and how many moved forward."""

    stage: str
    source: str  # a Source value or ANY
    size_band: str  # a size band or ANY
    play: str
    stays_with: int
    moved_with: int
    stays_without: int
    moved_without: int

    @property
    def rate_with(self) -> float:
        return self.moved_with / self.stays_with if self.stays_with else 0.0

    @property
    def rate_without(self) -> float:
        return self.moved_without / self.stays_without if self.stays_without else 0.0


@dataclass(frozen=True)
class LeadSituation:
    """What the recommendation looks at for one open lead."""

    stage: str
    source: str
    size_band: str
    tier: str
    days_in_stage: int
    stall_days: int | None = None  # the stage's stagnation limit
    plays_this_stage: frozenset[str] = frozenset()  # already used since it entered its stage


@dataclass
class NextAction:
    """A recommended play and how sure it is. basis: "history" or "rule"."""

    play: str = ""
    label: str = ""
    icon: str = ""
    basis: str = ""
    confidence: str = ""  # High | Medium | Low for history; "" for a rule
    headline: str = ""  # "Case study · High confidence" / "Pricing call · Rule of thumb"
    why: str = ""
    rate_with: float = 0.0
    rate_without: float = 0.0
    support: int = 0


def _levels(situation: LeadSituation) -> list[tuple[str, str]]:
    """(source, size band) segments from the narrowest to the whole stage."""
    return [
        (situation.source, situation.size_band),
        (situation.source, ANY),
        (ANY, situation.size_band),
        (ANY, ANY),
    ]


def _segment_words(stage: str, source: str, band: str) -> str:
    parts = []
    if source != ANY:
        parts.append(f"from {Source(source).label}")
    if band != ANY:
        parts.append(f"at companies of {size_band_words(band)}")
    where = f"in {Stage(stage).label}"
    return " ".join(["similar leads", *parts, where]) if parts else f"leads {where}"


def _percent(rate: float) -> str:
    return f"{rate * 100:.0f}%"


def clears_bar(stat: PlayStat, min_support: int = MIN_SUPPORT) -> bool:
    """Enough stays on both sides, and the play's rate is above the rate without it even at the
    low end of its 95% interval."""
    if stat.stays_with < min_support or stat.stays_without < min_support:
        return False
    low, _ = wilson_interval(stat.moved_with, stat.stays_with)
    return low > stat.rate_without


def confidence(stat: PlayStat) -> str:
    """High: the two 95% intervals do not overlap and the play has HIGH_SUPPORT stays;
    Medium: one of the two; Low: it only clears the bar."""
    low_with, _ = wilson_interval(stat.moved_with, stat.stays_with)
    _, high_without = wilson_interval(stat.moved_without, stat.stays_without)
    apart = low_with > high_without
    large = stat.stays_with >= HIGH_SUPPORT
    if apart and large:
        return "High"
    if apart or large:
        return "Medium"
    return "Low"


def from_history(
    situation: LeadSituation, stats: Iterable[PlayStat], min_support: int = MIN_SUPPORT
) -> NextAction | None:
    """The best play for the lead from the history, or None when the history is too thin.

    The narrowest segment with any play clearing the bar decides; plays the lead already got in
    this stage are skipped (the history says what to do next, not what was done)."""
    by_segment: dict[tuple[str, str], list[PlayStat]] = {}
    for stat in stats:
        if stat.stage == situation.stage:
            by_segment.setdefault((stat.source, stat.size_band), []).append(stat)
    for source, band in _levels(situation):
        candidates = [
            s for s in by_segment.get((source, band), [])
            if s.play not in situation.plays_this_stage and clears_bar(s, min_support)
        ]
        if not candidates:
            continue
        best = max(candidates, key=lambda s: (s.rate_with, s.stays_with, s.play))
        play = Play(best.play)
        sure = confidence(best)
        who = _segment_words(situation.stage, source, band)
        why = (
            f"{_percent(best.rate_with)} of {best.stays_with:,} {who} moved forward within "
            f"{MOVE_WINDOW_DAYS} days {play.after_phrase} vs {_percent(best.rate_without)} of "
            f"{best.stays_without:,} without"
        )
        return NextAction(
            play=play.value, label=play.label, icon=play.icon, basis="history", confidence=sure,
            headline=f"{play.label} · {sure} confidence", why=why, rate_with=best.rate_with,
            rate_without=best.rate_without, support=best.stays_with,
        )
    return None


def from_tier_rules(situation: LeadSituation, thin: bool = True) -> NextAction:
    """The rule of thumb when history does not say: stalled past its stage limit (once contacted)
    -> break-up email; Hot -> pricing call; Warm -> case study; Cold -> nurture sequence.
    `thin`: too little history to judge, rather than no play clearly beating doing nothing."""
    limit = situation.stall_days or DEFAULT_STALL_DAYS
    stalled = situation.days_in_stage > limit and situation.stage != Stage.NEW.value
    if stalled and Play.BREAKUP_EMAIL.value not in situation.plays_this_stage:
        play = Play.BREAKUP_EMAIL
        reason = (f"{situation.days_in_stage} days in {Stage(situation.stage).label} "
                  f"(limit {limit}): a break-up email often gets a stalled deal to answer")
    elif situation.tier == Tier.HOT.value:
        play, reason = Play.PRICING_CALL, "Hot leads are ready to talk price"
    elif situation.tier == Tier.WARM.value:
        play, reason = Play.CASE_STUDY, "Warm leads need proof that it works for teams like theirs"
    else:
        play, reason = Play.NURTURE_SEQUENCE, "Cold leads are best kept warm by a nurture sequence"
    history = ("Too little history on leads like this yet to learn from." if thin
               else "No play has clearly moved leads like this forward in your history yet.")
    return NextAction(
        play=play.value, label=play.label, icon=play.icon, basis="rule", confidence="",
        headline=f"{play.label} · Rule of thumb", why=f"{reason}. {history}",
    )


def next_best_action(
    situation: LeadSituation, stats: Iterable[PlayStat], min_support: int = MIN_SUPPORT
) -> NextAction:
    """The next best action for an open lead: from the history when it is clear enough, else the
    tier rules."""
    stats = [s for s in stats if s.stage == situation.stage]
    found = from_history(situation, stats, min_support)
    if found is not None:
        return found
    return from_tier_rules(situation, thin=not any(s.stays_with >= min_support for s in stats))
