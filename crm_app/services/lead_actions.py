"""A rep's everyday actions on leads: add one, claim from the pool or return to it, and act on many
selected leads at once (move stage, snooze), plus the leads table's inline edit.

Every action works on the leads the session may see: under row-level security (AppState._db) a rep's
selection can only reach their own leads and the pool, whatever ids a browser sends. Bulk actions are
set-based (one UPDATE for the selection) and say how many changed and why the others were skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from crm_app.db.models import Lead, StageChange, User
from crm_app.domain import Stage
from crm_app.services import audit
from crm_app.services.errors import Forbidden, InvalidInput, NotFound
from crm_app.services.lead_detail import LeadEdit, update_lead, validated_edit
from crm_app.services.leads import check_closing, move_lead_to_stage
from crm_app.services.permissions import CurrentUser, acting_user
from crm_app.services.queue import snooze_time
from crm_app.services.risk import reassess_risk_in_transaction
from crm_app.services.scoring import rescore_lead, rescore_leads_in_transaction

MAX_SELECTION = 500
DUPLICATE_EMAIL = "Another lead already has this email."
NOT_VISIBLE = "no longer visible to you"


@dataclass(frozen=True)
class BulkOutcome:
    """How many of the selected leads changed, and how many were skipped for each reason."""

    changed: int
    skipped: dict[str, int] = field(default_factory=dict)
    # A bulk move's (lead id, stage it left, version right after the move): what its Undo needs.
    moved: tuple[tuple[int, str, int], ...] = ()

    def summary(self, done: str) -> str:
        """'Claimed 3 leads; skipped 2: 1 already yours, 1 owned by someone else.'"""
        text = f"{done} {self.changed} lead{'' if self.changed == 1 else 's'}"
        if not self.skipped:
            return text + "."
        reasons = ", ".join(f"{count} {reason}" for reason, count in self.skipped.items())
        return f"{text}; skipped {sum(self.skipped.values())}: {reasons}."


def _actor(session: Session, actor_id: int | None, doing: str) -> CurrentUser:
    actor = acting_user(session, actor_id)
    if actor is None:
        raise Forbidden(f"Sign in to {doing}.")
    return actor


def _selection(lead_ids: list[int]) -> list[int]:
    ids = list(dict.fromkeys(int(i) for i in lead_ids))
    if not ids:
        raise InvalidInput("Select at least one lead.", field="selection")
    if len(ids) > MAX_SELECTION:
        raise InvalidInput(f"Select at most {MAX_SELECTION} leads at a time.", field="selection")
    return ids


def _stage(value: Stage | str) -> Stage:
    try:
        return Stage(value)
    except ValueError:
        raise InvalidInput("Pick a stage from the list.", field="stage") from None


def _skipped(**counts: int) -> dict[str, int]:
    return {reason.replace("_", " "): n for reason, n in counts.items() if n}


def _locked(session: Session, ids: list[int], *columns) -> list:
    """The selected leads the session may see, locked for this transaction, in id order (so two
    bulk actions over overlapping selections queue up instead of deadlocking)."""
    return session.execute(
        select(Lead.id, *columns).where(Lead.id.in_(ids)).order_by(Lead.id).with_for_update()
    ).all()


# --- Adding a lead ---------------------------------------------------------------------------------


def check_owner_choice(session: Session, actor: CurrentUser | None, owner_id: int | None) -> None:
    """What the owner select may offer: a rep gives a new lead to themself or the pool; a manager to
    anyone active on the team."""
    if owner_id is None:
        return
    user = session.get(User, owner_id)
    if user is None or not user.is_active:
        raise InvalidInput("That owner is not active on the team: pick one from the list.", field="owner_id")
    if actor is not None and not actor.is_manager and owner_id != actor.id:
        raise Forbidden("A rep adds leads for themself or the unassigned pool; a manager gives leads to others.")


def create_lead(session: Session, *, edit: LeadEdit, stage: Stage | str = Stage.NEW, now: datetime,
                actor_id: int | None = None) -> Lead:
    """Add a lead from the quick-add form: the lead page's edit rules, an owner the actor's role may
    choose, its creation in the stage history and the audit log, scored at once; commits.
    A duplicate email is refused without saying whose lead has it."""
    values = validated_edit(edit)
    to_stage = _stage(stage)
    actor = acting_user(session, actor_id)
    check_owner_choice(session, actor, values["owner_id"])
    lead = Lead(**values, stage=to_stage.value, created_at=now, updated_at=now, stage_entered_at=now,
                closed_at=now if to_stage.is_closed else None, score=0, tier="cold", custom_fields={})
    session.add(lead)
    try:
        session.flush()
    except IntegrityError as error:
        session.rollback()
        if "uq_leads_email" in str(error.orig):
            # The unique index spans every lead, also those this user may not see: say only that.
            raise InvalidInput(DUPLICATE_EMAIL, field="email") from None
        raise
    actor_id = actor.id if actor else None
    session.add(StageChange(lead_id=lead.id, from_stage=None, to_stage=to_stage.value, changed_at=now,
                            user_id=actor_id))
    audit.record(session, now=now, actor_id=actor_id, action="lead_created", entity="lead", entity_id=lead.id,
                 lead_id=lead.id, new={**{k: v for k, v in values.items() if v is not None},
                                       "stage": to_stage.value, "via": "app"})
    result = rescore_lead(session, lead, now)
    if to_stage.is_closed:
        lead.score_at_close = result.score
    session.commit()
    return lead


# --- Claiming and returning --------------------------------------------------------------------------


def claim_leads(session: Session, *, lead_ids: list[int], now: datetime, actor_id: int | None = None) -> BulkOutcome:
    """The acting user takes the selected leads that are in the unassigned pool; commits. Leads that
    already have an owner are skipped (a rep cannot take another rep's lead)."""
    actor = _actor(session, actor_id, "claim leads")
    ids = _selection(lead_ids)
    rows = _locked(session, ids, Lead.owner_id)
    claimable = [r.id for r in rows if r.owner_id is None]
    if claimable:
        session.execute(update(Lead).where(Lead.id.in_(claimable), Lead.owner_id.is_(None))
                        .values(owner_id=actor.id, version=Lead.version + 1, updated_at=now))
    for lead_id in claimable:
        audit.record(session, now=now, actor_id=actor.id, action="lead_claimed", entity="lead", entity_id=lead_id,
                     lead_id=lead_id, old={"owner_id": None}, new={"owner_id": actor.id})
    session.commit()
    return BulkOutcome(len(claimable), _skipped(
        already_yours=sum(r.owner_id == actor.id for r in rows),
        owned_by_someone_else=sum(r.owner_id not in (None, actor.id) for r in rows),
        **{NOT_VISIBLE.replace(" ", "_"): len(ids) - len(rows)},
    ))


def return_to_pool(session: Session, *, lead_ids: list[int], now: datetime,
                   actor_id: int | None = None) -> BulkOutcome:
    """The acting user puts their own selected leads back in the unassigned pool; commits. Someone
    else's lead is skipped (a manager reassigns those)."""
    actor = _actor(session, actor_id, "return leads to the pool")
    ids = _selection(lead_ids)
    rows = _locked(session, ids, Lead.owner_id)
    mine = [r.id for r in rows if r.owner_id == actor.id]
    if mine:
        session.execute(update(Lead).where(Lead.id.in_(mine), Lead.owner_id == actor.id)
                        .values(owner_id=None, version=Lead.version + 1, updated_at=now))
    for lead_id in mine:
        audit.record(session, now=now, actor_id=actor.id, action="lead_returned", entity="lead", entity_id=lead_id,
                     lead_id=lead_id, old={"owner_id": actor.id}, new={"owner_id": None})
    session.commit()
    return BulkOutcome(len(mine), _skipped(
        already_in_the_pool=sum(r.owner_id is None for r in rows),
        owned_by_someone_else=sum(r.owner_id not in (None, actor.id) for r in rows),
        **{NOT_VISIBLE.replace(" ", "_"): len(ids) - len(rows)},
    ))


# --- Acting on a selection -------------------------------------------------------------------------


def move_leads_to_stage(session: Session, *, lead_ids: list[int], to_stage: Stage | str, now: datetime,
                        actor_id: int | None = None, lost_reason: str | None = None,
                        lost_note: str | None = None, closed_at: datetime | None = None) -> BulkOutcome:
    """Move the selected leads to one stage in one statement: a stage-history row and an audit entry
    each, rescored (and risk reassessed) in the same transaction; commits. A move to Lost records
    one reason (and note) for all of them; a move to Won or Lost may give the day they closed
    (`closed_at`, not in the future; a lead that arrived later closes the day it arrived)."""
    actor = _actor(session, actor_id, "move leads")
    ids, stage = _selection(lead_ids), _stage(to_stage)
    # Each lead's own arrival bounds its close day in the UPDATE below, not a sample lead here.
    closing = check_closing(Lead(created_at=None), stage, now=now, lost_reason=lost_reason, lost_note=lost_note,
                            closed_at=closed_at)
    rows = _locked(session, ids, Lead.stage)
    moving = [r for r in rows if r.stage != stage.value]
    if moving:
        moved = [r.id for r in moving]
        session.execute(insert(StageChange), [
            {"lead_id": r.id, "from_stage": r.stage, "to_stage": stage.value, "changed_at": now, "user_id": actor.id}
            for r in moving
        ])
        # score_at_close is filled in by the rescore below for a lead that closes now.
        versions = dict(session.execute(update(Lead).where(Lead.id.in_(moved)).values(
            stage=stage.value, stage_entered_at=now,
            closed_at=(func.greatest(closing.closed_at, Lead.created_at) if closing.closed_at else now)
            if stage.is_closed else None,
            lost_reason=closing.lost_reason, lost_note=closing.lost_note,
            score_at_close=None, version=Lead.version + 1, updated_at=now).returning(Lead.id, Lead.version)).all())
        for r in moving:
            audit.record(session, now=now, actor_id=actor.id, action="stage_moved", entity="lead", entity_id=r.id,
                         lead_id=r.id, old={"stage": r.stage}, new={"stage": stage.value, **closing.changes()})
        rescore_leads_in_transaction(session, moved, now)
        reassess_risk_in_transaction(session, moved, now)
    session.commit()
    return BulkOutcome(len(moving), _skipped(
        already_in_that_stage=len(rows) - len(moving),
        **{NOT_VISIBLE.replace(" ", "_"): len(ids) - len(rows)},
    ), moved=tuple((r.id, r.stage, versions[r.id]) for r in moving))


def snooze_leads(session: Session, *, lead_ids: list[int], choice: str, now: datetime,
                 actor_id: int | None = None) -> BulkOutcome:
    """Hide the selected open leads from the action queue until the snooze choice ends (the queue's
    own choices: in an hour, tomorrow 9:00, next week); commits. Closed deals are skipped."""
    _actor(session, actor_id, "snooze leads")
    ids, until = _selection(lead_ids), snooze_time(choice, now)
    rows = _locked(session, ids, Lead.stage)
    open_ids = [r.id for r in rows if not Stage(r.stage).is_closed]
    if open_ids:
        session.execute(update(Lead).where(Lead.id.in_(open_ids))
                        .values(snoozed_until=until, version=Lead.version + 1, updated_at=now))
    session.commit()
    return BulkOutcome(len(open_ids), _skipped(
        closed_deals=len(rows) - len(open_ids),
        **{NOT_VISIBLE.replace(" ", "_"): len(ids) - len(rows)},
    ))


# --- The leads table's inline edit -------------------------------------------------------------------

INLINE_FIELDS = ("stage", "deal_value", "owner_id")


def edit_of(lead: Lead) -> LeadEdit:
    """The lead as the edit form would show it (text as typed)."""
    text = lambda value: "" if value is None else str(value)  # noqa: E731
    return LeadEdit(name=lead.name, email=text(lead.email), phone=text(lead.phone), title=text(lead.title),
                    company=text(lead.company), company_size=text(lead.company_size),
                    deal_value=f"{lead.deal_value:.2f}", source=lead.source, owner_id=text(lead.owner_id))


def edit_inline(session: Session, *, lead_id: int, expected_version: int, changes: dict[str, str], now: datetime,
                actor_id: int | None = None) -> Lead:
    """Save a row's stage, deal value and owner as the lead page would: the same validation, owner rules
    and refusal of a stale version (StaleLead when someone changed the lead since the row was read).
    Value and owner are saved first, then the stage move, each with its own history."""
    unknown = sorted(set(changes) - set(INLINE_FIELDS))
    if unknown:
        raise InvalidInput(f"{unknown[0]} cannot be edited in the table.", field=unknown[0])
    stage = _stage(changes["stage"]) if "stage" in changes else None
    lead = session.get(Lead, lead_id)
    if lead is None:
        raise NotFound(f"Lead {lead_id} no longer exists.")
    current = edit_of(lead)
    edit = LeadEdit(**{**current.__dict__, **{k: v for k, v in changes.items() if k != "stage"}})
    version = expected_version
    if validated_edit(edit) != validated_edit(current):
        lead = update_lead(session, lead_id=lead_id, edit=edit, expected_version=version, now=now, actor_id=actor_id)
        version = lead.version
    if stage is not None and stage.value != lead.stage:
        lead = move_lead_to_stage(session, lead_id=lead_id, to_stage=stage, now=now, user_id=actor_id,
                                  expected_version=version)
    return lead
