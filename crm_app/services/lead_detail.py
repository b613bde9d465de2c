"""One lead, whole: its data, score breakdown and timeline; and editing it safely."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import literal, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from crm_app.db.models import Activity, Lead, StageChange, User
from crm_app.db.queries import ReasonRow, money
from crm_app.domain import EMAIL_RE, ActivityKind, Play, RiskLevel, Source, Stage, Tier
from crm_app.scoring.sentiment import tone_of
from crm_app.services import audit
from crm_app.services.errors import Forbidden, InvalidInput, NotFound
from crm_app.services.leads import bump_version, lock_lead
from crm_app.services.permissions import CurrentUser, acting_user, recorded_as
from crm_app.services.queue import fresh_signal
from crm_app.services.scoring import rescore_lead

TIMELINE_LIMIT = 100


@dataclass
class TimelineEntry:
    key: str  # unique on the page: kind and row id
    kind: str  # an activity kind, or "stage_change"
    title: str
    body: str
    at: str  # shown as is
    by: str
    icon: str
    tone: str = ""  # a reply's or note's sentiment: positive | neutral | negative ("" for none)


@dataclass
class LeadDetail:
    id: int = 0
    name: str = ""
    email: str = ""
    phone: str = ""
    title: str = ""
    company: str = ""
    company_size: str = ""
    source: str = ""
    source_label: str = ""
    stage: str = ""
    stage_label: str = ""
    owner_id: str = ""
    owner: str = ""
    deal_value: str = ""
    value_label: str = ""
    score: int = 0
    tier: str = ""
    tier_label: str = ""
    tier_advice: str = ""
    reasons: list[ReasonRow] = field(default_factory=list)
    days_in_stage: int = 0
    created: str = ""
    version: int = 0
    custom_fields: list[list[str]] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)
    # Deal risk (scoring/risk.py): "" for a closed deal or one not assessed yet.
    risk_level: str = ""
    risk_label: str = ""
    risk_points: int = 0
    risk_reasons: list[ReasonRow] = field(default_factory=list)
    # Why a lost deal was lost ("Price too high: went with the cheaper plan"); "" otherwise.
    lost_reason: str = ""


ICONS = {
    "email_opened": "mail-open", "email_clicked": "mouse-pointer-click", "email_received": "mail",
    "page_visit": "globe", "pricing_page_visit": "badge-dollar-sign", "pricing_request": "badge-dollar-sign",
    "demo_request": "presentation", "form_submission": "clipboard-list", "meeting": "users",
    "call": "phone", "email_sent": "send", "note": "sticky-note", "stage_change": "arrow-right-left",
    "audit": "history",
}


def _stamp(moment: datetime) -> str:
    return f"{moment.day} {moment:%b %Y, %H:%M}"


def lead_detail(session: Session, lead_id: int, now: datetime, viewer: CurrentUser | None = None) -> LeadDetail:
    """Everything the lead page shows, in three small queries."""
    lead = session.get(Lead, lead_id)
    if lead is None:
        raise NotFound(f"There is no lead {lead_id}.")
    owner = session.get(User, lead.owner_id) if lead.owner_id else None
    user_name = User.__table__.alias("actor")
    activities = (
        select(
            Activity.kind.label("kind"), Activity.occurred_at.label("at"), Activity.subject.label("subject"),
            Activity.body.label("body"), literal(None).label("from_stage"), literal(None).label("to_stage"),
            Activity.user_id.label("user_id"), Activity.id.label("id"), Activity.sentiment.label("sentiment"),
            Activity.play.label("play"),
        ).where(Activity.lead_id == lead_id)
    )
    changes = (
        select(
            literal("stage_change").label("kind"), StageChange.changed_at.label("at"), literal(None),
            literal(None), StageChange.from_stage, StageChange.to_stage, StageChange.user_id, StageChange.id,
            literal(None), literal(None),  # no sentiment, no play
        ).where(StageChange.lead_id == lead_id)
    )
    merged = union_all(activities, changes).subquery()
    rows = session.execute(
        select(merged, user_name.c.name.label("by"))
        .outerjoin(user_name, user_name.c.id == merged.c.user_id)
        .order_by(merged.c.at.desc(), merged.c.id.desc())
        .limit(TIMELINE_LIMIT)
    )
    timeline: list[tuple[datetime, TimelineEntry]] = []
    for r in rows:
        if r.kind == "stage_change":
            title = (f"Moved from {Stage(r.from_stage).label} to {Stage(r.to_stage).label}"
                     if r.from_stage else f"Created in {Stage(r.to_stage).label}")
            body = ""
        else:
            title = ActivityKind(r.kind).label + (f": {r.subject}" if r.subject else "")
            if r.play:
                title += f" · {Play(r.play).label}"  # the sales play it was
            body = r.body or ""
        timeline.append((r.at, TimelineEntry(
            key=f"{r.kind}-{r.id}", kind=r.kind, title=title, body=body, at=_stamp(r.at),
            by=r.by or ("Prospect" if r.kind != "stage_change" else "System"),
            icon=ICONS.get(r.kind, "circle"), tone=tone_of(r.sentiment))))
    if viewer is not None and viewer.is_manager:
        # Managers also see the changes made to the lead itself (edits, reassignments, refused moves),
        # with old and new values; stage moves are already on the timeline as moves.
        for entry in audit.entries(session, actor=viewer, lead_id=lead_id, limit=TIMELINE_LIMIT):
            if entry.action == "stage_moved":
                continue
            timeline.append((entry.at, TimelineEntry(
                key=f"audit-{entry.id}", kind="audit", title=entry.action_label, body=entry.change,
                at=_stamp(entry.at), by=entry.actor, icon=ICONS["audit"])))
        timeline.sort(key=lambda pair: pair[0], reverse=True)
    tier = Tier(lead.tier)
    return LeadDetail(
        id=lead.id, name=lead.name, email=lead.email or "", phone=lead.phone or "", title=lead.title or "",
        company=lead.company or "", company_size="" if lead.company_size is None else str(lead.company_size),
        source=lead.source, source_label=Source(lead.source).label, stage=lead.stage,
        stage_label=Stage(lead.stage).label, owner_id=str(lead.owner_id or ""),
        owner=owner.name if owner else "Unassigned", deal_value=f"{lead.deal_value:.2f}",
        value_label=money(lead.deal_value), score=lead.score, tier=lead.tier, tier_label=tier.label,
        # The queue's fresh signal is the one thing that earns "call within the hour"; a closed deal
        # asks nothing of anyone ("Cold: leave to marketing" on a won deal read as nonsense).
        tier_advice=(f"{Stage(lead.stage).label}: closed, nothing to do" if Stage(lead.stage).is_closed
                     else fresh_signal(session, lead.id, now) or tier.advice),
        reasons=[ReasonRow(points=x["points"], text=x["text"]) for x in lead.score_reasons],
        days_in_stage=max(0, (now - lead.stage_entered_at).days), created=_stamp(lead.created_at),
        version=lead.version,
        custom_fields=[[str(k), str(v)] for k, v in sorted((lead.custom_fields or {}).items())],
        timeline=[entry for _, entry in timeline[:TIMELINE_LIMIT]],
        risk_level=lead.risk_level or "",
        risk_label=RiskLevel(lead.risk_level).label if lead.risk_level else "",
        risk_points=lead.risk_points or 0,
        risk_reasons=[ReasonRow(points=x["points"], text=x["text"]) for x in lead.risk_reasons or []],
        lost_reason=": ".join(part for part in (lead.lost_reason, lead.lost_note) if part),
    )


@dataclass(frozen=True)
class LeadEdit:
    """What the edit form sends: text as typed; `update_lead` validates and converts."""

    name: str
    email: str = ""
    phone: str = ""
    title: str = ""
    company: str = ""
    company_size: str = ""
    deal_value: str = "0"
    source: str = Source.WEBSITE.value
    owner_id: str = ""


# The longest text each field of the lead form may hold: the leads table's column lengths
# (db/models.py), which the inputs' max_length and the messages repeat.
LEAD_TEXT_LIMITS = {"name": 200, "email": 254, "phone": 40, "title": 120, "company": 200}
MAX_COMPANY_SIZE = 10_000_000


def validated_edit(edit: LeadEdit) -> dict:
    """The edit's values checked and converted for the leads table (the lead page's edit and the
    quick-add form share these rules); otherwise InvalidInput with every bad field in `errors`."""
    errors: dict[str, str] = {}
    labels = {"name": "Name", "email": "Email", "phone": "Phone", "title": "Title", "company": "Company"}
    for field, limit in LEAD_TEXT_LIMITS.items():
        if len(getattr(edit, field).strip()) > limit:
            errors[field] = f"{labels[field]} is too long (max {limit} characters)."
    name = edit.name.strip()
    if not name:
        errors["name"] = "Name is required."
    email = edit.email.strip().lower() or None
    if email and "email" not in errors and not EMAIL_RE.match(email):
        errors["email"] = "That is not an email address (like name@company.com)."
    size_text, size = edit.company_size.strip().replace(",", ""), None
    if size_text:
        if not size_text.isdecimal():
            errors["company_size"] = "Company size must be a whole number of employees, 0 or more."
        elif int(size_text) > MAX_COMPANY_SIZE:
            errors["company_size"] = "Company size looks too large."
        else:
            size = int(size_text)
    value = Decimal(0)
    try:
        value = Decimal(edit.deal_value.strip().replace(",", "").lstrip("$") or "0")
    except InvalidOperation:
        errors["deal_value"] = "Deal value must be an amount like 12000 or 12,000.50."
    else:
        if not value.is_finite() or value < 0 or value >= Decimal("1e10"):
            errors["deal_value"] = "Deal value must be between 0 and 9,999,999,999."
    source = None
    try:
        source = Source(edit.source).value
    except ValueError:
        errors["source"] = "Pick a source from the list."
    owner_text = edit.owner_id.strip()
    if owner_text and not owner_text.isdecimal():
        errors["owner_id"] = "Pick an owner from the list."
    if errors:  # in the form's order: the first one named is the first one on the form
        order = [f.name for f in fields(LeadEdit)]
        raise InvalidInput.of_fields(dict(sorted(errors.items(), key=lambda item: order.index(item[0]))))
    owner_id = int(owner_text) if owner_text else None
    return dict(name=name, email=email, phone=edit.phone.strip() or None, title=edit.title.strip() or None,
                company=edit.company.strip() or None, company_size=size,
                deal_value=value.quantize(Decimal("0.01")), source=source, owner_id=owner_id)


def _check_new_owner(session: Session, lead: Lead, owner_id: int | None, actor_id: int | None) -> None:
    """A rep may take a lead for themself (from the pool) or put it back in the pool; giving a lead to
    someone else is a manager's call. Row security refuses it too, but as a database error."""
    if owner_id is None or owner_id == lead.owner_id:
        return
    actor = acting_user(session, actor_id)
    if actor is not None and not actor.is_manager and owner_id != actor.id:
        raise Forbidden("Only a manager can give a lead to someone else. You can take an unassigned lead "
                        "for yourself.")


def update_lead(
    session: Session, *, lead_id: int, edit: LeadEdit, expected_version: int, now: datetime,
    actor_id: int | None = None,
) -> Lead:
    """Validate and save an edit, rescore, commit; the changed fields go to the audit log with their
    old and new values. A stale edit is refused (StaleLead), and a rep giving the lead to someone else
    (Forbidden)."""
    actor_id = recorded_as(session, actor_id, "edit a lead")
    values = validated_edit(edit)
    lead = lock_lead(session, lead_id, expected_version)  # first: a lead one may not see is NotFound
    if values["owner_id"] is not None and session.get(User, values["owner_id"]) is None:
        raise InvalidInput("That owner does not exist any more.", field="owner_id")
    _check_new_owner(session, lead, values["owner_id"], actor_id)
    old, new = audit.changed({key: getattr(lead, key) for key in values}, values)
    for key, value in values.items():
        setattr(lead, key, value)
    bump_version(lead, now)
    if new:
        audit.record(session, now=now, actor_id=actor_id, action="lead_edited", entity="lead", entity_id=lead.id,
                     lead_id=lead.id, old=old, new=new)
    try:
        rescore_lead(session, lead, now)  # flushes: a duplicate email surfaces here
        session.commit()
    except IntegrityError as error:
        session.rollback()
        if "uq_leads_email" in str(error.orig):
            raise InvalidInput("Another lead already has this email.", field="email") from None
        raise
    return lead
