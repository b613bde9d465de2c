"""The CRM's vocabulary: stages, sources, activity kinds, roles and tiers.

Plain enums with no dependencies, shared by the scoring package, the tables and the pages so that
one concept has one name everywhere.
"""

from __future__ import annotations

import re
from enum import StrEnum

# What the app accepts as an email address wherever one is typed or imported: something@domain.tld,
# no spaces. Deliverability is the mail system's business, not a form's.
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class Stage(StrEnum):
    NEW = "new"
    CONTACTED = "contacted"
    QUALIFIED = "qualified"
    MEETING = "meeting"
    PROPOSAL = "proposal"
    NEGOTIATION = "negotiation"
    WON = "won"
    LOST = "lost"

    @property
    def label(self) -> str:
        return self.value.title()

    @property
    def is_closed(self) -> bool:
        return self in (Stage.WON, Stage.LOST)


OPEN_STAGES = tuple(s for s in Stage if not s.is_closed)


class Source(StrEnum):
    LINKEDIN = "linkedin"
    WEBSITE = "website"
    REFERRAL = "referral"
    WEBINAR = "webinar"
    PAID_SEARCH = "paid_search"
    COLD_OUTREACH = "cold_outreach"
    EVENTS = "events"

    @property
    def label(self) -> str:
        return {
            "linkedin": "LinkedIn",
            "website": "Website",
            "referral": "Referral",
            "webinar": "Webinar",
            "paid_search": "Paid search",
            "cold_outreach": "Cold outreach",
            "events": "Events",
        }[self.value]


class ActivityKind(StrEnum):
    """What happened with a lead. The first group is done by the prospect, the second by a rep."""

    EMAIL_OPENED = "email_opened"
    EMAIL_CLICKED = "email_clicked"
    EMAIL_RECEIVED = "email_received"
    PAGE_VISIT = "page_visit"
    PRICING_PAGE_VISIT = "pricing_page_visit"
    PRICING_REQUEST = "pricing_request"
    DEMO_REQUEST = "demo_request"
    FORM_SUBMISSION = "form_submission"
    MEETING = "meeting"
    CALL = "call"
    EMAIL_SENT = "email_sent"
    NOTE = "note"

    @property
    def label(self) -> str:
        return {
            "email_opened": "Email opened",
            "email_clicked": "Email link clicked",
            "email_received": "Email received",
            "page_visit": "Page visit",
            "pricing_page_visit": "Pricing page visit",
            "pricing_request": "Pricing request",
            "demo_request": "Demo request",
            "form_submission": "Form submitted",
            "meeting": "Meeting",
            "call": "Call",
            "email_sent": "Email sent",
            "note": "Note",
        }[self.value]


# Activities a rep logs by hand from the UI (the prospect's own actions arrive from integrations).
REP_LOGGED_KINDS = (
    ActivityKind.CALL,
    ActivityKind.EMAIL_SENT,
    ActivityKind.MEETING,
    ActivityKind.NOTE,
    ActivityKind.EMAIL_RECEIVED,
)

# Outreach by a rep: "contacted" for the action queue.
CONTACT_KINDS = (ActivityKind.CALL, ActivityKind.EMAIL_SENT, ActivityKind.MEETING)

# The prospect asking something of us: a reply, a pricing or demo request, a form. Each waits on the
# rep's answer: a fresh one heads the action queue, one left unanswered for a day is a deal risk.
REQUEST_KINDS = (
    ActivityKind.EMAIL_RECEIVED,
    ActivityKind.PRICING_REQUEST,
    ActivityKind.DEMO_REQUEST,
    ActivityKind.FORM_SUBMISSION,
)
# The prospect answering: a request, or a meeting they came to. Any of them ends their silence
# (deal risk's "no reply"); opens, clicks and page visits are attention, not an answer.
ANSWER_KINDS = (*REQUEST_KINDS, ActivityKind.MEETING)


class Role(StrEnum):
    REP = "rep"
    MANAGER = "manager"
    ADMIN = "admin"


class Tier(StrEnum):
    HOT = "hot"
    WARM = "warm"
    COLD = "cold"

    @property
    def label(self) -> str:
        return self.value.title()

    @property
    def advice(self) -> str:
        return {
            # "Call within the hour" is said only of a lead with a fresh signal (services/queue.py).
            "hot": "Most likely to buy: work first",
            "warm": "Nurture",
            "cold": "Leave to marketing",
        }[self.value]


class RiskLevel(StrEnum):
    """How likely an open deal is to churn or stall (scoring/risk.py). Closed deals have none."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def label(self) -> str:
        return self.value.title()


class Play(StrEnum):
    """A sales play: the specific step or content a rep uses to move a lead forward.

    Rep outreach (a call, an email, a meeting) can be tagged with the play it was; a prospect's page
    visit or email click can be tagged with the content it opened ("read the case study"). Mined by
    the next-best-action and segment insights.
    """

    CASE_STUDY = "case_study"
    WHITEPAPER = "whitepaper"
    PRICING_CALL = "pricing_call"
    DEMO = "demo"
    NURTURE_SEQUENCE = "nurture_sequence"
    BREAKUP_EMAIL = "breakup_email"

    @property
    def label(self) -> str:
        return {
            "case_study": "Case study",
            "whitepaper": "Whitepaper",
            "pricing_call": "Pricing call",
            "demo": "Demo",
            "nurture_sequence": "Nurture sequence",
            "breakup_email": "Break-up email",
        }[self.value]

    @property
    def after_phrase(self) -> str:
        """How "after ..." reads in a sentence: "after a case study"."""
        return {
            "case_study": "after a case study",
            "whitepaper": "after a whitepaper",
            "pricing_call": "after a pricing call",
            "demo": "after a demo",
            "nurture_sequence": "after a nurture sequence",
            "breakup_email": "after a break-up email",
        }[self.value]

    @property
    def kinds(self) -> tuple[ActivityKind, ...]:
        """The rep activities this play is done as; the first is the usual one."""
        return PLAY_KINDS[self]

    @property
    def is_content(self) -> bool:
        """Content a prospect reads (their visits and clicks can be tagged with it)."""
        return self in (Play.CASE_STUDY, Play.WHITEPAPER)

    @property
    def icon(self) -> str:
        return {
            "case_study": "book-open",
            "whitepaper": "file-text",
            "pricing_call": "phone",
            "demo": "presentation",
            "nurture_sequence": "repeat",
            "breakup_email": "mail-x",
        }[self.value]


PLAY_KINDS: dict[Play, tuple[ActivityKind, ...]] = {
    Play.CASE_STUDY: (ActivityKind.EMAIL_SENT, ActivityKind.MEETING),
    Play.WHITEPAPER: (ActivityKind.EMAIL_SENT,),
    Play.PRICING_CALL: (ActivityKind.CALL, ActivityKind.MEETING),
    Play.DEMO: (ActivityKind.MEETING, ActivityKind.CALL),
    Play.NURTURE_SEQUENCE: (ActivityKind.EMAIL_SENT,),
    Play.BREAKUP_EMAIL: (ActivityKind.EMAIL_SENT,),
}
# A prospect opening a play's content: these activities may carry a content play's tag.
CONTENT_READ_KINDS = (ActivityKind.PAGE_VISIT, ActivityKind.EMAIL_CLICKED)
