"""Small, known data for tests, created through the same services the app uses."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlmodel import Session

from crm_app.db.models import Activity, Lead, StageChange, User
from crm_app.db.security import act_as
from crm_app.domain import ActivityKind, Play, Source, Stage
from crm_app.services.leads import log_activity
from crm_app.services.scoring import rescore_lead


# Every test user's password; hashed once (argon2 is slow on purpose).
TEST_PASSWORD = "e2e-password-123"


@functools.cache
def _test_password_hash() -> str:
    from crm_app.services.accounts import hash_password

    return hash_password(TEST_PASSWORD)


def make_user(session: Session, name: str, role: str = "rep") -> User:
    """A teammate who can sign in as `<first name>@test.crm` with TEST_PASSWORD."""
    user = User(email=f"{name.split()[0].lower()}@test.crm", name=name, role=role,
                password_hash=_test_password_hash())
    session.add(user)
    session.commit()
    return user


def make_lead(
    session: Session,
    name: str,
    *,
    now: datetime,
    owner: User | None = None,
    company: str = "Acme",
    company_size: int | None = 10,
    source: Source = Source.WEBSITE,
    stage: Stage = Stage.NEW,
    deal_value: int = 1000,
    activities: list[tuple[ActivityKind, timedelta]] = (),
    created_ago: timedelta = timedelta(days=30),
    email: str | None = None,
) -> Lead:
    """A lead, then its activities (each `ago` before now), scored like the app would."""
    lead = Lead(
        name=name,
        email=email or f"{name.replace(' ', '.').lower()}@example.com",
        company=company,
        company_size=company_size,
        source=source.value,
        stage=stage.value,
        owner_id=owner.id if owner else None,
        deal_value=Decimal(deal_value),
        created_at=now - created_ago,
        stage_entered_at=now - created_ago,
        tier="cold",
    )
    session.add(lead)
    session.flush()
    rescore_lead(session, lead, now)
    session.commit()
    for kind, ago in activities:
        log_activity(session, lead_id=lead.id, kind=kind, now=now, occurred_at=now - ago,
                     user_id=owner.id if owner and kind in (ActivityKind.CALL, ActivityKind.NOTE) else None)
    session.refresh(lead)
    return lead


def make_past_stay(session: Session, owner: User, n: int, *, now: datetime, moved: bool, play: Play | None,
                   source: Source = Source.LINKEDIN, size: int = 100, stage: Stage = Stage.CONTACTED) -> None:
    """A lead that entered `stage` 90 days ago, got `play` there, and moved on 10 days later or not."""
    entered = now - timedelta(days=90)
    left = entered + timedelta(days=10)
    nxt = Stage.QUALIFIED if stage is Stage.CONTACTED else Stage.NEGOTIATION
    lead = Lead(name=f"Past {n}", email=f"past{n}@example.com", company="Past Co", company_size=size,
                source=source.value, stage=(nxt if moved else stage).value, owner_id=owner.id,
                created_at=entered - timedelta(days=5), stage_entered_at=left if moved else entered, tier="cold")
    session.add(lead)
    session.flush()
    session.add(StageChange(lead_id=lead.id, from_stage=None, to_stage=Stage.NEW.value, changed_at=lead.created_at))
    session.add(StageChange(lead_id=lead.id, from_stage=Stage.NEW.value, to_stage=stage.value, changed_at=entered))
    if moved:
        session.add(StageChange(lead_id=lead.id, from_stage=stage.value, to_stage=nxt.value,
                                changed_at=left))
    if play is not None:
        session.add(Activity(lead_id=lead.id, kind=play.kinds[0].value, play=play.value, user_id=owner.id,
                             occurred_at=entered + timedelta(days=3)))


@contextmanager
def acting(session: Session, user: User | int) -> Iterator[Session]:
    """A service session as `user` (or user id) under row-level security, on the test's connection (a
    savepoint of its transaction, so the test's fixture data is visible and its commits are rolled
    back with the test); the role is reset afterwards."""
    db = act_as(Session(bind=session.connection(), join_transaction_mode="create_savepoint",
                        expire_on_commit=False), user if isinstance(user, int) else user.id)
    try:
        yield db
    finally:
        db.close()
        session.execute(text("RESET ROLE"))
        session.execute(text("SELECT set_config('crm.user_id', '', true)"))
