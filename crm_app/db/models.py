"""Tables. The database enforces the rules too: NOT NULL, FOREIGN KEY, CHECK, UNIQUE, indexes.

Tables are created only by Alembic migrations (alembic/versions), never by `create_all`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    FetchedValue,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import deferred
from sqlmodel import Field, SQLModel

from crm_app.domain import (
    CONTENT_READ_KINDS,
    PLAY_KINDS,
    REQUEST_KINDS,
    ActivityKind,
    Play,
    RiskLevel,
    Role,
    Source,
    Stage,
    Tier,
)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _in(column: str, values) -> str:
    quoted = ", ".join(f"'{v.value}'" for v in values)
    return f"{column} IN ({quoted})"


OPEN_STAGES_FOR_CHECK = [s for s in Stage if not s.is_closed]


def _ts(**kw) -> Any:
    return Column(DateTime(timezone=True), **kw)


# argon2id hash; NULL until a password is set (the user cannot sign in yet). Never the password.
# Deferred: loading a user never reads it, because the app role may not (migration 0016); only the
# tables' owner touches it, when a password is checked or set.
_password_hash = Column("password_hash", Text, nullable=True)


class User(SQLModel, table=True):
    """A teammate. The table also has `has_password` (generated from password_hash, migration 0016),
    the one thing about the hash the app role may read; it is not mapped, so inserts leave it alone."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_in("role", Role), name="ck_users_role"),
        Index("uq_users_email", text("lower(email)"), unique=True),
    )
    __mapper_args__ = {"properties": {"password_hash": deferred(_password_hash)}}

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(sa_column=Column(String(254), nullable=False))
    name: str = Field(sa_column=Column(String(120), nullable=False))
    role: str = Field(sa_column=Column(String(16), nullable=False, server_default="rep"))
    is_active: bool = Field(default=True, nullable=False)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=_ts(nullable=False, server_default=text("now()"))
    )
    password_hash: str | None = Field(default=None, sa_column=_password_hash, repr=False)
    password_changed_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


class Lead(SQLModel, table=True):
    __tablename__ = "leads"
    __table_args__ = (
        CheckConstraint("score BETWEEN 0 AND 100", name="ck_leads_score_range"),
        CheckConstraint(_in("tier", Tier), name="ck_leads_tier"),
        CheckConstraint(
            "tier = CASE WHEN score >= 70 THEN 'hot' WHEN score >= 40 THEN 'warm' ELSE 'cold' END",
            name="ck_leads_tier_matches_score",
        ),
        CheckConstraint(_in("stage", Stage), name="ck_leads_stage"),
        CheckConstraint(_in("source", Source), name="ck_leads_source"),
        CheckConstraint("company_size IS NULL OR company_size >= 0", name="ck_leads_company_size"),
        CheckConstraint("deal_value >= 0", name="ck_leads_deal_value"),
        CheckConstraint("version >= 1", name="ck_leads_version"),
        CheckConstraint("length(btrim(name)) > 0", name="ck_leads_name_not_blank"),
        # On `email_key`, the stored lower(email) (migrations 0027, 0032): emails unique in any case.
        Index("uq_leads_email", text("email_key"), unique=True),
        Index("uq_leads_external_id", "external_id", unique=True),
        # Ranked lists: a rep's leads by score, the whole team by score, a stage column by score.
        Index("ix_leads_owner_score", "owner_id", text("score DESC"), text("id DESC")),
        Index("ix_leads_score", text("score DESC"), text("id DESC")),
        Index("ix_leads_stage_score", "stage", text("score DESC"), text("id DESC")),
        Index("ix_leads_source", "source"),
        Index("ix_leads_created_at", "created_at"),
        Index("ix_leads_score_valid_until", "score_valid_until"),
        CheckConstraint(
            "score_at_close IS NULL OR score_at_close BETWEEN 0 AND 100", name="ck_leads_score_at_close"
        ),
        # Kanban columns per owner, and stagnation checks per stage.
        Index("ix_leads_owner_stage_score", "owner_id", "stage", text("score DESC"), text("id DESC")),
        Index("ix_leads_stage_entered", "stage", "stage_entered_at", postgresql_include=["owner_id", "tier"]),
        # Stuck deals per stage and new leads per week for one owner, and the action queue's open
        # leads, read from indexes alone (migration 0029_board15).
        Index("ix_leads_owner_stage_entered", "owner_id", "stage", "stage_entered_at", postgresql_include=["tier"]),
        Index("ix_leads_owner_created", "owner_id", "created_at", postgresql_include=["dates_known"]),
        Index("ix_leads_open_queue", "owner_id", "stage",
              postgresql_include=["id", "score", "deal_value", "risk_points", "tier", "risk_level", "stage_entered_at",
                                  "snoozed_until", "last_contacted_at", "last_activity_at"],
              postgresql_where=text("stage IN ('new', 'contacted', 'qualified', 'meeting', 'proposal', 'negotiation')")),
        # Search (ILIKE '%term%') through trigrams, and the leads table's other sorts (migration 0004; a
        # tier is filtered as its range of scores since 0042, which dropped ix_leads_tier_score).
        *(
            Index(f"ix_leads_{c}_trgm", c, postgresql_using="gin", postgresql_ops={c: "gin_trgm_ops"})
            for c in ("name", "company", "email")
        ),
        Index("ix_leads_value", text("deal_value DESC"), text("id DESC")),
        Index("ix_leads_name_sort", text("lower(name)"), "id"),
        Index("ix_leads_stage_age", "stage_entered_at", "id"),
        # Deal risk (migration 0005_risk).
        CheckConstraint(_in("risk_level", RiskLevel), name="ck_leads_risk_level"),
        CheckConstraint("risk_points BETWEEN 0 AND 100", name="ck_leads_risk_points"),
        CheckConstraint(
            "(risk_level IS NULL AND risk_points IS NULL) OR risk_level = CASE WHEN risk_points >= 55 THEN 'high' "
            "WHEN risk_points >= 25 THEN 'medium' ELSE 'low' END",
            name="ck_leads_risk_level_matches_points",
        ),
        CheckConstraint("last_reply_sentiment BETWEEN -1 AND 1", name="ck_leads_last_reply_sentiment"),
        CheckConstraint("(tier = 'hot') = (hot_since IS NOT NULL)", name="ck_leads_hot_since"),
        # The action queue's fresh signals: leads whose last engagement is recent (migration 0017), in
        # the order of the queue's new signals (migration 0036).
        Index("ix_leads_last_activity", text("last_activity_at DESC"), text("score DESC"), text("deal_value DESC"),
              "id"),
        Index("ix_leads_risk_valid_until", "risk_valid_until"),
        Index("ix_leads_owner_risk", "owner_id", text("risk_points DESC"), text("id DESC"),
              postgresql_where=text("risk_level IN ('medium', 'high')")),
        # The team's queue walks its High-risk deals in risk order (migration 0033).
        Index("ix_leads_queue_risk", text("risk_points DESC"), text("id DESC"),
              postgresql_where=text("risk_level = 'high'")),
        # A rep's new signals: their leads by last engagement (migrations 0033, 0036).
        Index("ix_leads_owner_last_activity", "owner_id", text("last_activity_at DESC"), text("score DESC"),
              text("deal_value DESC"), "id"),
        # Where an imported lead came from (migration 0018_imports).
        CheckConstraint("import_row IS NULL OR import_row >= 1", name="ck_leads_import_row"),
        Index("ix_leads_import_row", "import_id", "import_row", postgresql_where=text("import_id IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    external_id: str | None = Field(default=None, sa_column=Column(String(120)))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    email: str | None = Field(default=None, sa_column=Column(String(254)))
    phone: str | None = Field(default=None, sa_column=Column(String(40)))
    title: str | None = Field(default=None, sa_column=Column(String(120)))
    company: str | None = Field(default=None, sa_column=Column(String(200)))
    company_size: int | None = Field(default=None, sa_column=Column(Integer))
    source: str = Field(sa_column=Column(String(32), nullable=False))
    stage: str = Field(sa_column=Column(String(16), nullable=False, server_default="new"))
    owner_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    )
    deal_value: Decimal = Field(
        default=Decimal(0), sa_column=Column(Numeric(12, 2), nullable=False, server_default="0")
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=_ts(nullable=False, server_default=text("now()"))
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=_ts(nullable=False, server_default=text("now()"))
    )
    stage_entered_at: datetime = Field(
        default_factory=utcnow, sa_column=_ts(nullable=False, server_default=text("now()"))
    )
    closed_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    # Last thing the prospect did, and last time a rep reached out (drives the action queue).
    last_activity_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    last_contacted_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    score: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    tier: str = Field(sa_column=Column(String(8), nullable=False, server_default="cold"))
    score_reasons: list[dict[str, Any]] = Field(
        default_factory=list,
        sa_column=Column(JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    )
    scored_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    # When time alone will change the score (a recency bonus running out); swept by rescoring.
    score_valid_until: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    # The score when the deal closed: what the score predicted, kept for "does the score predict wins?".
    score_at_close: int | None = Field(default=None, sa_column=Column(Integer))
    # When the lead last turned Hot; NULL while it is not Hot. Kept by a trigger (migration 0017) on
    # every write of the tier, so the ORM reads it back after a flush rather than setting it.
    hot_since: datetime | None = Field(
        default=None,
        sa_column=_ts(nullable=True, server_default=FetchedValue(), server_onupdate=FetchedValue()),
    )
    # Hidden from the action queue until then ("snooze"); cleared when the prospect does something.
    snoozed_until: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default="1"))
    # Churn and stall risk of an open deal (scoring/risk.py); NULL for closed deals and until assessed.
    risk_level: str | None = Field(default=None, sa_column=Column(String(8), nullable=True))
    risk_points: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    risk_reasons: list[dict[str, Any]] = Field(
        default_factory=list,
        sa_column=Column(JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    )
    # When the risk last changed (a reassessment that finds the same risk leaves the row alone).
    risk_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    # When time alone will change the risk (a deal passing its stage limit); swept like scores.
    risk_valid_until: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    # The prospect's latest reply (email_received) and its sentiment, -1..1.
    last_reply_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    last_reply_sentiment: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    custom_fields: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column(JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    )
    # The import that created the lead and its data row in that file (row 1: the first under the header).
    import_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("imports.id", ondelete="SET NULL", name="fk_leads_import_id"),
                         nullable=True),
    )
    import_row: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    # False: imported from a row without dates; created_at, closed_at and its stage change are the
    # import moment standing in, so date-based figures leave the lead out.
    dates_known: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, server_default=text("true")))
    # Why a lost deal was lost: an entry of `lost_reasons` copied as text, and the rep's own words
    # (migration 0023). Both NULL unless the stage is Lost.
    lost_reason: str | None = Field(default=None, sa_column=Column(String(120), nullable=True))
    lost_note: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))


class LeadImport(SQLModel, table=True):
    """One import that stored something: the user's file name, who and when, and how its dates were
    read. `row_order` (newest_first, oldest_first, unknown) is what the manager said about a file
    without dates; with leads.import_row it orders that history (NULL: the file had dates)."""

    __tablename__ = "imports"
    __table_args__ = (
        CheckConstraint("row_order IN ('newest_first', 'oldest_first', 'unknown')", name="ck_imports_row_order"),
        CheckConstraint("row_count >= 0 AND dated_rows BETWEEN 0 AND row_count", name="ck_imports_rows"),
        CheckConstraint("length(btrim(file_name)) > 0", name="ck_imports_file_name"),
    )

    id: int | None = Field(default=None, primary_key=True)
    file_name: str = Field(sa_column=Column(String(255), nullable=False))
    imported_at: datetime = Field(sa_column=_ts(nullable=False))
    actor_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    )
    row_count: int = Field(sa_column=Column(Integer, nullable=False))
    dated_rows: int = Field(sa_column=Column(Integer, nullable=False))
    date_format: str = Field(sa_column=Column(String(64), nullable=False))
    row_order: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))


def _play_kind_rule() -> str:
    """SQL: the activity's kind is one its play can be done as (or a read of content)."""
    parts = []
    for play in Play:
        kinds = PLAY_KINDS[play] + (CONTENT_READ_KINDS if play.is_content else ())
        parts.append(f"(play = '{play.value}' AND {_in('kind', kinds)})")
    return " OR ".join(parts)


PLAY_KIND_RULE = _play_kind_rule()


class Activity(SQLModel, table=True):
    __tablename__ = "activities"
    __table_args__ = (
        CheckConstraint(_in("kind", ActivityKind), name="ck_activities_kind"),
        CheckConstraint("sentiment BETWEEN -1 AND 1", name="ck_activities_sentiment"),
        # Carries the kind (migration 0040): training reads a closed deal's kinds index-only.
        Index("ix_activities_lead_occurred", "lead_id", text("occurred_at DESC"), postgresql_include=["kind"]),
        Index("ix_activities_user", "user_id"),
        Index("ix_activities_owner_occurred_at", "owner_id", "occurred_at"),
        # A play tags rep outreach of the kinds it is done as, or a prospect opening its content.
        CheckConstraint(f"play IS NULL OR ({PLAY_KIND_RULE})", name="ck_activities_play"),
        Index("ix_activities_lead_play", "lead_id", "occurred_at", postgresql_where=text("play IS NOT NULL")),
        # The action queue's fresh requests of the last hours (migration 0017).
        Index("ix_activities_requests", "occurred_at",
              postgresql_where=text(_in("kind", REQUEST_KINDS))),
        # Replies and notes whose tone is not stored yet, scored before a set-based risk assessment
        # (migration 0038_rescore16; normally empty).
        Index("ix_activities_unscored", "lead_id",
              postgresql_where=text("sentiment IS NULL AND body IS NOT NULL AND kind IN ('email_received', 'note')")),
    )

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(
        sa_column=Column(Integer, ForeignKey("leads.id", ondelete="CASCADE"), nullable=False)
    )
    kind: str = Field(sa_column=Column(String(32), nullable=False))
    occurred_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    # The rep who did or logged it; NULL when the prospect did it (tracked by an integration).
    user_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    )
    subject: str | None = Field(default=None, sa_column=Column(String(300)))
    body: str | None = Field(default=None, sa_column=Column(Text))
    # The tone of a reply or note, -1..1 (scoring/sentiment.py), computed once when it is written.
    sentiment: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=_ts(nullable=False, server_default=text("now()"))
    )
    # Which sales play this was (domain.Play), when a rep tagged it; NULL for untagged work.
    play: str | None = Field(default=None, sa_column=Column(String(32)))
    # The lead's owner, kept by triggers (migration 0025) so row-level security compares a column.
    owner_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, nullable=True, server_default=FetchedValue(),
                         server_onupdate=FetchedValue()),
    )


class StageChange(SQLModel, table=True):
    __tablename__ = "stage_changes"
    __table_args__ = (
        CheckConstraint(
            f"from_stage IS NULL OR {_in('from_stage', Stage)}", name="ck_stage_changes_from"
        ),
        CheckConstraint(_in("to_stage", Stage), name="ck_stage_changes_to"),
        Index("ix_stage_changes_lead_changed", "lead_id", "changed_at"),
        Index("ix_stage_changes_changed_at", "changed_at"),
        Index("ix_stage_changes_owner_changed_at", "owner_id", "changed_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(
        sa_column=Column(Integer, ForeignKey("leads.id", ondelete="CASCADE"), nullable=False)
    )
    from_stage: str | None = Field(default=None, sa_column=Column(String(16)))
    to_stage: str = Field(sa_column=Column(String(16), nullable=False))
    changed_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    user_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    )
    # The lead's owner, kept by triggers (migration 0025) so row-level security compares a column.
    owner_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, nullable=True, server_default=FetchedValue(),
                         server_onupdate=FetchedValue()),
    )


class FollowUp(SQLModel, table=True):
    """A promise to get back to a lead by a time; shows in the owner's action queue when due."""

    __tablename__ = "follow_ups"
    __table_args__ = (
        Index("ix_follow_ups_open_owner_due", "owner_id", "due_at", postgresql_where=text("done_at IS NULL")),
        Index("ix_follow_ups_lead", "lead_id"),
        Index("ix_follow_ups_open_lead", "lead_id", "due_at", postgresql_where=text("done_at IS NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(
        sa_column=Column(Integer, ForeignKey("leads.id", ondelete="CASCADE"), nullable=False)
    )
    owner_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    )
    due_at: datetime = Field(sa_column=_ts(nullable=False))
    note: str | None = Field(default=None, sa_column=Column(String(500)))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=_ts(nullable=False, server_default=text("now()"))
    )
    done_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    # What the next step is: call | email | meeting (NULL: an older promise that did not say).
    kind: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))


class LostReason(SQLModel, table=True):
    """One entry of the team's list of why deals are lost (Settings; the Lost dialog offers them)."""

    __tablename__ = "lost_reasons"

    id: int | None = Field(default=None, primary_key=True)
    label: str = Field(sa_column=Column(String(120), nullable=False))
    position: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))


class Notification(SQLModel, table=True):
    """Something a user should hear about, naming its lead. Written by database triggers and the
    sweep (migration 0023); a user reads and marks only their own."""

    __tablename__ = "notifications"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    user_id: int = Field(sa_column=Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False))
    lead_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("leads.id", ondelete="CASCADE"), nullable=True))
    follow_up_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("follow_ups.id", ondelete="CASCADE"), nullable=True))
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    message: str = Field(sa_column=Column(String(300), nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=_ts(nullable=False, server_default=text("now()"))
    )
    read_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


class StageRule(SQLModel, table=True):
    """How long a deal may sit in an open stage before it is flagged as stagnating."""

    __tablename__ = "stage_rules"
    __table_args__ = (
        CheckConstraint(_in("stage", [s for s in Stage if not s.is_closed]), name="ck_stage_rules_stage"),
        CheckConstraint("stagnation_days BETWEEN 1 AND 365", name="ck_stage_rules_days"),
    )

    stage: str = Field(sa_column=Column(String(16), primary_key=True))
    stagnation_days: int = Field(sa_column=Column(Integer, nullable=False))


class SourceCost(SQLModel, table=True):
    """What the team spent on a source, for cost per won deal and ROI."""

    __tablename__ = "source_costs"
    __table_args__ = (
        CheckConstraint(_in("source", Source), name="ck_source_costs_source"),
        CheckConstraint("cost >= 0", name="ck_source_costs_cost"),
    )

    source: str = Field(sa_column=Column(String(32), primary_key=True))
    cost: Decimal = Field(sa_column=Column(Numeric(12, 2), nullable=False))
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=_ts(nullable=False, server_default=text("now()"))
    )


class ScoringModel(SQLModel, table=True):
    """A trained scoring model and how it did on its holdout; at most one is the team's active one."""

    __tablename__ = "scoring_models"
    __table_args__ = (
        CheckConstraint("version >= 1", name="ck_scoring_models_version"),
        CheckConstraint("rows > 0", name="ck_scoring_models_rows"),
        Index("uq_scoring_models_version", "version", unique=True),
        # Only one model scores the leads: a second active row is refused by the database.
        Index("uq_scoring_models_active", "is_active", unique=True, postgresql_where=text("is_active")),
    )

    id: int | None = Field(default=None, primary_key=True)
    version: int = Field(sa_column=Column(Integer, nullable=False))
    trained_at: datetime = Field(sa_column=_ts(nullable=False))
    rows: int = Field(sa_column=Column(Integer, nullable=False))
    features: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    metrics: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    is_active: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false"))
    )
    # The engine as bytes: a JSON header (feature spec, calibrator) and XGBoost's UBJSON; no pickle.
    model: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    trained_by: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    )


class ModelScore(SQLModel, table=True):
    """A stored model's score for one closed deal it learned from: the score of a model that did not
    train on it (out of fold). Open leads' previews were rows here too until migration 0040
    (ModelPreview); `out_of_fold` is true on every row since."""

    __tablename__ = "model_scores"
    __table_args__ = (
        CheckConstraint("score BETWEEN 0 AND 100", name="ck_model_scores_score"),
        CheckConstraint(_in("tier", Tier), name="ck_model_scores_tier"),
        Index("ix_model_scores_lead", "lead_id"),
    )

    model_id: int = Field(
        sa_column=Column(Integer, ForeignKey("scoring_models.id", ondelete="CASCADE"), primary_key=True)
    )
    lead_id: int = Field(
        sa_column=Column(Integer, ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True)
    )
    score: int = Field(sa_column=Column(SmallInteger, nullable=False))
    tier: str = Field(sa_column=Column(String(8), nullable=False))
    reasons: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    out_of_fold: bool = Field(sa_column=Column(Boolean, nullable=False))


class ModelPreview(SQLModel, table=True):
    """What a stored model would score each open lead at training time (the model page counts the tiers
    a switch would change): one row per model, lead ids ascending with their scores (migration 0040)."""

    __tablename__ = "model_previews"
    __table_args__ = (CheckConstraint("cardinality(lead_ids) = cardinality(scores)", name="ck_model_previews_sizes"),)

    model_id: int = Field(
        sa_column=Column(Integer, ForeignKey("scoring_models.id", ondelete="CASCADE"), primary_key=True)
    )
    lead_ids: list[int] = Field(sa_column=Column(ARRAY(Integer), nullable=False))
    scores: list[int] = Field(sa_column=Column(ARRAY(SmallInteger), nullable=False))


class PlayStat(SQLModel, table=True):
    """How often past leads in a stage moved forward with and without a play, per segment.

    Precomputed from the history by services/next_action.refresh_play_stats (at seeding and by the
    background sweep), so showing next best actions never rescans history. `source` and
    `size_band` are 'any' on the coarser rows (a segment widened when a narrow one is too thin).
    """

    __tablename__ = "play_stats"
    __table_args__ = (
        CheckConstraint(_in("stage", OPEN_STAGES_FOR_CHECK), name="ck_play_stats_stage"),
        CheckConstraint(_in("play", Play), name="ck_play_stats_play"),
        CheckConstraint("moved_with BETWEEN 0 AND stays_with", name="ck_play_stats_with"),
        CheckConstraint("moved_without BETWEEN 0 AND stays_without", name="ck_play_stats_without"),
    )

    stage: str = Field(sa_column=Column(String(16), primary_key=True))
    source: str = Field(sa_column=Column(String(32), primary_key=True))
    size_band: str = Field(sa_column=Column(String(16), primary_key=True))
    play: str = Field(sa_column=Column(String(32), primary_key=True))
    stays_with: int = Field(sa_column=Column(Integer, nullable=False))
    moved_with: int = Field(sa_column=Column(Integer, nullable=False))
    stays_without: int = Field(sa_column=Column(Integer, nullable=False))
    moved_without: int = Field(sa_column=Column(Integer, nullable=False))
    refreshed_at: datetime = Field(sa_column=_ts(nullable=False))


class ScoringSettings(SQLModel, table=True):
    """The team's choice of scoring engine: one row (id 1), created by the migration."""

    __tablename__ = "scoring_settings"
    __table_args__ = (
        CheckConstraint("id = 1", name="ck_scoring_settings_single_row"),
        CheckConstraint("engine IN ('rules', 'model', 'blend')", name="ck_scoring_settings_engine"),
        CheckConstraint("blend_weight BETWEEN 0 AND 1", name="ck_scoring_settings_blend_weight"),
    )

    id: int | None = Field(default=1, sa_column=Column(Integer, primary_key=True, server_default="1"))
    engine: str = Field(sa_column=Column(String(8), nullable=False, server_default="rules"))
    # The model's share of a blended score (the rules get the rest).
    blend_weight: float = Field(sa_column=Column(Float, nullable=False, server_default="0.5"))
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=_ts(nullable=False, server_default=text("now()"))
    )
    updated_by: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    )


class ScoringJob(SQLModel, table=True):
    """A training run or a bulk rescoring, with the progress every worker and page can read."""

    __tablename__ = "scoring_jobs"
    __table_args__ = (
        CheckConstraint("kind IN ('train', 'rescore')", name="ck_scoring_jobs_kind"),
        CheckConstraint("status IN ('running', 'succeeded', 'failed')", name="ck_scoring_jobs_status"),
        CheckConstraint("percent BETWEEN 0 AND 100", name="ck_scoring_jobs_percent"),
        CheckConstraint("(status = 'running') = (finished_at IS NULL)", name="ck_scoring_jobs_finished"),
        # One training and one rescoring at a time, whichever worker starts them.
        Index("uq_scoring_jobs_running", "kind", unique=True, postgresql_where=text("status = 'running'")),
        Index("ix_scoring_jobs_kind_started", "kind", text("started_at DESC")),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(sa_column=Column(String(8), nullable=False))
    status: str = Field(sa_column=Column(String(10), nullable=False, server_default="running"))
    percent: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    message: str = Field(default="", sa_column=Column(String(300), nullable=False, server_default=""))
    error: str | None = Field(default=None, sa_column=Column(Text))
    started_at: datetime = Field(sa_column=_ts(nullable=False))
    # Moved on at every step: a running job whose heartbeat stopped long ago was interrupted.
    heartbeat_at: datetime = Field(sa_column=_ts(nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    model_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("scoring_models.id", ondelete="SET NULL"), nullable=True),
    )
    requested_by: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    )


class AuthSession(SQLModel, table=True):
    """A signed-in browser. Only the SHA-256 of its token is stored."""

    __tablename__ = "auth_sessions"
    __table_args__ = (
        CheckConstraint("expires_at > created_at", name="ck_auth_sessions_expiry"),
        Index("uq_auth_sessions_token", "token_hash", unique=True),
        Index("ix_auth_sessions_user", "user_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(sa_column=Column(String(64), nullable=False), repr=False)
    user_id: int = Field(sa_column=Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False, server_default=text("now()")))
    last_seen_at: datetime = Field(sa_column=_ts(nullable=False))
    expires_at: datetime = Field(sa_column=_ts(nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


class SignInAttempt(SQLModel, table=True):
    """One try at signing in, kept to throttle password guessing per email and per client address."""

    __tablename__ = "sign_in_attempts"
    __table_args__ = (
        Index("ix_sign_in_attempts_email", text("lower(email)"), "attempted_at"),
        Index("ix_sign_in_attempts_source", "source", "attempted_at"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    email: str = Field(sa_column=Column(String(254), nullable=False))
    attempted_at: datetime = Field(sa_column=_ts(nullable=False))
    succeeded: bool = Field(sa_column=Column(Boolean, nullable=False))
    source: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))


class SignInHandoff(SQLModel, table=True):
    """A signed-in form's one-time ticket, swapped by a backend route for the HttpOnly session cookie."""

    __tablename__ = "sign_in_handoffs"

    ticket_hash: str = Field(sa_column=Column(String(64), primary_key=True), repr=False)
    user_id: int = Field(sa_column=Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False))
    expires_at: datetime = Field(sa_column=_ts(nullable=False))


class AuditEntry(SQLModel, table=True):
    """Who changed what and when, with the values before and after.

    A rep's transaction adds entries it may not read back (row security, migration 0011), so an
    INSERT ... RETURNING would be refused: the id is taken from the sequence before the INSERT."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_lead", "lead_id", text("id DESC")),
        Index("ix_audit_log_actor", "actor_id", text("id DESC")),
        {"implicit_returning": False},
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    at: datetime = Field(sa_column=_ts(nullable=False))
    actor_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    )
    action: str = Field(sa_column=Column(String(48), nullable=False))
    entity: str = Field(sa_column=Column(String(32), nullable=False))
    entity_id: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    lead_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("leads.id", ondelete="SET NULL"), nullable=True)
    )
    old: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    new: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))


class ApiKey(SQLModel, table=True):
    """A key for the REST API: acts as one user, under that user's row-level security.
    Only the SHA-256 of the secret is stored; `prefix` (its first characters) tells keys apart."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("scope IN ('read', 'write')", name="ck_api_keys_scope"),
        CheckConstraint("length(btrim(name)) > 0", name="ck_api_keys_name_not_blank"),
        CheckConstraint("rate_per_minute > 0", name="ck_api_keys_rate"),
        Index("uq_api_keys_secret", "secret_hash", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(80), nullable=False))
    prefix: str = Field(sa_column=Column(String(16), nullable=False))
    secret_hash: str = Field(sa_column=Column(String(64), nullable=False), repr=False)
    scope: str = Field(sa_column=Column(String(8), nullable=False))
    user_id: int = Field(sa_column=Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False))
    created_by: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False, server_default=text("now()")))
    last_used_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    revoked_by: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    )
    rate_per_minute: int = Field(default=600, sa_column=Column(Integer, nullable=False, server_default="600"))


class ApiIdempotency(SQLModel, table=True):
    """The answer to a POST sent with an Idempotency-Key, stored with the change it made."""

    __tablename__ = "api_idempotency"
    __table_args__ = (Index("ix_api_idempotency_created", "created_at"),)

    api_key_id: int = Field(
        sa_column=Column(Integer, ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    )
    key: str = Field(sa_column=Column(String(200), primary_key=True))
    request_hash: str = Field(sa_column=Column(String(64), nullable=False))
    status_code: int = Field(sa_column=Column(Integer, nullable=False))
    response: str = Field(sa_column=Column(Text, nullable=False))  # the JSON body as first sent
    created_at: datetime = Field(sa_column=_ts(nullable=False))


class ApiRateWindow(SQLModel, table=True):
    """Requests one key made in one minute (shared by every worker process)."""

    __tablename__ = "api_rate_windows"

    api_key_id: int = Field(
        sa_column=Column(Integer, ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    )
    window_start: datetime = Field(sa_column=_ts(primary_key=True))
    requests: int = Field(sa_column=Column(Integer, nullable=False))


class ApiRateSource(SQLModel, table=True):
    """API requests without a valid key from one client address in one minute."""

    __tablename__ = "api_rate_sources"

    source: str = Field(sa_column=Column(String(64), primary_key=True))
    window_start: datetime = Field(sa_column=_ts(primary_key=True))
    requests: int = Field(sa_column=Column(Integer, nullable=False))


class SalesTarget(SQLModel, table=True):
    """The monthly won-revenue target a manager set for one rep, or for the team (`user_id` NULL).
    A rep reads only their own row (migration 0022_forecast)."""

    __tablename__ = "sales_targets"
    __table_args__ = (
        CheckConstraint("monthly_target >= 0", name="ck_sales_targets_amount"),
        Index("uq_sales_targets_user", text("coalesce(user_id, 0)"), unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=True)
    )
    monthly_target: Decimal = Field(sa_column=Column(Numeric(12, 2), nullable=False))
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=_ts(nullable=False, server_default=text("now()"))
    )
    updated_by: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    )
