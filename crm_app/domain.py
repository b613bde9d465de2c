"""The CRM's vocabulary: stages, sources, activity kinds, roles and tiers.

Plain enums with no dependencies, shared by the scoring package, the tables and the pages so that
one concept has one name everywhere.
"""

from __future__ import annotations

from enum import StrEnum


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
            "hot": "Call within the hour",
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
