"""What the REST API accepts and answers, as Pydantic models: they are the OpenAPI schema too.

Types and sizes are checked here (a wrong type answers 422 naming the field); the services check the
rules that need the database. Text is stored as sent and is never interpreted as markup or SQL.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_validator,
)

from pydantic_core import PydanticCustomError

from crm_app.domain import ActivityKind, Play, Source, Stage, Tier
from crm_app.services.capture import MAX_BATCH, MAX_DEAL_VALUE

EventType = StrEnum("EventType", {k.value: k.value for k in ActivityKind} | {"email_replied": "email_replied"})
SourceName = StrEnum("SourceName", {s.value: s.value for s in Source})
StageName = StrEnum("StageName", {s.value: s.value for s in Stage})
TierName = StrEnum("TierName", {t.value: t.value for t in Tier})
PlayName = StrEnum("PlayName", {p.value: p.value for p in Play})

# PostgreSQL text cannot hold NUL characters: refused by the schema itself, like any other rule.
NO_NUL = r"^[^\x00]*$"
# Not blank and no NUL: `\S` alone would take a NUL as the one visible character.
NOT_BLANK_NO_NUL = r"^[^\x00]*[^\s\x00][^\x00]*$"
Text = Annotated[str, Field(pattern=NO_NUL)]
CustomValue = Annotated[str, Field(max_length=2000, pattern=NO_NUL)] | StrictInt | StrictFloat | StrictBool | None


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc)


def _iso_text(value: Any) -> Any:
    """Times are ISO 8601 text: a bare number (which Pydantic would take as Unix seconds) is refused."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and re.fullmatch(r"\s*[-+]?[\d.]+\s*", value)):
        raise ValueError("Use an ISO 8601 time with a time zone, like 2026-11-25T09:30:00Z.")
    return value


# A moment with its time zone (an offset within +-15:59, as PostgreSQL stores), kept in UTC.
Moment = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(_utc)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _one_of_required(*names: str) -> dict[str, Any]:
    """JSON Schema: at least one of these properties is present and not null."""
    return {"anyOf": [{"required": [name], "properties": {name: {"not": {"type": "null"}}}} for name in names]}


Email = Annotated[str, Field(max_length=254, pattern=r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$",
                             examples=["ada@example.com"])]
ExternalId = Annotated[str, Field(min_length=1, max_length=120, pattern=NOT_BLANK_NO_NUL)]


class LeadUpsert(_Strict):
    """Create a lead, or update the one with this external_id (else this email). Only the fields
    sent are changed; send `null` to clear one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_of_required("email", "external_id"))

    external_id: Annotated[ExternalId | None, Field(description="Your system's id for the lead.")] = None
    email: Email | None = None
    name: Annotated[str | None, Field(min_length=1, max_length=200, pattern=NOT_BLANK_NO_NUL,
                                      description="Required for a new lead.")] = None
    phone: Annotated[Text | None, Field(max_length=40)] = None
    title: Annotated[Text | None, Field(max_length=120)] = None
    company: Annotated[Text | None, Field(max_length=200)] = None
    company_size: Annotated[int | None, Field(ge=0, le=10_000_000, description="Employees.")] = None
    source: Annotated[SourceName | None, Field(description="The channel; a new lead without one is 'website'.")] = None
    deal_value: Annotated[Decimal | None, Field(ge=0, le=MAX_DEAL_VALUE, max_digits=12,
                                                decimal_places=2)] = None
    owner_email: Annotated[Email | None, Field(
        description="Give the lead to this teammate; null puts it in the unassigned pool. A new lead "
                    "without it goes to the key's user if a rep, else to the pool.")] = None
    custom_fields: Annotated[dict[Annotated[str, Field(max_length=100, pattern=NO_NUL)], CustomValue] | None,
                             Field(max_length=100, description="Merged into the stored custom fields.")] = None

    @model_validator(mode="after")
    def _can_be_matched(self) -> LeadUpsert:
        if not self.email and not self.external_id:
            raise PydanticCustomError("match_key", "Send an email or an external_id to match the lead on.",
                                      {"field": "email"})
        return self


class LeadBatch(_Strict):
    leads: Annotated[list[LeadUpsert], Field(min_length=1, max_length=MAX_BATCH)]


class LeadRefIn(_Strict):
    """Which lead: its CRM id, your external_id, or its email (the first one given is used)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_of_required("id", "external_id", "email"))

    id: Annotated[int | None, Field(ge=1, le=2_147_483_647)] = None
    external_id: ExternalId | None = None
    email: Email | None = None

    @model_validator(mode="after")
    def _names_a_lead(self) -> LeadRefIn:
        if self.id is None and not self.external_id and not self.email:
            raise PydanticCustomError("lead_ref", "Say which lead: id, external_id or email.")
        return self


class EventIn(_Strict):
    """Something a prospect did (or a rep logged): it rescores the lead in the same transaction."""

    lead: LeadRefIn
    type: Annotated[EventType, Field(description="email_replied is stored as email_received.")]
    occurred_at: Annotated[Moment | None, Field(description="ISO 8601 with a time zone; default now.")] = None
    subject: Annotated[Text | None, Field(max_length=300, description="Subject line, or the page's URL.")] = None
    body: Annotated[Text | None, Field(max_length=20_000,
                                       description="A reply's text (its tone feeds deal risk).")] = None
    play: Annotated[PlayName | None, Field(description="The sales play or content it was.")] = None


class EventBatch(_Strict):
    events: Annotated[list[EventIn], Field(min_length=1, max_length=MAX_BATCH)]


class StageMove(_Strict):
    stage: StageName
    expected_version: Annotated[int | None, Field(
        ge=1, description="The version you last saw: a lead changed since is refused with 409.")] = None
    lost_reason: Annotated[Text | None, Field(
        max_length=120, description="Why the deal was lost (a move to lost; optional). Analytics counts "
                                    "lost deals by it; the app's own list is in Settings.")] = None
    lost_note: Annotated[Text | None, Field(max_length=500, description="Free text on a move to lost.")] = None


class ReasonOut(BaseModel):
    points: int
    text: str


class OwnerOut(BaseModel):
    id: int
    name: str
    email: str


class LeadOut(BaseModel):
    id: int
    external_id: str | None
    name: str
    email: str | None
    phone: str | None
    title: str | None
    company: str | None
    company_size: int | None
    source: str
    stage: str
    owner: OwnerOut | None
    deal_value: str
    score: int = Field(ge=0, le=100)
    tier: str
    reasons: list[ReasonOut] = Field(description="Why the score is what it is; the points add up to it.")
    scored_at: datetime | None
    score_valid_until: datetime | None
    risk_level: str | None
    risk_points: int | None
    risk_reasons: list[ReasonOut]
    version: int
    created_at: datetime
    updated_at: datetime
    last_activity_at: datetime | None
    last_contacted_at: datetime | None
    closed_at: datetime | None
    custom_fields: dict[str, Any]


class LeadPage(BaseModel):
    items: list[LeadOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")


class UpsertResultOut(BaseModel):
    lead_id: int
    created: bool
    changed: list[str]


class LeadBatchOut(BaseModel):
    results: list[UpsertResultOut]


class ScoreOut(BaseModel):
    id: int
    score: int
    tier: str
    reasons: list[ReasonOut]
    version: int


class EventOut(BaseModel):
    lead: ScoreOut


class EventBatchOut(BaseModel):
    accepted: int
    leads: list[ScoreOut] = Field(description="Each lead the events touched, with its new score.")


class FieldErrorOut(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    status: int
    message: str
    fields: list[FieldErrorOut] = []


class ErrorOut(BaseModel):
    error: ErrorBody


class KeyInfo(BaseModel):
    key_name: str
    scope: str
    acts_as: OwnerOut
    role: str
    rate_per_minute: int
