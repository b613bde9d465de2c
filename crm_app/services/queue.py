"""The action queue: what a rep should do right now, most urgent first, and the one-click actions on it.

An item is an open lead with a reason to act on it now. The reasons form six groups, in this order:

    fresh      the prospect just asked for something: a pricing or demo request, a reply, a form,
               within the last FRESH_WINDOW (4 hours) and after the rep's last contact; or the lead
               turned Hot within that window after something the prospect did in it
    overdue    an open follow-up whose due time has passed
    hot        a Hot lead without a fresh signal, not answered lately (below)
    due        an open follow-up due later today
    risk       an open deal at High risk (scoring/risk.py: a negative reply, a request left
               unanswered, falling engagement, ...)
    stuck      an open deal longer in its stage than the stage rule allows

Why this order. A fresh request is perishable: the prospect is at their desk thinking about it now,
and the chance of reaching them falls within hours, so it goes first and is the only item that
promises "call within the hour". Fresh items are ordered by recency (the newest signal first), then
by probability (score) and deal value. Overdue follow-ups come next: each is a promise the rep
already broke to a person, and there are few of them; an hour more costs them less than it costs a
request made minutes ago, but they come before every lead the rep did not promise anything to.
Older Hot leads follow ("Hot: last signal 9 days ago (asked for pricing), not contacted since:
follow up"), then what is due later today, then deals at high risk (slipping, but savable today),
then stuck deals. Within a group: overdue and Hot by score, then deal value; due today by due time;
at risk by risk points, then score; stuck by score, then deal value; lead id breaks ties.

A lead appears once, under its first group; its other reasons are listed with it as secondary.

Contact recency belongs to the queue, not to the score: a lead the rep contacted within the last
ANSWERED_FOR (24 hours), with nothing from the prospect since, is waiting on the prospect, not on
the rep, so it leaves the hot, risk and stuck groups ("nothing to do now"). Anything new from the
prospect after that contact brings it back; a request brings it back at the top. Follow-ups are the
rep's own promises and stay until done or postponed.

Snoozing hides a lead's fresh, hot, risk and stuck reasons until the given time (the prospect doing
something new brings it back early: `add_activity` clears the snooze). A follow-up is the rep's own
promise, so a snooze does not hide it; snoozing an item with a follow-up postpones that follow-up to
the same time.

Everything is selected, grouped, counted, ordered and paged in SQL, under the acting user's row-level
security; the page asks for one group or all of them, 25 at a time. A book of up to SMALL_BOOK open
leads (SMALL_TEAM_BOOK for the whole team) is read in one statement that reads each open lead once. A
larger one (a team at 100,000 leads, a rep at 1M) is read group by group: each group's candidates through
their own index, in its order, counted up to COUNT_CAP ("99+") from as few as that needs, and a long group paged by walking an index in the group's order, so the cost
follows the page, not the book. Both apply the same rules and agree on every item and count.

One module (past 500 lines) on purpose: the list and the actions on its items (done, snooze, log)
share one set of rules, what each group hides and brings back, and reading one without the other
would miss half of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone

from sqlalchemy import text
from sqlmodel import Session

from crm_app.db.models import FollowUp, Lead
from crm_app.db.queries import money, stuck_sql
from crm_app.domain import CONTACT_KINDS, OPEN_STAGES, REQUEST_KINDS, ActivityKind, Stage
from crm_app.scoring import ENGAGEMENT_KINDS
from crm_app.scoring.engine import HOT_MIN
from crm_app.scoring.risk import HIGH_FROM, risk_headline
from crm_app.services.errors import InvalidInput, NotFound, StaleLead
from crm_app.services.leads import bump_version, lock_lead, log_activity
from crm_app.services.next_action import next_actions
from crm_app.services.permissions import recorded_as
from crm_app.services.pipeline import kept_totals

# How long a request (or turning Hot) counts as fresh: first in the queue, "call within the hour".
FRESH_WINDOW = timedelta(hours=4)
# Contacted within this, with nothing from the prospect since: waiting on them, not on the rep.
ANSWERED_FOR = timedelta(hours=24)
PAGE_SIZE = 25
# A group's count stops here and the page says "99+", as badges do: counting a team's thousands of
# stuck deals exactly would read them all (each lead's signals and follow-ups too), and no one works
# through more than this in a day.
COUNT_CAP = 99
# Up to this many open leads in view, the queue reads them all in one statement; beyond it, group by
# group. The team's book is read group by group from SMALL_TEAM_BOOK open leads: at 100,000 leads
# (load 8-10) its 48,000 cost 229-262 ms so against 308-525 ms in one pass, since the new signals' walk
# breaks ties as the group does (migration 0036; before, it walked the ~800 leads engaged in the same
# second as the newest, 1,800 leads for a page). One rep's book too, since each group's count walks a
# limited number of candidates in an index's order (migration 0041, _ROWS): at 1M leads a rep's 84,000
# open leads cost 345-1,710 ms in one pass (p50 553, load ~4) and 42-198 ms group by group (p50 86); at
# 100,000 leads a rep's ~8,000 cost about the same either way (77-146 ms against 115-131, load ~8).
SMALL_BOOK = 20_000
SMALL_TEAM_BOOK = 20_000
# A group's count walks this many candidates per lead it counts to (see _ROWS): about half of a rep's Hot
# leads are members (the rest closed, answered or overdue), most stuck and risky deals; the follow-up
# groups read a quarter more follow-ups than they count to (~98 in 100 are members at 1M leads).
_READ_PER_COUNT = 4
# "Done" on a lead without a follow-up: hidden until the prospect does something new.
UNTIL_NEXT_ENGAGEMENT = datetime(9999, 12, 31, tzinfo=timezone.utc)
MAX_FOLLOW_UP_DAYS = 365
MAX_FOLLOW_UP_NOTE = 500

# The groups in queue order: kind -> what the page calls the group.
GROUPS = {"fresh": "New signals", "overdue": "Overdue", "hot": "Hot", "due": "Due today", "risk": "At risk",
          "stuck": "Stuck"}
_GROUP_NUMBER = {kind: number for number, kind in enumerate(GROUPS, start=1)}
_GROUP_KIND = {number: kind for kind, number in _GROUP_NUMBER.items()}
FOLLOW_UP_KINDS = ("overdue", "due")

# What the prospect did, as a rep would say it: "asked for pricing 12 min ago".
_ENGAGED = {
    ActivityKind.PRICING_REQUEST: "asked for pricing",
    ActivityKind.DEMO_REQUEST: "asked for a demo",
    ActivityKind.PRICING_PAGE_VISIT: "viewed the pricing page",
    ActivityKind.EMAIL_RECEIVED: "replied by email",
    ActivityKind.EMAIL_CLICKED: "clicked a link in your email",
    ActivityKind.EMAIL_OPENED: "opened your email",
    ActivityKind.PAGE_VISIT: "visited the website",
    ActivityKind.FORM_SUBMISSION: "submitted a form",
    ActivityKind.MEETING: "had a meeting",
}


@dataclass
class QueueItem:
    """One line of the queue: the lead, why it is there and what to do."""

    lead_id: int
    name: str
    company: str
    owner: str
    stage: str
    value_label: str
    score: int
    tier: str
    kind: str  # fresh | overdue | hot | due | risk | stuck
    kind_label: str
    headline: str  # "Asked for pricing 12 min ago: call within the hour"
    position: int  # 1-based, in the list asked for (one group or all)
    version: int
    # The lead's open follow-up due by tonight (0: none), whichever reason the item shows first:
    # logging a call completes it, snoozing postpones it.
    follow_up_id: int = 0
    secondary: list[str] = field(default_factory=list)
    # The suggested step: the next best action (services/next_action.py).
    suggestion: str = ""  # "Case study · High confidence"
    suggestion_why: str = ""
    suggestion_basis: str = ""  # history | rule


@dataclass
class QueueGroup:
    """One group of the queue and how many leads wait in it."""

    kind: str
    label: str
    count: int  # at most the count cap
    capped: bool = False  # more than `count` wait
    count_label: str = ""  # what the page shows: "12", or "99+" past the cap

    def __post_init__(self) -> None:
        self.count_label = count_label(self.count, self.capped)


@dataclass
class QueuePage:
    """A page of the queue, with the count of every group (each lead counted once, in its first group)."""

    items: list[QueueItem]
    groups: list[QueueGroup]  # all six, in queue order, zeros included
    total: int  # leads waiting, all groups
    matching: int  # leads in the group asked for (the total when all)
    offset: int
    capped: bool = False  # `matching` is a lower bound: a group held more than the count cap
    total_capped: bool = False  # `total` is a lower bound


def count_label(count: int, capped: bool) -> str:
    """"12", or "99+" for a count that stopped at the cap."""
    return f"{count:,}+" if capped else f"{count:,}"


# --- Words ---------------------------------------------------------------------------------


def span(delta: timedelta) -> str:
    """A duration as a rep says it: "20 min", "3 h", "2 days"."""
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{max(minutes, 1)} min"
    if minutes < 24 * 60:
        return f"{minutes // 60} h"
    days = minutes // (24 * 60)
    return "1 day" if days == 1 else f"{days} days"


def relative_time(moment: datetime, now: datetime) -> str:
    """"just now", "20 min ago", "3 h ago", "2 days ago"."""
    if now - moment < timedelta(minutes=1):
        return "just now"
    return f"{span(now - moment)} ago"


def _quoted(note: str | None) -> str:
    return f" — ‘{note.strip()}’" if note and note.strip() else ""


def _fresh_text(signal_kind: str | None, last_kind: str | None, last_at: datetime | None,
                now: datetime) -> str:
    """"Asked for pricing 12 min ago: call within the hour"; a lead that turned Hot says after what."""
    if signal_kind:  # the request itself is the newest thing worth a call
        what = _ENGAGED[ActivityKind(signal_kind)]
        return f"{what[0].upper()}{what[1:]} {relative_time(last_at, now)}: call within the hour"
    if last_kind and last_at:
        what = f"{_ENGAGED[ActivityKind(last_kind)]} {relative_time(last_at, now)}"
        return f"Turned Hot ({what}): call within the hour"
    return "Turned Hot: call within the hour"


def _hot_text(last_kind: str | None, last_at: datetime | None, contacted_at: datetime | None,
              now: datetime) -> str:
    """An older Hot lead: its last signal and our last contact, never "call now"."""
    if not (last_kind and last_at):
        return "Hot: no signal from them yet: reach out"
    if last_kind == ActivityKind.MEETING and contacted_at is not None and contacted_at <= last_at:
        # Their signal and our contact at once: say it once.
        return f"Hot: last met {relative_time(last_at, now)}: follow up"
    signal = f"Hot: last signal {relative_time(last_at, now)} ({_ENGAGED[ActivityKind(last_kind)]})"
    if contacted_at is None:
        return f"{signal}, never contacted: follow up"
    if contacted_at < last_at:
        return f"{signal}, not contacted since: follow up"
    return f"{signal}, last contact {relative_time(contacted_at, now)}: follow up"


def _follow_up_text(due_at: datetime, note: str | None, now: datetime) -> str:
    if due_at < now:
        return f"Follow up: overdue by {span(now - due_at)}{_quoted(note)}"
    return f"Follow up: due today at {due_at:%H:%M}{_quoted(note)}"


def _stuck_text(stage: str, entered_at: datetime, limit_days: int, now: datetime) -> str:
    # Stuck means more whole days than the limit (db.queries.stuck_sql), so days > limit_days here.
    days = (now - entered_at).days
    return f"Stuck in {Stage(stage).label} for {days} days (limit {limit_days}): re-engage or close"


def end_of_day(now: datetime) -> datetime:
    """Midnight after `now`, in `now`'s time zone: follow-ups due before it are due today."""
    return datetime.combine(now.date() + timedelta(days=1), time(0), tzinfo=now.tzinfo)


# --- The queue ----------------------------------------------------------------------------

# Waiting on the rep: not snoozed, and not contacted lately with nothing from the prospect since (then
# the ball is in their court).
_WAITING = """(l.snoozed_until IS NULL OR l.snoozed_until <= :now)
       AND NOT (l.last_contacted_at IS NOT NULL AND l.last_contacted_at > :answered_cutoff
                AND (l.last_activity_at IS NULL OR l.last_activity_at <= l.last_contacted_at))"""

# A lead's fresh signal, if any (the queue's first group, and the lead page's promise of a call): the
# newest request since our last contact within the window; or, without one, the lead turned Hot in the
# window after something the prospect did in it (an engine switch or a retrain that makes a quiet lead
# Hot is arithmetic, not intent). Only a lead whose last engagement falls in the window can have either
# (a request is an engagement), so for any other lead nothing is read. `{owner}`: whose leads count.
_FRESH_OF_LEAD = """
  LEFT JOIN LATERAL (
        SELECT q.kind AS signal_kind, coalesce(q.occurred_at, l.last_activity_at) AS signal_at
          FROM (SELECT 1) one
          LEFT JOIN LATERAL (
                SELECT a.kind, a.occurred_at FROM activities a
                 WHERE a.lead_id = l.id AND a.kind = ANY(:request_kinds)
                   AND a.occurred_at > :fresh_cutoff AND a.occurred_at <= :now
                 ORDER BY a.occurred_at DESC LIMIT 1
          ) q ON l.last_contacted_at IS NULL OR q.occurred_at > l.last_contacted_at
         WHERE l.last_activity_at > :fresh_cutoff AND l.stage = ANY(:open_stages) AND ({owner})
           AND (l.snoozed_until IS NULL OR l.snoozed_until <= :now)
           AND (q.kind IS NOT NULL
                OR (l.tier = 'hot' AND l.hot_since > :fresh_cutoff AND l.last_activity_at <= :now
                    AND (l.last_contacted_at IS NULL
                         OR l.last_contacted_at < least(l.hot_since, l.last_activity_at))))
  ) fr ON TRUE"""

_OWNER = "CAST(:owner_id AS integer) IS NULL OR l.owner_id = :owner_id"

# A lead's reasons, read one lead at a time: the queue never reads every lead in view. Each group
# reads only its candidates (`{candidates}`: the fresh leads, the follow-ups due, the Hot leads, the
# leads at risk, the stuck deals), each through its own index, and keeps those whose first reason is
# that group (`{n}`), with the rules of the module docstring written once here. A lead is in view when
# it is open and the viewer's (`_OWNER`), or carries the viewer's follow-up due today (a pool lead).
# "Open" is tested as `(...) IS TRUE`, which no index answers: half the leads are open, and PostgreSQL
# would otherwise AND each group's small index with the scan of every open lead's stage.
_REASONS_SQL = """
SELECT l.id AS lead_id, l.score, l.deal_value, l.risk_points, fr.signal_at, fr.signal_kind,
       d.id AS follow_up_id, d.due_at, d.note,
       w.waiting AND l.tier = 'hot' AS hot,
       w.waiting AND l.risk_level = 'high' AS at_risk,
       w.waiting AND coalesce({stuck}, false) AS stuck,
       {n} AS grp
  FROM {candidates}
  LEFT JOIN stage_rules r ON r.stage = l.stage{fresh}
  LEFT JOIN LATERAL (
        -- The lead's earliest open follow-up (the viewer's) due by the end of today.
        SELECT f.id, f.due_at, f.note FROM follow_ups f
         WHERE f.lead_id = l.id AND f.done_at IS NULL AND f.due_at < :day_end
           AND (CAST(:owner_id AS integer) IS NULL OR f.owner_id = :owner_id)
         ORDER BY f.due_at, f.id LIMIT 1
  ) d ON TRUE
  CROSS JOIN LATERAL (SELECT {waiting} AS waiting) w
 WHERE (l.stage = ANY(:open_stages)) IS TRUE AND (({owner}) OR d.id IS NOT NULL)
   AND CASE WHEN fr.signal_at IS NOT NULL THEN 1 WHEN d.due_at < :now THEN 2
            WHEN w.waiting AND l.tier = 'hot' THEN 3 WHEN d.due_at IS NOT NULL THEN 4
            WHEN w.waiting AND l.risk_level = 'high' THEN 5
            WHEN w.waiting AND coalesce({stuck}, false) THEN 6 END = {n}
"""

# The viewer's follow-ups due in a window, each with its lead (crm_follow_ups_due, migrations 0033 and
# 0041: the follow-ups policy applied per follow-up, where a rep's read of the table would hash every
# lead they may see), due first: `:due_rows` of them (NULL: all; see _ROWS), or all of those on leads
# not the owner's (pool leads).
_FOLLOW_UPS_DUE = ("crm_follow_ups_due(CAST(:owner_id AS integer), {due}, CAST(:due_rows AS integer), false) c "
                   "JOIN leads l ON l.id = c.lead_id")
_POOL_FOLLOW_UPS_DUE = ("crm_follow_ups_due(CAST(:owner_id AS integer), {due}, NULL, true) c "
                        "JOIN leads l ON l.id = c.lead_id")
_OVERDUE = "'-infinity', :now"
_LATER_TODAY = ":now, :day_end"
_STUCK_CUTOFF = "CAST(:now AS timestamptz) - (c.stagnation_days + 1) * interval '24 hours'"


def _group_sql(n: int, candidates: str, extra: str = "") -> str:
    sql = _REASONS_SQL.format(n=n, candidates=candidates, waiting=_WAITING, owner=_OWNER,
                              fresh=_FRESH_OF_LEAD.format(owner=_OWNER),
                              stuck=stuck_sql("l.stage_entered_at", "r.stagnation_days"))
    return sql + extra


def _union(*parts: str) -> str:
    return "SELECT * FROM ({}) members".format(" UNION ALL ".join(parts))


# A count up to the cap walks each group's candidates in an index's order, `:count_rows` of them (NULL:
# all; _READ_PER_COUNT per lead counted), and reads on from all of them only when the walk ended short of
# the cap having read all it might (_READ_SQL): PostgreSQL otherwise planned a rep's candidates at 1M as
# a bitmap of all of them (e.g. their ~20,000 Hot leads, sorted by score: 0.4 s) or a scan of the table.
_ROWS = "CAST(:count_rows AS integer)"
# The Hot leads in view, best score first (ix_leads_score for the team, ix_leads_owner_score for a rep).
# Hot is a score of HOT_MIN or more (ck_leads_tier_matches_score): testing the tier too made PostgreSQL
# take the two for independent, expect a tenth as many and pick the bitmap.
_HOT_LEADS = f"FROM leads l WHERE l.score >= {HOT_MIN} AND ({_OWNER}) ORDER BY l.score DESC, l.id DESC"
# The deals at High risk in view, riskiest first: the team's through ix_leads_queue_risk (High only), a
# rep's through ix_leads_owner_risk (Medium and High; HIGH_FROM points are High by
# ck_leads_risk_level_matches_points), each written as its index's condition (the array is folded when
# the statement is planned): `= 'high'` on a rep's made PostgreSQL take the risk level for independent
# of the points, expect a twentieth as many and read the team's index instead.
_RISKY_LEADS = (f"FROM leads l WHERE l.risk_points >= {HIGH_FROM} AND ({_OWNER}) AND l.risk_level = ANY("
                "CASE WHEN CAST(:owner_id AS integer) IS NULL THEN ARRAY['high'] ELSE ARRAY['medium', 'high'] END) "
                "ORDER BY l.risk_points DESC, l.id DESC")
# Each stage's deals that entered it before its cutoff, longest first (ix_leads_stage_entered,
# ix_leads_owner_stage_entered), `{rows}` per stage. The cutoff is computed apart (the fence): under row
# security only a leakproof comparison may be an index condition, and the arithmetic in it is not, so
# PostgreSQL read a stage's every deal (a rep's 3,000 new leads at 1M, none stuck) to test it.
_STUCK_LEADS = (f"(SELECT r.stage, {_STUCK_CUTOFF.replace('c.', 'r.')} AS cutoff FROM stage_rules r "
                "WHERE r.stagnation_days IS NOT NULL OFFSET 0) c CROSS JOIN LATERAL (SELECT {columns} FROM leads l "
                f"WHERE l.stage = c.stage AND l.stage_entered_at <= c.cutoff AND ({_OWNER}) "
                "ORDER BY l.stage_entered_at LIMIT {rows}) l")

# Each group's members, from candidates that hold all of them: read whole to count a group (up to the
# cap) and to page through one that the cap did not stop. A follow-up stands for its lead only when it
# is the lead's earliest one due (d), so a lead with two is read once. A pool lead is in view only
# through the viewer's follow-up, so it can be overdue, due, or Hot with a follow-up later today.
_GROUP_SQL = {
    1: _group_sql(1, "leads l", f" AND l.last_activity_at > :fresh_cutoff AND ({_OWNER})"),
    2: _group_sql(2, _FOLLOW_UPS_DUE.format(due=_OVERDUE), " AND d.id = c.id"),
    3: _union(_group_sql(3, f"(SELECT * {_HOT_LEADS} LIMIT {_ROWS}) l", f" AND ({_OWNER}) AND {_WAITING}"),
              _group_sql(3, _POOL_FOLLOW_UPS_DUE.format(due=_LATER_TODAY),
                         f" AND d.id = c.id AND l.tier = 'hot' AND ({_OWNER}) IS NOT TRUE")),
    4: _group_sql(4, _FOLLOW_UPS_DUE.format(due=_LATER_TODAY), " AND d.id = c.id"),
    5: _group_sql(5, f"(SELECT * {_RISKY_LEADS} LIMIT {_ROWS}) l", f" AND ({_OWNER}) AND {_WAITING}"),
    6: _group_sql(6, _STUCK_LEADS.format(columns="l.*", rows=_ROWS), f" AND ({_OWNER}) AND {_WAITING}"),
}
# Within a group (the order of the module docstring); the lead id breaks ties.
_GROUP_ORDER = {
    1: "signal_at DESC, score DESC, deal_value DESC, lead_id",
    2: "score DESC, deal_value DESC, lead_id",
    3: "score DESC, deal_value DESC, lead_id",
    4: "due_at, score DESC, deal_value DESC, lead_id",
    5: "risk_points DESC, score DESC, deal_value DESC, lead_id",
    6: "score DESC, deal_value DESC, lead_id",
}

# A group past the cap is paged by walking the viewer's open leads in the group's order through an
# index and keeping its members: the walk reads `:walk` leads, about as many as the page needs over the
# group's share, not the whole group. Every member at or before the walk's last lead (`e.last`) is
# found, pool leads included; the walk's key compares like the group's order. New signals are walked by
# last engagement, newest first, then as the group breaks ties (score, deal value, id): a signal is an
# engagement, so a lead further on has no newer signal, nor an equal one that ranks before `e.last`.
# (By the time alone, a member was only certain once its signal was newer than the walk's last lead, so
# a few thousand leads engaged in the same second, as a bulk load or an import leaves them, were walked
# whole before the first item could be shown.)
_BY_SCORE = ("l.score DESC, l.deal_value DESC, l.id", "ARRAY[-l.score, -l.deal_value, l.id]")
_BY_ENGAGEMENT = "ARRAY[-extract(epoch FROM {at}), -l.score, -l.deal_value, l.id]"
_WALKS = {  # group: (the walk's order, its key)
    1: ("l.last_activity_at DESC, l.score DESC, l.deal_value DESC, l.id",
        _BY_ENGAGEMENT.format(at="l.last_activity_at")),
    2: _BY_SCORE, 3: _BY_SCORE, 6: _BY_SCORE,
    5: ("l.risk_points DESC, l.score DESC, l.deal_value DESC, l.id",
        "ARRAY[-l.risk_points, -l.score, -l.deal_value, l.id]"),
}
# What a member must be, as a range of the walk's index where it can: Hot is a score of HOT_MIN or more
# (ck_leads_tier_matches_score), High risk HIGH_FROM points or more (ck_leads_risk_level_matches_points),
# the risk and stuck groups hold no Hot lead (those are Hot first), and these three only leads waiting
# on the rep (tested on the lead's row before anything else is read for it).
_WALK_FROM = {1: " AND l.last_activity_at > :fresh_cutoff", 2: "", 3: f" AND l.score >= {HOT_MIN} AND {_WAITING}",
              5: f" AND l.risk_points >= {HIGH_FROM} AND l.risk_level = 'high' AND l.score < {HOT_MIN} AND {_WAITING}",
              6: f" AND l.score < {HOT_MIN} AND {_WAITING}"}
_WALKED = " AND (e.walked < :walk OR {key} <= e.last)"
_WALKED_BY_SCORE = _WALKED.format(key=_BY_SCORE[1])
_WALK_CANDIDATES = "walk wk JOIN leads l ON l.id = wk.id CROSS JOIN edge e"
_POOL_CANDIDATES = _POOL_FOLLOW_UPS_DUE + " CROSS JOIN edge e"
_WALK_GROUP_SQL = {
    1: _group_sql(1, _WALK_CANDIDATES, _WALKED.format(key=_BY_ENGAGEMENT.format(at="fr.signal_at"))),
    2: _union(_group_sql(2, _WALK_CANDIDATES, _WALKED_BY_SCORE),
              _group_sql(2, _POOL_CANDIDATES.format(due=_OVERDUE),
                         f" AND d.id = c.id AND ({_OWNER}) IS NOT TRUE" + _WALKED_BY_SCORE)),
    3: _union(_group_sql(3, _WALK_CANDIDATES, _WALKED_BY_SCORE),
              _group_sql(3, _POOL_CANDIDATES.format(due=_LATER_TODAY),
                         f" AND d.id = c.id AND l.tier = 'hot' AND ({_OWNER}) IS NOT TRUE" + _WALKED_BY_SCORE)),
    5: _group_sql(5, _WALK_CANDIDATES, _WALKED.format(key=_WALKS[5][1])),
    6: _group_sql(6, _WALK_CANDIDATES, _WALKED_BY_SCORE),
}
_WALK_SQL = """WITH walk AS MATERIALIZED (
    SELECT l.id, {key} AS key FROM leads l
     WHERE l.stage = ANY(:open_stages) AND ({owner}){where}
     ORDER BY {order} LIMIT :walk
),
edge AS (SELECT count(*) AS walked, {last}(key) AS last FROM walk)
"""

# How many leads wait in each group, counted up to :cap (a count stops there: the page says "99+").
# With the counts of the groups walked `:count_rows` candidates at most, how far each walk went (the most
# of a stage's, for stuck deals): a count below the cap from a walk that went that far is counted again.
_DUE_READ = "(SELECT count(*) FROM crm_follow_ups_due(CAST(:owner_id AS integer), {}, CAST(:due_rows AS integer), false))"
_READ_SQL = {
    2: _DUE_READ.format(_OVERDUE),
    3: f"(SELECT count(*) FROM (SELECT 1 {_HOT_LEADS} LIMIT {_ROWS}) w)",
    4: _DUE_READ.format(_LATER_TODAY),
    5: f"(SELECT count(*) FROM (SELECT 1 {_RISKY_LEADS} LIMIT {_ROWS}) w)",
    6: "(SELECT coalesce(max(w.n), 0) FROM (SELECT c.stage, count(*) AS n FROM {} GROUP BY c.stage) w)".format(
        _STUCK_LEADS.format(columns="1", rows=_ROWS)),
}
# Each group's members counted up to :cap.
_GROUP_COUNT_SQL = {n: f"SELECT count(*) FROM ({sql} LIMIT :cap) g" for n, sql in _GROUP_SQL.items()}
_COUNTS_SQL = "SELECT {counts}, {read}".format(
    counts=",\n       ".join(f"({sql}) AS g{n}" for n, sql in _GROUP_COUNT_SQL.items()),
    read=", ".join(f"{sql} AS read{n}" for n, sql in _READ_SQL.items()))

# What a queue card prints of its item `p`: the lead, its owner, its stage's time limit and its last
# engagement (one definition for the grouped pages and the one-pass statement; no braces, so both
# templates may be formatted after it is put in).
_ITEM_COLUMNS = """l.name, l.company, l.tier, l.stage, l.stage_entered_at, l.version,
       l.last_contacted_at, l.risk_reasons, u.name AS owner_name, r.stagnation_days,
       e.kind AS last_kind, e.occurred_at AS last_at"""
_ITEM_JOINS = """  LEFT JOIN leads l ON l.id = p.lead_id
  LEFT JOIN users u ON u.id = l.owner_id
  LEFT JOIN stage_rules r ON r.stage = l.stage
  LEFT JOIN LATERAL (
        SELECT a.kind, a.occurred_at FROM activities a
         WHERE a.lead_id = l.id AND a.kind = ANY(:engagement_kinds) AND a.occurred_at <= :now
         ORDER BY a.occurred_at DESC LIMIT 1
  ) e ON TRUE"""

# One group's items, `:limit` from `:offset` in its order, with what their words need; `walked`: how
# many leads a walk read (NULL: no walk).
_PAGE_SQL = """{walk}
SELECT {walked} AS walked, p.*, """ + _ITEM_COLUMNS + """
  FROM {edge}
  LEFT JOIN ({members} ORDER BY {inner_order} LIMIT :limit OFFSET :offset) p ON TRUE
""" + _ITEM_JOINS + """
 ORDER BY {order}
"""


def _page_sql(n: int, members: str, walk: bool) -> str:
    return _PAGE_SQL.format(
        walk=_WALK_SQL.format(key=_WALKS[n][1], owner=_OWNER, where=_WALK_FROM[n], order=_WALKS[n][0],
                              last="max") if walk else "",
        walked="edge_row.walked" if walk else "CAST(NULL AS bigint)",
        edge="edge edge_row" if walk else "(SELECT 1) edge_row",
        members=members, inner_order=_GROUP_ORDER[n],
        order=", ".join(f"p.{key}" for key in _GROUP_ORDER[n].split(", ")))


_PAGES_SQL = {n: _page_sql(n, sql, walk=False) for n, sql in _GROUP_SQL.items()}
_WALK_PAGES_SQL = {n: _page_sql(n, sql, walk=True) for n, sql in _WALK_GROUP_SQL.items()}
# The first walk reads this many leads per item wanted (and WALK_SLACK more); each next one eight times more.
_WALK_PER_ITEM = 4
WALK_SLACK = 100
_WALK_GROWTH = 8


# Leads in view (`{where}`) with a fresh signal: the queue's first group, and the lead page's promise
# of a call.
_FRESH_SQL = """
fresh AS (
    -- The newest request since our last contact within the window; or, without one, the lead
    -- turned Hot in the window after something the prospect did in it (an engine switch or a
    -- retrain that makes a quiet lead Hot is arithmetic, not intent). Only leads whose last
    -- engagement falls in the window can have either (a request is an engagement): a few percent,
    -- found through ix_leads_last_activity; the window's requests through ix_activities_requests.
    SELECT l.id, r.kind AS signal_kind, coalesce(r.occurred_at, l.last_activity_at) AS signal_at
      FROM leads l
      LEFT JOIN (
            SELECT DISTINCT ON (a.lead_id) a.lead_id, a.kind, a.occurred_at
              FROM activities a
             WHERE a.kind = ANY(:request_kinds) AND a.occurred_at > :fresh_cutoff AND a.occurred_at <= :now
             ORDER BY a.lead_id, a.occurred_at DESC
      ) r ON r.lead_id = l.id AND (l.last_contacted_at IS NULL OR r.occurred_at > l.last_contacted_at)
     WHERE l.last_activity_at > :fresh_cutoff
       AND l.stage = ANY(:open_stages) AND ({where})
       AND (l.snoozed_until IS NULL OR l.snoozed_until <= :now)
       AND (r.kind IS NOT NULL
            OR (l.tier = 'hot' AND l.hot_since > :fresh_cutoff AND l.last_activity_at <= :now
                AND (l.last_contacted_at IS NULL
                     OR l.last_contacted_at < least(l.hot_since, l.last_activity_at))))
)"""


# A small book's queue in one statement: one row per lead with a reason to be in the queue, all its
# reasons as columns; its group is its first reason. The leads in view are read once (from the partial
# covering index ix_leads_open_queue), the fresh ones and the follow-ups due through their own indexes,
# and only the page's leads are read again for their words. Its cost grows with the book, the grouped
# reads' does not: below SMALL_BOOK open leads this is the cheaper of the two, and they agree on every
# item and count (tests/test_queue_grouped_reads.py).
_ONE_PASS_SQL = ("""
WITH {fresh},
follow_ups_due AS (
    -- A lead's earliest open follow-up that is due by the end of today.
    SELECT DISTINCT ON (f.lead_id) f.lead_id, f.id, f.due_at, f.note
      FROM follow_ups f
     WHERE f.done_at IS NULL AND f.due_at < :day_end
       AND (CAST(:owner_id AS integer) IS NULL OR f.owner_id = :owner_id)
     ORDER BY f.lead_id, f.due_at, f.id
),
in_view AS (
    SELECT {columns} FROM leads l WHERE l.stage = ANY(:open_stages) AND ({owner})
    UNION ALL  -- and a rep's promise on a lead that is not theirs (a pool lead)
    SELECT {columns} FROM follow_ups_due d JOIN leads l ON l.id = d.lead_id
     WHERE l.stage = ANY(:open_stages) AND ({owner}) IS NOT TRUE
),
reasons AS (
    SELECT l.id AS lead_id, l.score, l.deal_value, l.risk_points, f.signal_at, f.signal_kind,
           d.id AS follow_up_id, d.due_at, d.note,
           w.waiting AND l.tier = 'hot' AS hot,
           w.waiting AND l.risk_level = 'high' AS at_risk,
           w.waiting AND coalesce({stuck}, false) AS stuck
      FROM in_view l
      LEFT JOIN stage_rules r ON r.stage = l.stage
      LEFT JOIN fresh f ON f.id = l.id
      LEFT JOIN follow_ups_due d ON d.lead_id = l.id
      CROSS JOIN LATERAL (SELECT {waiting} AS waiting) w
),
best AS (
    -- The leads with a reason, each in the group of its first one.
    SELECT * FROM (
        SELECT *,
               CASE WHEN signal_at IS NOT NULL THEN 1 WHEN due_at < :now THEN 2 WHEN hot THEN 3
                    WHEN due_at IS NOT NULL THEN 4 WHEN at_risk THEN 5 WHEN stuck THEN 6 END AS grp
          FROM reasons
    ) grouped
     WHERE grp IS NOT NULL
),
counts AS (
    SELECT coalesce(json_object_agg(grp, n), '{{}}') AS by_group
      FROM (SELECT grp, count(*) AS n FROM best GROUP BY grp) g
),
page AS (
    SELECT * FROM best
     WHERE CAST(:grp AS integer) IS NULL OR grp = :grp
     ORDER BY grp,
              CASE WHEN grp = 1 THEN signal_at END DESC,  -- fresh: the newest signal first
              CASE WHEN grp = 4 THEN due_at END,          -- due today: the earliest first
              CASE WHEN grp = 5 THEN risk_points END DESC, score DESC, deal_value DESC, lead_id
     LIMIT :limit OFFSET :offset
)
SELECT c.by_group, p.*, """ + _ITEM_COLUMNS + """
  FROM counts c
  LEFT JOIN page p ON TRUE
""" + _ITEM_JOINS + """
 ORDER BY p.grp,
          CASE WHEN p.grp = 1 THEN p.signal_at END DESC,
          CASE WHEN p.grp = 4 THEN p.due_at END,
          CASE WHEN p.grp = 5 THEN p.risk_points END DESC, p.score DESC, p.deal_value DESC, p.lead_id
""").format(fresh=_FRESH_SQL.format(where=_OWNER), waiting=_WAITING, owner=_OWNER,
           stuck=stuck_sql("l.stage_entered_at", "r.stagnation_days"),
           columns="l.id, l.score, l.deal_value, l.risk_points, l.tier, l.risk_level, l.stage, "
                   "l.stage_entered_at, l.snoozed_until, l.last_contacted_at, l.last_activity_at")


def _params(now: datetime) -> dict:
    return {
        "open_stages": [s.value for s in OPEN_STAGES],
        "request_kinds": [k.value for k in REQUEST_KINDS],
        "engagement_kinds": [k.value for k in ENGAGEMENT_KINDS],
        "now": now,
        "fresh_cutoff": now - FRESH_WINDOW,
        "answered_cutoff": now - ANSWERED_FOR,
    }


def action_queue(
    session: Session, *, owner_id: int | None, now: datetime, limit: int = PAGE_SIZE, offset: int = 0,
    group: str | None = None, count_cap: int = COUNT_CAP, small_book: int | None = None,
    walk_slack: int = WALK_SLACK,
) -> QueuePage:
    """The to-do list of one rep (`owner_id`) or the whole team (None): `limit` items from `offset`
    of one group (`group`, a key of GROUPS) or of all, and how many leads wait in each group, counted
    up to `count_cap` (a group holding more says so: `QueueGroup.capped`). A book of up to
    `small_book` open leads (default SMALL_BOOK for one owner, SMALL_TEAM_BOOK for the team) is read in
    one pass, a larger one group by group (a long group walked
    `walk_slack` leads beyond what the page needs, at first). See the module docstring for the rules."""
    if group is not None and group not in GROUPS:
        raise InvalidInput(f"Unknown queue group {group!r}.", field="group")
    params = {**_params(now), "owner_id": owner_id, "day_end": end_of_day(now), "count_rows": None, "due_rows": None}
    offset, limit = max(offset, 0), max(limit, 0)
    if small_book is None:
        small_book = SMALL_TEAM_BOOK if owner_id is None else SMALL_BOOK
    if _open_leads(session, owner_id) <= small_book:
        rows = session.execute(text(_ONE_PASS_SQL), {
            **params, "grp": _GROUP_NUMBER[group] if group else None, "limit": limit, "offset": offset}).all()
        by_group = {int(n): count for n, count in rows[0].by_group.items()}
        counted = [by_group.get(n, 0) for n in _GROUP_KIND]
        rows = [r for r in rows if r.lead_id is not None]
    else:
        walk = {"count_rows": _READ_PER_COUNT * (count_cap + 1), "due_rows": (count_cap + 1) * 5 // 4 + 1}
        found = session.execute(text(_COUNTS_SQL), {**params, "cap": count_cap + 1, **walk}).one()
        counted, rows = list(found[:len(_GROUP_SQL)]), None
        for n in _READ_SQL:
            if counted[n - 1] <= count_cap and found._mapping[f"read{n}"] >= walk[
                    "due_rows" if n in (2, 4) else "count_rows"]:
                counted[n - 1] = session.execute(text(_GROUP_COUNT_SQL[n]),
                                                 {**params, "cap": count_cap + 1}).scalar_one()
    groups = []
    for kind, label in GROUPS.items():
        count = counted[_GROUP_NUMBER[kind] - 1]
        groups.append(QueueGroup(kind, label, min(count, count_cap), capped=count > count_cap))
    if rows is None:
        rows = _page_rows(session, params, groups if group is None else [g for g in groups if g.kind == group],
                          offset=offset, limit=limit, walk_slack=walk_slack)
    items: list[QueueItem] = []
    for r in rows:
        kind = _GROUP_KIND[r.grp]
        items.append(
            QueueItem(
                lead_id=r.lead_id,
                name=r.name,
                company=r.company or "",
                owner=r.owner_name or "Unassigned",
                stage=Stage(r.stage).label,
                value_label=money(r.deal_value),
                score=r.score,
                tier=r.tier,
                kind=kind,
                kind_label=GROUPS[kind],
                headline=_words(kind, r, now),
                position=offset + len(items) + 1,
                version=r.version,
                follow_up_id=r.follow_up_id or 0,
                secondary=[_words(other, r, now) for other in _reasons_of(r, now)
                           if other != kind and not (other == "hot" and kind == "fresh")],  # same news once
            )
        )
    _attach_suggestions(session, items, now)
    total = sum(g.count for g in groups)
    chosen = next((g for g in groups if g.kind == group), None)
    total_capped = any(g.capped for g in groups)
    return QueuePage(items=items, groups=groups, total=total,
                     matching=chosen.count if chosen else total, offset=offset,
                     capped=chosen.capped if chosen else total_capped, total_capped=total_capped)


def _open_leads(session: Session, owner_id: int | None) -> int:
    """The open leads in view (the owner's, or all the viewer may see), from the kept totals."""
    return sum(deals for deals, _value, _score in kept_totals(
        session, owner_id=owner_id, stages=[s.value for s in OPEN_STAGES]).values())


def _page_rows(session: Session, params: dict, groups: list[QueueGroup], *, offset: int, limit: int,
               walk_slack: int = WALK_SLACK) -> list:
    """`limit` rows from `offset` of `groups` run one after another, each read in its own order."""
    rows: list = []
    skip = offset
    for g in groups:
        if len(rows) >= limit:
            break
        n = _GROUP_NUMBER[g.kind]
        if not g.capped or n not in _WALK_PAGES_SQL:  # read the members and sort them (fresh and due
            # today are this day's few; a capped count is counted on when the page starts past it)
            if g.capped and skip >= g.count:
                g = QueueGroup(g.kind, g.label, session.execute(
                    text(_GROUP_COUNT_SQL[n]), {**params, "cap": skip + 1}
                ).scalar_one())
            if skip >= g.count:
                skip -= g.count
                continue
            found = session.execute(text(_PAGES_SQL[n]), {**params, "limit": limit - len(rows), "offset": skip}).all()
            rows += [r for r in found if r.lead_id is not None]
            skip = 0
            continue
        # Past the cap: walk the group in order until the page is full or the group ends.
        wanted = skip + limit - len(rows)
        walk = _WALK_PER_ITEM * wanted + walk_slack
        while True:
            found = session.execute(text(_WALK_PAGES_SQL[n]), {**params, "walk": walk, "limit": wanted,
                                                               "offset": 0}).all()
            members = [r for r in found if r.lead_id is not None]
            if len(members) >= wanted or found[0].walked < walk:
                break
            walk *= _WALK_GROWTH
        rows += members[skip:]
        skip = max(0, skip - len(members))
    return rows


def _reasons_of(r, now: datetime) -> list[str]:
    """Every group a queue row belongs to, in queue order (its first is its group)."""
    overdue = r.due_at is not None and r.due_at < now
    flags = {"fresh": r.signal_at is not None, "overdue": overdue, "hot": r.hot,
             "due": r.due_at is not None and not overdue, "risk": r.at_risk, "stuck": r.stuck}
    return [kind for kind in GROUPS if flags[kind]]


def _words(kind: str, r, now: datetime) -> str:
    if kind == "fresh":
        return _fresh_text(r.signal_kind, r.last_kind, r.signal_at if r.signal_kind else r.last_at, now)
    if kind == "hot":
        return _hot_text(r.last_kind, r.last_at, r.last_contacted_at, now)
    if kind == "stuck":
        return _stuck_text(r.stage, r.stage_entered_at, r.stagnation_days, now)
    if kind == "risk":
        return risk_headline(r.risk_reasons, Stage(r.stage).label, now)
    return _follow_up_text(r.due_at, r.note, now)


_FRESH_ONE_SQL = """
SELECT fr.signal_kind, fr.signal_at, e.kind AS last_kind, e.occurred_at AS last_at
  FROM leads l{fresh}
  LEFT JOIN LATERAL (
        SELECT a.kind, a.occurred_at FROM activities a
         WHERE a.lead_id = l.id AND a.kind = ANY(:engagement_kinds) AND a.occurred_at <= :now
         ORDER BY a.occurred_at DESC LIMIT 1
  ) e ON TRUE
 WHERE l.id = :lead_id AND fr.signal_at IS NOT NULL
""".format(fresh=_FRESH_OF_LEAD.format(owner="TRUE"))


def fresh_signal(session: Session, lead_id: int, now: datetime) -> str | None:
    """The lead's fresh signal in the queue's words ("Asked for pricing 12 min ago: call within the
    hour"), or None: the only case where the app promises a call within the hour."""
    row = session.execute(text(_FRESH_ONE_SQL), {**_params(now), "lead_id": lead_id}).first()
    if row is None:
        return None
    return _fresh_text(row.signal_kind, row.last_kind, row.signal_at if row.signal_kind else row.last_at, now)


def _attach_suggestions(session: Session, items: list[QueueItem], now: datetime) -> None:
    """Each item's next best action, from the precomputed play statistics (no history scan)."""
    actions = next_actions(session, [item.lead_id for item in items], now)
    for item in items:
        action = actions.get(item.lead_id)
        if action is not None:
            item.suggestion, item.suggestion_why, item.suggestion_basis = action.headline, action.why, action.basis


# --- Actions --------------------------------------------------------------------------------

SNOOZE_CHOICES = {"hour": "In 1 hour", "tomorrow": "Tomorrow 9:00", "next_week": "Next week"}


def snooze_time(choice: str, now: datetime) -> datetime:
    """When a snooze choice ends: in an hour, tomorrow at 9:00, or next Monday at 9:00."""
    nine = time(9, 0, tzinfo=now.tzinfo)
    if choice == "hour":
        return now + timedelta(hours=1)
    if choice == "tomorrow":
        return datetime.combine(now.date() + timedelta(days=1), nine)
    if choice == "next_week":
        return datetime.combine(now.date() + timedelta(days=7 - now.weekday()), nine)
    raise InvalidInput(f"Unknown snooze choice {choice!r}.", field="snooze")


def _open_follow_up(session: Session, follow_up_id: int, lead_id: int | None = None) -> FollowUp:
    follow_up = session.get(FollowUp, follow_up_id, with_for_update=True)
    # Row security hides another rep's follow-up (migration 0011); its lead is checked here too, so
    # the service refuses the same way on a session that is not under row security.
    if (follow_up is None or (lead_id is not None and follow_up.lead_id != lead_id)
            or session.get(Lead, follow_up.lead_id) is None):
        raise NotFound("That follow-up no longer exists.")
    if follow_up.done_at is not None:
        raise StaleLead("That follow-up was already marked done.")
    return follow_up


def snooze_lead(
    session: Session,
    *,
    lead_id: int,
    until: datetime,
    now: datetime,
    follow_up_id: int | None = None,
    expected_version: int | None = None,
) -> Lead:
    """Hide a lead from the queue until `until` and commit. With `follow_up_id`, that follow-up is
    postponed to the same time, so the item really goes away until then."""
    if until <= now:
        raise InvalidInput("A snooze must end in the future.", field="snooze")
    lead = lock_lead(session, lead_id, expected_version)
    if follow_up_id:
        follow_up = _open_follow_up(session, follow_up_id, lead_id)
        follow_up.due_at = until
        session.add(follow_up)
    lead.snoozed_until = until
    bump_version(lead, now)
    session.add(lead)
    session.commit()
    return lead


def complete_follow_up(
    session: Session, *, follow_up_id: int, now: datetime, lead_id: int | None = None
) -> FollowUp:
    """Mark a follow-up done (of `lead_id`, when given) and commit."""
    follow_up = _open_follow_up(session, follow_up_id, lead_id)
    follow_up.done_at = now
    session.add(follow_up)
    session.commit()
    return follow_up


def _new_follow_up(
    session: Session, *, lead_id: int, owner_id: int | None, in_days: int, note: str | None, now: datetime
) -> FollowUp:
    if not 1 <= in_days <= MAX_FOLLOW_UP_DAYS:
        raise InvalidInput(f"Follow up in 1 to {MAX_FOLLOW_UP_DAYS} days.", field="follow_up_days")
    note = (note or "").strip() or None
    if note and len(note) > MAX_FOLLOW_UP_NOTE:
        raise InvalidInput(f"Follow-up note is too long (max {MAX_FOLLOW_UP_NOTE} characters).",
                           field="follow_up_note")
    follow_up = FollowUp(lead_id=lead_id, owner_id=owner_id, due_at=now + timedelta(days=in_days),
                         note=note, created_at=now)
    session.add(follow_up)
    return follow_up


def schedule_follow_up(
    session: Session, *, lead_id: int, owner_id: int | None, in_days: int, now: datetime,
    note: str | None = None,
) -> FollowUp:
    """Promise to get back to a lead in `in_days` days and commit; it shows in the queue when due."""
    if session.get(Lead, lead_id) is None:
        raise NotFound(f"Lead {lead_id} no longer exists.")
    follow_up = _new_follow_up(session, lead_id=lead_id, owner_id=owner_id, in_days=in_days,
                               note=note, now=now)
    session.commit()
    return follow_up


def dismiss_item(
    session: Session, *, lead_id: int, now: datetime, follow_up_id: int | None = None,
    expected_version: int | None = None,
) -> None:
    """"Done" on a queue item: a follow-up is marked done; any other item is snoozed until the
    prospect's next engagement."""
    if follow_up_id:
        complete_follow_up(session, follow_up_id=follow_up_id, now=now, lead_id=lead_id)
    else:
        snooze_lead(session, lead_id=lead_id, until=UNTIL_NEXT_ENGAGEMENT, now=now,
                    expected_version=expected_version)


def work_item(
    session: Session,
    *,
    lead_id: int,
    kind: ActivityKind | str,
    now: datetime,
    user_id: int | None,
    body: str | None = None,
    follow_up_id: int | None = None,
    follow_up_days: int | None = None,
    follow_up_note: str | None = None,
    expected_version: int | None = None,
) -> None:
    """Log what the rep did from the queue (call, email, meeting, note), in one transaction:
    the activity is logged and the lead rescored; reaching out (call, email, meeting) on a
    follow-up item marks that follow-up done; `follow_up_days` schedules the next one."""
    user_id = recorded_as(session, user_id, "log an activity")  # the next follow-up is theirs too
    try:
        # The lead first: a follow-up queued for a lead the user cannot see would be refused by row
        # security as a database error at the next flush, not as "no longer exists".
        lock_lead(session, lead_id, expected_version)
        if follow_up_days:
            _new_follow_up(session, lead_id=lead_id, owner_id=user_id, in_days=follow_up_days,
                           note=follow_up_note, now=now)
        if follow_up_id and kind in [k.value for k in CONTACT_KINDS]:
            _open_follow_up(session, follow_up_id, lead_id).done_at = now
        log_activity(session, lead_id=lead_id, kind=kind, now=now, user_id=user_id, body=body,
                     expected_version=expected_version)  # commits all of the above
    except BaseException:
        session.rollback()
        raise
