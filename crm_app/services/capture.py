"""Lead capture and activity events from outside the CRM (websites, forms, email tools): what the
REST API writes. Every call is all or nothing inside the caller's transaction, and rescores the
leads it touched in that same transaction, so a score never lags what is stored.

The caller's session acts as the API key's user (row-level security): a lead that user may not see
is "not found" here, exactly as on the pages.

A key acting as a rep does no more than the rep may do on the pages: it updates and claims the
leads the rep sees and logs what a rep logs by hand (REP_LOGGED_KINDS). It creates no lead, so a
lead in another rep's book answers exactly like one that does not exist: with email unique across
the team, "create if missing" would tell the rep that someone else has this person. (The quick-add
form does let a rep add a lead, and says only that the email is taken; a script driving the API
could ask that of thousands of addresses a minute, so the API does not answer it at all.) And it
reports no prospect-side events (a pricing or demo request), which would let a rep push their own
leads Hot. Systems that report what prospects do (website
forms, email tools) use a key acting as a manager or admin, which sees the whole team: new leads
go to the pool or to the `owner_email` they name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Text, func, or_, select
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from crm_app.db.models import Lead, User
from crm_app.domain import EMAIL_RE, REP_LOGGED_KINDS, ActivityKind, Role, Source
from crm_app.services import audit
from crm_app.services.errors import Conflict, Forbidden, InvalidFields, InvalidInput, MissingFields
from crm_app.services.importing import MAX_DEAL_VALUE, MAX_LENGTHS
from crm_app.services.leads import add_activity, bump_version, check_activity
from crm_app.services.permissions import CurrentUser
from crm_app.services.risk import reassess_risk_in_transaction
from crm_app.services.scoring import rescore_leads_in_transaction

MAX_BATCH = 1000
# Fields an upsert may set, with their longest allowed text (None: not text); the same limits as import.
LEAD_FIELDS: dict[str, int | None] = {
    **MAX_LENGTHS, "company_size": None, "source": None, "deal_value": None, "custom_fields": None,
}
MAX_CUSTOM_FIELDS = 100
EVENT_ALIASES = {"email_replied": "email_received"}
# What the prospect does (the rest a rep logs by hand): only a manager's or admin's key reports these.
PROSPECT_KINDS = frozenset(k.value for k in ActivityKind) - {k.value for k in REP_LOGGED_KINDS}


@dataclass(frozen=True)
class LeadRef:
    """Which lead an event is about: its id, external id or email (the first one given)."""

    lead_id: int | None = None
    external_id: str | None = None
    email: str | None = None

    def describe(self) -> str:
        if self.lead_id is not None:
            return f"id {self.lead_id}"
        if self.external_id:
            return f"external id {self.external_id!r}"
        return f"email {self.email!r}"


@dataclass(frozen=True)
class EventInput:
    lead: LeadRef
    type: str
    occurred_at: datetime | None = None
    subject: str | None = None
    body: str | None = None
    play: str | None = None


@dataclass(frozen=True)
class UpsertResult:
    lead_id: int
    created: bool
    changed: tuple[str, ...]


@dataclass
class EventsResult:
    lead_ids: list[int] = field(default_factory=list)  # per event, in the order sent


# --- Leads -----------------------------------------------------------------------------------------


def _text(value: Any, name: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be text.", field=name)
    value = value.strip()
    if len(value) > limit:
        raise InvalidInput(f"{name} is too long (max {limit} characters).", field=name)
    return value or None


def _clean_lead_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Check and tidy the fields an upsert sets (only those sent). InvalidInput names the field."""
    unknown = sorted(set(fields) - set(LEAD_FIELDS) - {"owner_email"})
    if unknown:
        raise InvalidInput(f"Unknown field {unknown[0]!r}.", field=unknown[0])
    clean: dict[str, Any] = {}
    for name, value in fields.items():
        limit = LEAD_FIELDS.get(name)
        if limit is not None:
            clean[name] = _text(value, name, limit)
        else:
            clean[name] = value
    if "name" in clean and not clean["name"]:
        raise InvalidInput("name cannot be blank.", field="name")
    if clean.get("email") and not EMAIL_RE.match(clean["email"]):
        raise InvalidInput("email is not an email address (like name@company.com).", field="email")
    if "company_size" in clean and clean["company_size"] is not None:
        size = clean["company_size"]
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= 10_000_000:
            raise InvalidInput("company_size is a whole number of employees, 0 or more.", field="company_size")
    if "source" in clean:
        try:
            clean["source"] = Source(clean["source"]).value
        except ValueError:
            raise InvalidInput(f"source must be one of: {', '.join(s.value for s in Source)}.", field="source") from None
    if "deal_value" in clean:
        value = clean["deal_value"]
        try:
            amount = Decimal(str(value if value is not None else 0))
        except ArithmeticError:
            raise InvalidInput("deal_value is an amount, like 12000 or 12000.50.", field="deal_value") from None
        if not amount.is_finite() or amount < 0 or amount > MAX_DEAL_VALUE:
            raise InvalidInput(f"deal_value must be between 0 and {MAX_DEAL_VALUE:,}.", field="deal_value")
        clean["deal_value"] = amount.quantize(Decimal("0.01"))
    if "custom_fields" in clean:
        custom = clean["custom_fields"] or {}
        if not isinstance(custom, dict) or len(custom) > MAX_CUSTOM_FIELDS:
            raise InvalidInput(f"custom_fields is an object with at most {MAX_CUSTOM_FIELDS} keys.",
                               field="custom_fields")
        for key, value in custom.items():
            if len(key) > 100 or not isinstance(value, (str, int, float, bool, type(None))) or (
                    isinstance(value, str) and len(value) > 2000):
                raise InvalidInput(f"custom_fields.{key[:100]}: use a short text, number or true/false.",
                                   field=f"custom_fields.{key[:100]}")
        clean["custom_fields"] = custom
    return clean


def _owner(session: Session, actor: CurrentUser, owner_email: str | None) -> int | None:
    """The owner an upsert names (None: the unassigned pool), checked against the actor's role."""
    if owner_email is None:
        return None
    user = session.execute(
        select(User).where(func.lower(User.email) == owner_email.strip().lower())
    ).scalars().first()
    if user is None or not user.is_active:
        raise MissingFields("The owner is not on the team; nothing was saved.",
                            [("owner_email", f"Nobody active on the team has the email {owner_email!r}.")])
    if actor.role is Role.REP and user.id != actor.id:
        raise Forbidden("A rep's key can give leads only to that rep or leave them in the pool.")
    return user.id


def _find_lead(session: Session, external_id: str | None, email: str | None) -> Lead | None:
    """The lead to update: matched on external id, else on email (case-insensitive), locked."""
    if external_id:
        lead = session.execute(select(Lead).where(Lead.external_id == external_id).with_for_update()).scalars().first()
        if lead is not None:
            return lead
    if email:
        return session.execute(select(Lead).where(_email_in([email])).with_for_update()).scalars().first()
    return None


def _email_in(emails: list[str]):
    """Leads with one of these emails (any case), found through the lower(email) index by
    crm_lead_ids_by_email (migration 0013): under row-level security `lower(email) = ...` is not
    leakproof, so PostgreSQL would read every visible lead first."""
    return Lead.id.in_(select(func.crm_lead_ids_by_email(array([e.lower() for e in emails], type_=Text))))


def upsert_leads(
    session: Session, actor: CurrentUser, items: Sequence[dict[str, Any]], *, now: datetime, via: str,
    batch: bool = False,
) -> list[UpsertResult]:
    """Create or update leads matched on external id, then email. Only the fields sent change.
    A new lead needs a name; it goes to the rep whose key sent it, or to the pool for a manager's
    key, unless `owner_email` says otherwise. No commit: the caller commits (or rolls back).
    Errors name the item (`leads[i].field` in a batch): InvalidFields for bad values, Conflict for a
    duplicate the user may not see."""
    if len(items) > MAX_BATCH:
        raise InvalidFields("Too many leads in one request.", [("leads", f"Send at most {MAX_BATCH:,} at a time.")])
    errors: list[tuple[str, str]] = []
    cleaned = []
    for index, item in enumerate(items):
        prefix = f"leads[{index}]." if batch else ""
        try:
            fields = _clean_lead_fields(item)
            if not fields.get("external_id") and not fields.get("email"):
                raise InvalidInput("Send an email or an external_id to match the lead on.", field="email")
            cleaned.append(fields)
        except InvalidInput as error:
            errors.append((prefix + (error.field or "lead"), str(error)))
    if errors:
        raise InvalidFields("Some leads are not valid; nothing was saved.", errors)

    results = []
    for index, fields in enumerate(cleaned):
        prefix = f"leads[{index}]." if batch else ""
        try:
            results.append(_upsert_one(session, actor, fields, now=now, via=via))
        except InvalidInput as error:
            raise InvalidFields("Some leads are not valid; nothing was saved.",
                                [(prefix + (error.field or "lead"), str(error))]) from None
        except Conflict as error:
            raise Conflict(str(error), field=prefix + (error.field or "email")) from None
        except MissingFields as error:
            raise MissingFields(str(error), [(prefix + f, m) for f, m in error.errors]) from None
    touched = [r.lead_id for r in results if r.created or r.changed]  # an unchanged lead keeps its score
    rescore_leads_in_transaction(session, touched, now)
    reassess_risk_in_transaction(session, touched, now)
    return results


def _upsert_one(session: Session, actor: CurrentUser, fields: dict[str, Any], *, now: datetime, via: str) -> UpsertResult:
    owner_sent = "owner_email" in fields
    owner_id = _owner(session, actor, fields.pop("owner_email")) if owner_sent else None
    lead = _find_lead(session, fields.get("external_id"), fields.get("email"))
    if lead is None and actor.role is Role.REP:
        # The same answer whether the lead is nowhere or in another rep's book (see the module docstring).
        which = "external_id" if fields.get("external_id") else "email"
        raise MissingFields(
            f"There is no such lead that {actor.name} can see; nothing was saved.",
            [(which, f"No lead {actor.name} can see has this {which.replace('_', ' ')}. A rep's key "
                     "changes the rep's own leads and the pool; new leads come in through a key acting "
                     "as a manager or admin.")],
        )
    try:
        with session.begin_nested():
            if lead is None:
                if not fields.get("name"):
                    raise InvalidInput("A new lead needs a name.", field="name")
                if not owner_sent and actor.role is Role.REP:
                    owner_id = actor.id
                custom = fields.pop("custom_fields", None) or {}
                lead = Lead(**{"source": Source.WEBSITE.value, **fields}, custom_fields=custom, owner_id=owner_id,
                            stage="new", created_at=now, updated_at=now, stage_entered_at=now,
                            score=0, tier="cold")
                session.add(lead)
                session.flush()
                audit.record(session, now=now, actor_id=actor.id, action="lead_created", entity="lead",
                             entity_id=lead.id, lead_id=lead.id,
                             new={**{k: v for k, v in fields.items() if v is not None}, "owner_id": owner_id, "via": via})
                return UpsertResult(lead.id, True, tuple(sorted(fields)))
            values = dict(fields)
            if values.get("email") and lead.email and values["email"].lower() == lead.email.lower():
                del values["email"]  # matched case-insensitively: the stored spelling stays
            if "custom_fields" in values:
                values["custom_fields"] = {**(lead.custom_fields or {}), **values["custom_fields"]}
            old, new = audit.changed({key: getattr(lead, key) for key in values}, values)
            owner_changed = owner_sent and owner_id != lead.owner_id
            if owner_changed:
                if actor.role is Role.REP and lead.owner_id not in (None, actor.id):
                    raise Forbidden("A rep's key cannot take a lead from another rep.")
                claimed = owner_id == actor.id and lead.owner_id is None
                audit.record(session, now=now, actor_id=actor.id,
                             action="lead_claimed" if claimed else "lead_reassigned", entity="lead",
                             entity_id=lead.id, lead_id=lead.id,
                             old={"owner_id": lead.owner_id}, new={"owner_id": owner_id, "via": via})
                lead.owner_id = owner_id
            if not new and not owner_changed:
                return UpsertResult(lead.id, False, ())
            for key, value in values.items():
                setattr(lead, key, value)
            bump_version(lead, now)
            if new:
                audit.record(session, now=now, actor_id=actor.id, action="lead_edited", entity="lead",
                             entity_id=lead.id, lead_id=lead.id, old=old, new={**new, "via": via})
            session.flush()
            return UpsertResult(lead.id, False, tuple(sorted([*new, *(["owner"] if owner_changed else [])])))
    except IntegrityError as error:
        # Changing a lead's email or external id to one another lead has: refused as on the lead's page,
        # without saying whose it is (email and external id are unique across the team).
        which = "external_id" if "uq_leads_external_id" in str(error.orig) else "email"
        raise Conflict(f"Another lead already has this {which.replace('_', ' ')}.", field=which) from None


# --- Events ----------------------------------------------------------------------------------------


def _ref_error(ref: LeadRef) -> str | None:
    given = [v for v in (ref.lead_id, ref.external_id, ref.email) if v not in (None, "")]
    if not given:
        return "Say which lead: lead_id, external_id or email."
    return None


def record_events(
    session: Session, actor: CurrentUser, events: Sequence[EventInput], *, now: datetime, batch: bool = False,
) -> EventsResult:
    """Add activity events to their leads and rescore each lead once, all in the caller's transaction
    (no commit). Every event is checked first; one bad event refuses the whole batch, naming it."""
    if not events:
        raise InvalidFields("No events.", [("events", "Send at least one event.")])
    if len(events) > MAX_BATCH:
        raise InvalidFields("Too many events.", [("events", f"Send at most {MAX_BATCH:,} events at a time.")])
    single = not batch
    errors: list[tuple[str, str]] = []
    checked = []
    for index, event in enumerate(events):
        prefix = "" if single else f"events[{index}]."
        kind = EVENT_ALIASES.get(event.type, event.type)
        if actor.role is Role.REP and kind in PROSPECT_KINDS:
            raise Forbidden(
                f"{prefix}type: a rep's key records only what a rep logs by hand (call, email_sent, meeting, "
                f"note, email_replied); '{event.type}' is something the prospect did: report it with a key "
                "acting as a manager or admin. Nothing was saved.")
        problem = _ref_error(event.lead)
        if problem:
            errors.append((prefix + "lead", problem))
        try:
            checked.append(check_activity(kind=EVENT_ALIASES.get(event.type, event.type), now=now,
                                          occurred_at=event.occurred_at, subject=event.subject, body=event.body,
                                          play=event.play))
        except InvalidInput as error:
            field_name = "type" if error.field == "kind" else (error.field or "event")
            errors.append((prefix + field_name, str(error)))
    if errors:
        raise InvalidFields("Some events are not valid; nothing was saved.", errors)

    leads = _LeadIndex(_locked_leads(session, [e.lead for e in events]))
    result = EventsResult()
    for index, (event, activity) in enumerate(zip(events, checked)):
        lead = leads.match(event.lead)
        if lead is None:
            errors.append(("lead" if single else f"events[{index}].lead",
                           f"There is no lead with {event.lead.describe()} that {actor.name} can see."))
            continue
        add_activity(session, lead, activity, now=now, user_id=None)
        result.lead_ids.append(lead.id)
    if errors:
        raise MissingFields("Some events name leads that do not exist; nothing was saved.", errors)
    session.flush()
    touched = sorted(set(result.lead_ids))
    rescore_leads_in_transaction(session, touched, now)
    reassess_risk_in_transaction(session, touched, now)
    return result


def _locked_leads(session: Session, refs: list[LeadRef]) -> list[Lead]:
    """Every lead the refs name that the acting user can see, locked in id order (so two batches
    touching the same leads queue up instead of deadlocking)."""
    ids = {r.lead_id for r in refs if r.lead_id is not None}
    external = {r.external_id for r in refs if r.lead_id is None and r.external_id}
    emails = {r.email.lower() for r in refs if r.lead_id is None and not r.external_id and r.email}
    conditions = []
    if ids:
        conditions.append(Lead.id.in_(ids))
    if external:
        conditions.append(Lead.external_id.in_(external))
    if emails:
        conditions.append(_email_in(list(emails)))
    if not conditions:
        return []
    return list(session.execute(select(Lead).where(or_(*conditions)).order_by(Lead.id).with_for_update()).scalars())


class _LeadIndex:
    """The locked leads by id, external id and lower-case email, to match each event in O(1)."""

    def __init__(self, leads: list[Lead]):
        self.by_id = {lead.id: lead for lead in leads}
        self.by_external = {lead.external_id: lead for lead in leads if lead.external_id}
        self.by_email = {lead.email.lower(): lead for lead in leads if lead.email}

    def match(self, ref: LeadRef) -> Lead | None:
        if ref.lead_id is not None:
            return self.by_id.get(ref.lead_id)
        if ref.external_id:
            return self.by_external.get(ref.external_id)
        return self.by_email.get((ref.email or "").lower())
