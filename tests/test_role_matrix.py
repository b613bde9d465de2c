"""Every role against every service call that reads or writes leads, and every team-wide change only
a manager makes (settings, scoring), the way the pages call them.

The target is always the owner rep's data (Ana's lead, her follow-up, her closed deal). The actors:

    owner rep   Ana herself
    other rep   Ben, passing Ana's ids as if guessed (or read off a shared screen)
    manager     Meg, who sees the whole team
    admin       Ada, likewise
    nobody      a session under the app's database role with no acting user (what a page that forgot
                to say who is signed in would get); not meaningful for import (see IMPORT below)

Each actor works in a session acting as them under row-level security (crm_app/db/security.py
act_as), on the test's own connection so the rolled-back fixture data is visible. For each cell:

    allowed   the effect is really there (the row changed, the rows are returned)
    refused   a ServiceError whose message is plain words (no SQL, no driver text), and every stored
              lead, follow-up, activity, stage change, audit entry and team setting (source costs,
              stage limits, engine choice, scoring jobs, the active model) is exactly as before; for a read,
              nothing of Ana's comes back (and in every read cell, nothing the actor may not see)

tests/test_row_security.py checks the policies with raw SQL; this file checks the services on top.
The count of refused cells is printed at the end of the run (-s, or the terminal summary).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlmodel import Session

from crm_app.db.models import FollowUp
from crm_app.db.queries import LeadFilter
from crm_app.db.security import APP_ROLE, act_as, apply_acting_user
from crm_app.domain import ActivityKind, Role, Source, Stage
from crm_app.services import audit
from crm_app.services import lead_detail as detail_service
from crm_app.services import leads as leads_service
from crm_app.services import queue as queue_service
from crm_app.services import settings as settings_service
from crm_app.services.analytics import AnalyticsFilter, analytics_report
from crm_app.services.errors import Forbidden, NotFound, ServiceError
from crm_app.services.exporting import stream_leads_csv
from crm_app.services.importing import ImportMapping, guess_mapping, import_file
from crm_app.services.lead_detail import LeadEdit
from crm_app.services.model_training import activate_model, deactivate_models
from crm_app.services.next_action import next_action_for
from crm_app.services.permissions import CurrentUser
from crm_app.services.pipeline import BoardFilter, board_columns, column_cards
from crm_app.services.pipeline_health import pipeline_health
from crm_app.services.scoring_jobs import TRAIN, start_job
from crm_app.services.scoring_settings import set_engine_choice
from crm_app.services.segments import segment_insights
from tests.conftest import NOW
from tests.factories import make_lead, make_user

OWNER, OTHER, MANAGER, ADMIN, NOBODY = "owner rep", "other rep", "manager", "admin", "nobody"
ACTORS = (OWNER, OTHER, MANAGER, ADMIN, NOBODY)
OK = "ok"

# --- The team and its data ---------------------------------------------------------------------


@dataclass
class World:
    users: dict[str, CurrentUser]  # by actor name (not NOBODY)
    ana_lead: int
    ana_won: int
    ben_lead: int
    ben_won: int
    pool_lead: int
    ana_follow_up: int
    ben_follow_up: int
    connection: Connection
    tmp_path: Path
    inactive_model: int = 0  # a stored model that is not the active one (another one is)

    @property
    def ana(self) -> int:
        return self.users[OWNER].id

    @property
    def ben(self) -> int:
        return self.users[OTHER].id

    @property
    def ana_leads(self) -> set[int]:
        return {self.ana_lead, self.ana_won}

    def visible_to(self, actor: str) -> set[int]:
        """What row security lets the actor see of this world."""
        everyone = {self.ana_lead, self.ana_won, self.ben_lead, self.ben_won, self.pool_lead}
        return {
            OWNER: {self.ana_lead, self.ana_won, self.pool_lead},
            OTHER: {self.ben_lead, self.ben_won, self.pool_lead},
            MANAGER: everyone,
            ADMIN: everyone,
            NOBODY: set(),
        }[actor]


@pytest.fixture
def world(session: Session, tmp_path: Path) -> World:
    users, rows = {}, {}
    for actor, name, role in ((OWNER, "Ana Owner", Role.REP), (OTHER, "Ben Other", Role.REP),
                              (MANAGER, "Meg Manager", Role.MANAGER), (ADMIN, "Ada Admin", Role.ADMIN)):
        rows[actor] = make_user(session, name, role=role.value)
        users[actor] = CurrentUser(rows[actor].id, rows[actor].email, rows[actor].name, role)
    ana_row, ben_row = rows[OWNER], rows[OTHER]
    engaged = [(ActivityKind.DEMO_REQUEST, timedelta(days=2))]
    ana_lead = make_lead(session, "Ana Lead", now=NOW, owner=ana_row, activities=engaged)
    ana_won = make_lead(session, "Ana Won", now=NOW, owner=ana_row, stage=Stage.WON)
    ben_lead = make_lead(session, "Ben Lead", now=NOW, owner=ben_row, activities=engaged)
    ben_won = make_lead(session, "Ben Won", now=NOW, owner=ben_row, stage=Stage.WON)
    pool_lead = make_lead(session, "Pool Lead", now=NOW, owner=None)
    # Overdue follow-ups, so each open lead is in its owner's action queue.
    follow_ups = [FollowUp(lead_id=lead.id, owner_id=lead.owner_id, due_at=NOW - timedelta(hours=2),
                           note="Call back", created_at=NOW - timedelta(days=1))
                  for lead in (ana_lead, ben_lead, pool_lead)]
    session.add_all(follow_ups)
    session.commit()
    # One change on Ana's closed deal, for the audit log.
    ana_won.deal_value += 500
    audit.record(session, now=NOW, actor_id=ana_row.id, action="lead_edited", entity="lead", entity_id=ana_won.id,
                 lead_id=ana_won.id, old={"deal_value": "1000.00"}, new={"deal_value": "1500.00"})
    session.commit()
    world = World(users, ana_lead.id, ana_won.id, ben_lead.id, ben_won.id, pool_lead.id, follow_ups[0].id,
                  follow_ups[1].id, session.bind, tmp_path, _two_models(session))
    session.commit()  # no savepoint of the fixture's session stays open under the actors' work
    return world


def _two_models(session: Session) -> int:
    """Two stored models (stand-ins: only their rows matter here), the first active; the rules still
    score (the engine choice is "rules"). Returns the inactive one."""
    session.execute(text("UPDATE scoring_models SET is_active = false WHERE is_active"))
    top = session.execute(text("SELECT coalesce(max(version), 0) FROM scoring_models")).scalar_one()
    ids = [session.execute(text(
        "INSERT INTO scoring_models (version, trained_at, rows, features, metrics, is_active, model) "
        "VALUES (:v, :now, 100, '{}', '{}', :active, '\\x00') RETURNING id"),
        {"v": top + n, "now": NOW, "active": n == 1}).scalar_one() for n in (1, 2)]
    session.commit()
    return ids[1]


def _as_nobody(connection: Connection) -> None:
    """The app's database role with no acting user, until the transaction (or savepoint) ends."""
    connection.execute(text(f"SET LOCAL ROLE {APP_ROLE}"))
    connection.execute(text("SELECT set_config('crm.user_id', '', true)"))


@contextmanager
def acting(world: World, actor: str) -> Iterator[Session]:
    """A session acting as `actor` under row-level security, on the test's connection."""
    connection = world.connection
    session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    if actor == NOBODY:
        event.listen(session, "after_begin", lambda _s, _t, conn: _as_nobody(conn))
    else:
        act_as(session, world.users[actor].id)
    try:
        yield session
    finally:
        session.close()
        connection.execute(text("RESET ROLE"))
        connection.execute(text("SELECT set_config('crm.user_id', '', true)"))


def stored(world: World) -> dict[str, Any]:
    """Everything a lead call may touch, read as the tables' owner."""
    conn = world.connection
    leads = conn.execute(text("SELECT to_jsonb(l) FROM leads l ORDER BY id")).scalars().all()
    follow_ups = conn.execute(text("SELECT to_jsonb(f) FROM follow_ups f ORDER BY id")).scalars().all()
    counts = conn.execute(text(
        "SELECT (SELECT count(*) FROM activities), (SELECT count(*) FROM stage_changes), "
        "(SELECT count(*) FROM audit_log)"
    )).one()
    team = conn.execute(text(
        "SELECT (SELECT jsonb_agg(to_jsonb(c) ORDER BY source) FROM source_costs c), "
        "(SELECT jsonb_agg(to_jsonb(r) ORDER BY stage) FROM stage_rules r), "
        "(SELECT jsonb_agg(to_jsonb(e)) FROM scoring_settings e), "
        "(SELECT jsonb_agg(to_jsonb(j) ORDER BY id) FROM scoring_jobs j), "
        "(SELECT jsonb_agg(jsonb_build_array(id, is_active) ORDER BY id) FROM scoring_models)"
    )).one()
    return {"leads": leads, "follow_ups": follow_ups, "counts": tuple(counts), "team settings": tuple(team)}


def lead_row(world: World, lead_id: int) -> dict[str, Any]:
    return world.connection.execute(text("SELECT to_jsonb(l) FROM leads l WHERE id = :id"), {"id": lead_id}).scalar_one()


def follow_up_row(world: World, follow_up_id: int) -> dict[str, Any]:
    return world.connection.execute(text("SELECT to_jsonb(f) FROM follow_ups f WHERE id = :id"),
                                    {"id": follow_up_id}).scalar_one()


def actor_id(world: World, actor: str) -> int | None:
    return None if actor == NOBODY else world.users[actor].id


def viewer(world: World, actor: str) -> CurrentUser | None:
    return None if actor == NOBODY else world.users[actor]


# --- Writes: each is one attempt on Ana's data; `done` checks the effect when it is allowed -------


@dataclass(frozen=True)
class Write:
    attempt: Callable[[World, Session, str], Any]
    done: Callable[[World, str, dict, Any], None]  # (world, actor, what was stored before, the call's result)
    outcome: dict[str, Any]  # actor -> OK or the ServiceError class of the refusal


def _edit(world: World, lead_id: int, **changes: str) -> LeadEdit:
    row = lead_row(world, lead_id)
    fields = dict(name=row["name"], email=row["email"] or "", company=row["company"] or "",
                  company_size="" if row["company_size"] is None else str(row["company_size"]),
                  deal_value=str(row["deal_value"]), source=row["source"], owner_id=str(row["owner_id"] or ""))
    return LeadEdit(**{**fields, **changes})


def _update(world: World, s: Session, actor: str, lead_id: int, **changes: str):
    edit = _edit(world, lead_id, **changes)
    return detail_service.update_lead(s, lead_id=lead_id, edit=edit, expected_version=lead_row(world, lead_id)["version"],
                                      now=NOW, actor_id=actor_id(world, actor))


def _import(world: World, s: Session, actor: str):
    path = world.tmp_path / "leads.csv"
    with path.open("w", newline="") as handle:
        rows = csv.writer(handle)
        rows.writerow(["Email", "Name", "Company"])
        rows.writerow(["ana.lead@example.com", "Ana Lead", "Imported Co"])  # Ana's lead, matched by email
        rows.writerow(["new.person@example.com", "New Person", "Newco"])
    return import_file(s, path, ImportMapping(columns=guess_mapping(["Email", "Name", "Company"]),
                                            defaults={"source": Source.WEBSITE.value}), now=NOW,
                       actor_id=actor_id(world, actor))


def _changed(key: str, value: Any, lead: str = "ana_lead") -> Callable[[World, str, dict, Any], None]:
    def check(world: World, actor: str, before: dict, _result: Any) -> None:
        assert lead_row(world, getattr(world, lead))[key] == value

    return check


def _owner_is(who: str | None, lead: str = "ana_lead") -> Callable[[World, str, dict, Any], None]:
    """The lead's owner is now `who` (an actor name; "self": whoever acted; None: the pool)."""
    def check(world: World, actor: str, before: dict, _result: Any) -> None:
        owner = None if who is None else world.users[actor if who == "self" else who].id
        assert lead_row(world, getattr(world, lead))["owner_id"] == owner

    return check


def _more(index: int) -> Callable[[World, str, dict, Any], None]:
    """One more activity (0) / stage change (1) / audit entry (2) than before."""
    def check(world: World, actor: str, before: dict, _result: Any) -> None:
        assert stored(world)["counts"][index] == before["counts"][index] + 1

    return check


def _follow_up_done(world: World, actor: str, before: dict, _result: Any) -> None:
    assert follow_up_row(world, world.ana_follow_up)["done_at"] is not None


def _new_follow_up_on_ana_lead(world: World, actor: str, before: dict, _result: Any) -> None:
    assert len(stored(world)["follow_ups"]) == len(before["follow_ups"]) + 1


def _snoozed(world: World, actor: str, before: dict, _result: Any) -> None:
    assert lead_row(world, world.ana_lead)["snoozed_until"] is not None


def _worked(world: World, actor: str, before: dict, _result: Any) -> None:
    _more(0)(world, actor, before, None)
    _follow_up_done(world, actor, before, None)
    _new_follow_up_on_ana_lead(world, actor, before, None)


def _imported(world: World, actor: str, before: dict, summary: Any) -> None:
    assert (summary.created, summary.updated) == (1, 1)
    assert lead_row(world, world.ana_lead)["company"] == "Imported Co"


def _team_setting(sql: str, expected: Any) -> Callable[[World, str, dict, Any], None]:
    """`sql` (read as the tables' owner, with :actor the acting user's id) now returns `expected`."""
    def check(world: World, actor: str, before: dict, _result: Any) -> None:
        value = world.connection.execute(text(sql), {"actor": actor_id(world, actor), "model": world.inactive_model})
        assert value.scalar_one() == expected

    return check


def _and(*checks: Callable[[World, str, dict, Any], None]) -> Callable[[World, str, dict, Any], None]:
    def check(world: World, actor: str, before: dict, result: Any) -> None:
        for one in checks:
            one(world, actor, before, result)

    return check


WORKS_ON_OWN = {OWNER: OK, OTHER: NotFound, MANAGER: OK, ADMIN: OK, NOBODY: NotFound}
MANAGERS_ONLY = {OWNER: Forbidden, OTHER: Forbidden, MANAGER: OK, ADMIN: OK, NOBODY: Forbidden}
AS_SOMEONE_ELSE = {OWNER: Forbidden, OTHER: NotFound, MANAGER: Forbidden, ADMIN: Forbidden, NOBODY: NotFound}

WRITES: dict[str, Write] = {
    "lead_detail.update_lead (edit a field)": Write(
        lambda w, s, a: _update(w, s, a, w.ana_lead, company="Renamed Co"),
        _changed("company", "Renamed Co"), WORKS_ON_OWN),
    "lead_detail.update_lead (give the lead to the other rep)": Write(
        lambda w, s, a: _update(w, s, a, w.ana_lead, owner_id=str(w.ben)),
        _owner_is(OTHER), {OWNER: Forbidden, OTHER: NotFound, MANAGER: OK, ADMIN: OK, NOBODY: NotFound}),
    "lead_detail.update_lead (claim a pool lead for oneself)": Write(
        lambda w, s, a: _update(w, s, a, w.pool_lead, owner_id=str(actor_id(w, a) or "")),
        _owner_is("self", "pool_lead"),
        {OWNER: OK, OTHER: OK, MANAGER: OK, ADMIN: OK, NOBODY: NotFound}),
    # For the other rep this is taking the pool lead for himself, which a rep may do.
    "lead_detail.update_lead (give a pool lead to the other rep)": Write(
        lambda w, s, a: _update(w, s, a, w.pool_lead, owner_id=str(w.ben)),
        _owner_is(OTHER, "pool_lead"), {OWNER: Forbidden, OTHER: OK, MANAGER: OK, ADMIN: OK, NOBODY: NotFound}),
    "leads.log_activity": Write(
        lambda w, s, a: leads_service.log_activity(s, lead_id=w.ana_lead, kind=ActivityKind.NOTE, body="Spoke to them",
                                                   now=NOW, user_id=actor_id(w, a)),
        _more(0), WORKS_ON_OWN),
    "leads.move_lead_to_stage": Write(
        lambda w, s, a: leads_service.move_lead_to_stage(s, lead_id=w.ana_lead, to_stage=Stage.CONTACTED, now=NOW,
                                                         user_id=actor_id(w, a),
                                                         expected_version=lead_row(w, w.ana_lead)["version"]),
        _changed("stage", "contacted"), WORKS_ON_OWN),
    # Recorded as someone else: the other rep's id passed by whoever acts. Only the other rep himself
    # may log as himself, and on Ana's lead he is refused anyway (he cannot see it).
    "leads.log_activity (as the other rep)": Write(
        lambda w, s, a: leads_service.log_activity(s, lead_id=w.ana_lead, kind=ActivityKind.CALL, now=NOW,
                                                   user_id=w.ben),
        _more(0), AS_SOMEONE_ELSE),
    "leads.move_lead_to_stage (as the other rep)": Write(
        lambda w, s, a: leads_service.move_lead_to_stage(s, lead_id=w.ana_lead, to_stage=Stage.CONTACTED, now=NOW,
                                                         user_id=w.ben,
                                                         expected_version=lead_row(w, w.ana_lead)["version"]),
        _changed("stage", "contacted"), AS_SOMEONE_ELSE),
    "leads.move_lead_to_stage (as the other rep, after someone moved it)": Write(
        lambda w, s, a: leads_service.move_lead_to_stage(s, lead_id=w.ana_lead, to_stage=Stage.CONTACTED, now=NOW,
                                                         user_id=w.ben, expected_version=0),
        _more(2), AS_SOMEONE_ELSE),
    "queue.work_item (as the other rep)": Write(
        lambda w, s, a: queue_service.work_item(s, lead_id=w.ana_lead, kind=ActivityKind.CALL.value, now=NOW,
                                                user_id=w.ben, body="Called", follow_up_days=3),
        _more(0), AS_SOMEONE_ELSE),
    "lead_detail.update_lead (recorded as the other rep)": Write(
        lambda w, s, a: detail_service.update_lead(s, lead_id=w.ana_lead, edit=_edit(w, w.ana_lead, company="Forged"),
                                                   expected_version=lead_row(w, w.ana_lead)["version"], now=NOW,
                                                   actor_id=w.ben),
        _changed("company", "Forged"), AS_SOMEONE_ELSE),
    "leads.reassign_leads (Ana's lead to the other rep)": Write(
        lambda w, s, a: leads_service.reassign_leads(s, lead_ids=[w.ana_lead], owner_id=w.ben, now=NOW,
                                                     actor=viewer(w, a)),
        _owner_is(OTHER), MANAGERS_ONLY),
    "leads.reassign_leads (Ana's lead to the pool)": Write(
        lambda w, s, a: leads_service.reassign_leads(s, lead_ids=[w.ana_lead], owner_id=None, now=NOW,
                                                     actor=viewer(w, a)),
        _owner_is(None), MANAGERS_ONLY),
    "queue.snooze_lead": Write(
        lambda w, s, a: queue_service.snooze_lead(s, lead_id=w.ana_lead, until=NOW + timedelta(hours=1), now=NOW),
        _snoozed, WORKS_ON_OWN),
    "queue.snooze_lead (with its follow-up)": Write(
        lambda w, s, a: queue_service.snooze_lead(s, lead_id=w.ana_lead, until=NOW + timedelta(hours=1), now=NOW,
                                                  follow_up_id=w.ana_follow_up),
        _snoozed, WORKS_ON_OWN),
    "queue.complete_follow_up (by follow-up id alone)": Write(
        lambda w, s, a: queue_service.complete_follow_up(s, follow_up_id=w.ana_follow_up, now=NOW),
        _follow_up_done, WORKS_ON_OWN),
    "queue.complete_follow_up (with its lead id)": Write(
        lambda w, s, a: queue_service.complete_follow_up(s, follow_up_id=w.ana_follow_up, now=NOW, lead_id=w.ana_lead),
        _follow_up_done, WORKS_ON_OWN),
    "queue.schedule_follow_up": Write(
        lambda w, s, a: queue_service.schedule_follow_up(s, lead_id=w.ana_lead, owner_id=actor_id(w, a), in_days=2,
                                                         now=NOW, note="Check in"),
        _new_follow_up_on_ana_lead, WORKS_ON_OWN),
    "queue.dismiss_item (a follow-up item)": Write(
        lambda w, s, a: queue_service.dismiss_item(s, lead_id=w.ana_lead, now=NOW, follow_up_id=w.ana_follow_up),
        _follow_up_done, WORKS_ON_OWN),
    "queue.dismiss_item (a lead item)": Write(
        lambda w, s, a: queue_service.dismiss_item(s, lead_id=w.ana_lead, now=NOW,
                                                   expected_version=lead_row(w, w.ana_lead)["version"]),
        _snoozed, WORKS_ON_OWN),
    "queue.work_item (call, follow-up done, next one scheduled)": Write(
        lambda w, s, a: queue_service.work_item(s, lead_id=w.ana_lead, kind=ActivityKind.CALL.value, now=NOW,
                                                user_id=actor_id(w, a), body="Called", follow_up_id=w.ana_follow_up,
                                                follow_up_days=3, follow_up_note="Again"),
        _worked, WORKS_ON_OWN),
    # The import page is for managers; a rep's import would write leads the rep cannot see (and a row
    # matching a hidden lead by email would collide with it). "nobody" is left out: an import always
    # runs as the signed-in manager, or from the command line as the tables' owner.
    "importing.import_file (updates Ana's lead by email, adds one)": Write(
        _import, _imported, {OWNER: Forbidden, OTHER: Forbidden, MANAGER: OK, ADMIN: OK}),
    # Team settings and scoring: the pages show their controls to managers only; the services refuse
    # too. "nobody" stands for a page that forgot to pass its user (actor=None on a session under the
    # app's role): refused, although actor=None is the command line's way to act as the tables' owner.
    "settings.set_source_cost": Write(
        lambda w, s, a: settings_service.set_source_cost(s, source=Source.EVENTS.value, typed="812", now=NOW,
                                                         actor=viewer(w, a)),
        _team_setting("SELECT cost FROM source_costs WHERE source = 'events'", 812), MANAGERS_ONLY),
    # The manager's CurrentUser passed by whoever acts (a forged or stale actor): only Meg herself.
    "settings.set_source_cost (the manager named as actor, whoever acts)": Write(
        lambda w, s, a: settings_service.set_source_cost(s, source=Source.EVENTS.value, typed="812", now=NOW,
                                                         actor=w.users[MANAGER]),
        _team_setting("SELECT cost FROM source_costs WHERE source = 'events'", 812),
        {OWNER: Forbidden, OTHER: Forbidden, MANAGER: OK, ADMIN: Forbidden, NOBODY: Forbidden}),
    "settings.set_stagnation_days": Write(
        lambda w, s, a: settings_service.set_stagnation_days(s, stage=Stage.PROPOSAL.value, typed="123",
                                                             actor=viewer(w, a)),
        _team_setting("SELECT stagnation_days FROM stage_rules WHERE stage = 'proposal'", 123), MANAGERS_ONLY),
    "scoring_settings.set_engine_choice": Write(
        lambda w, s, a: set_engine_choice(s, mode="blend", blend_percent="40", now=NOW, actor=viewer(w, a)),
        _and(_team_setting("SELECT engine || ' ' || blend_weight || ' ' || (updated_by = :actor) "
                           "FROM scoring_settings", "blend 0.4 true"), _more(2)),
        MANAGERS_ONLY),
    "scoring_jobs.start_job (train a model)": Write(
        lambda w, s, a: start_job(s, kind=TRAIN, now=NOW, actor=viewer(w, a)),
        _team_setting("SELECT count(*) FROM scoring_jobs WHERE kind = 'train' AND status = 'running' "
                      "AND requested_by = :actor", 1), MANAGERS_ONLY),
    "model_training.activate_model": Write(
        lambda w, s, a: activate_model(s, w.inactive_model, actor=viewer(w, a), now=NOW),
        _and(_team_setting("SELECT bool_and(is_active = (id = :model)) FROM scoring_models", True), _more(2)),
        MANAGERS_ONLY),
    "model_training.deactivate_models": Write(
        lambda w, s, a: deactivate_models(s, actor=viewer(w, a)),
        _team_setting("SELECT count(*) FROM scoring_models WHERE is_active", 0), MANAGERS_ONLY),
}


# --- Reads: each returns the ids of the leads it showed --------------------------------------------


@dataclass(frozen=True)
class Read:
    run: Callable[[World, Session, str], set[int]]
    outcome: dict[str, Any]  # actor -> OK (Ana's data comes back) or NotFound / "nothing of Ana's"


NOTHING = "nothing of Ana's"
SEES_ANA = {OWNER: OK, OTHER: NOTHING, MANAGER: OK, ADMIN: OK, NOBODY: NOTHING}


def _detail(w: World, s: Session, a: str) -> set[int]:
    return {detail_service.lead_detail(s, w.ana_lead, NOW, viewer(w, a)).id}


def _next_action(w: World, s: Session, a: str) -> set[int]:
    return {w.ana_lead} if next_action_for(s, w.ana_lead, NOW) is not None else set()


def _queue(owner: Callable[[World], int | None]) -> Callable[[World, Session, str], set[int]]:
    def run(w: World, s: Session, a: str) -> set[int]:
        page = queue_service.action_queue(s, owner_id=owner(w), now=NOW)
        assert page.total == len(page.items) == sum(g.count for g in page.groups)
        return {item.lead_id for item in page.items}

    return run


def _board(owner: Callable[[World], int | None]) -> Callable[[World, Session, str], set[int]]:
    def run(w: World, s: Session, a: str) -> set[int]:
        columns = board_columns(s, flt=BoardFilter(owner_id=owner(w)), now=NOW)
        cards = {card.id for column in columns for card in column.cards}
        assert sum(column.count for column in columns) == len(cards)  # the headers count no hidden deal
        return cards

    return run


def _column(w: World, s: Session, a: str) -> set[int]:
    return {card.id for card in column_cards(s, stage=Stage.NEW.value, flt=BoardFilter(owner_id=w.ana), now=NOW)}


def _health(w: World, s: Session, a: str) -> set[int]:
    """Counts only: Ana's open lead counts as seen when the health of her pipeline shows it."""
    health = pipeline_health(s, owner_id=w.ana, now=NOW)
    assert health.open_count in (0, 1)
    return {w.ana_lead} if health.open_count else set()


def _analytics(w: World, s: Session, a: str) -> set[int]:
    report = analytics_report(s, flt=AnalyticsFilter(owner_id=w.ana))
    assert report.total_leads in (0, 2)
    return w.ana_leads if report.total_leads else set()


def _segments(w: World, s: Session, a: str) -> set[int]:
    report = segment_insights(s, flt=AnalyticsFilter(owner_id=w.ana), min_support=1)
    assert (report.closed, report.won) in ((0, 0), (1, 1))
    return {w.ana_won} if report.closed else set()


def _export(owner: Callable[[World], int | None]) -> Callable[[World, Session, str], set[int]]:
    """As crm_app/api.py runs it: on a connection, in a transaction acting as the viewer."""
    def run(w: World, s: Session, a: str) -> set[int]:
        connection = w.connection
        with connection.begin_nested() as step:
            if a == NOBODY:
                _as_nobody(connection)
            else:
                apply_acting_user(connection, w.users[a].id)
            body = "".join(stream_leads_csv(connection, LeadFilter(owner_id=owner(w))))
            step.rollback()
        rows = list(csv.DictReader(io.StringIO(body)))
        return {int(row["Pipeline CRM id"]) for row in rows}

    return run


def _audit(w: World, s: Session, a: str) -> set[int]:
    return {row.lead_id for row in audit.entries(s, actor=viewer(w, a), lead_id=w.ana_won)}


READS: dict[str, Read] = {
    "lead_detail.lead_detail (Ana's lead by id)": Read(
        _detail, {OWNER: OK, OTHER: NotFound, MANAGER: OK, ADMIN: OK, NOBODY: NotFound}),
    "next_action.next_action_for (Ana's lead by id)": Read(_next_action, SEES_ANA),
    "queue.action_queue (owner filter: Ana)": Read(_queue(lambda w: w.ana), SEES_ANA),
    "queue.action_queue (whole team)": Read(_queue(lambda w: None), SEES_ANA),
    "pipeline.board_columns (owner filter: Ana)": Read(_board(lambda w: w.ana), SEES_ANA),
    "pipeline.board_columns (whole team)": Read(_board(lambda w: None), SEES_ANA),
    "pipeline.column_cards (owner filter: Ana)": Read(_column, SEES_ANA),
    "pipeline_health.pipeline_health (owner filter: Ana)": Read(_health, SEES_ANA),
    "analytics.analytics_report (owner filter: Ana)": Read(_analytics, SEES_ANA),
    "segments.segment_insights (owner filter: Ana)": Read(_segments, SEES_ANA),
    "exporting.stream_leads_csv (owner filter: Ana)": Read(_export(lambda w: w.ana), SEES_ANA),
    "exporting.stream_leads_csv (whole team)": Read(_export(lambda w: None), SEES_ANA),
    "audit.entries (the changes to Ana's closed deal)": Read(
        _audit, {OWNER: Forbidden, OTHER: Forbidden, MANAGER: OK, ADMIN: OK, NOBODY: Forbidden}),
}


# --- The matrix ----------------------------------------------------------------------------------

REFUSED_CELLS: list[str] = []


def _cells(table: dict) -> list:
    return [pytest.param(call, actor, id=f"{call} | {actor}")
            for call, spec in table.items() for actor in ACTORS if actor in spec.outcome]


def _plain_refusal(error: ServiceError) -> None:
    """What the user reads: a sentence, not a database error."""
    message = str(error)
    assert message and message[0].isupper(), message
    for leak in ("psycopg", "sqlalchemy", "SQL", "violates", "row-level", "policy", "Traceback", "DETAIL"):
        assert leak not in message, message


@pytest.mark.parametrize(("call", "actor"), _cells(WRITES))
def test_write(world: World, call: str, actor: str) -> None:
    spec = WRITES[call]
    expected = spec.outcome[actor]
    before = stored(world)
    if expected == OK:
        with acting(world, actor) as s:
            result = spec.attempt(world, s, actor)
        spec.done(world, actor, before, result)
        return
    with acting(world, actor) as s, pytest.raises(expected) as refused:
        spec.attempt(world, s, actor)
    _plain_refusal(refused.value)
    assert stored(world) == before, "a refused attempt changed stored data"
    REFUSED_CELLS.append(f"{call} | {actor}")


@pytest.mark.parametrize(("call", "actor"), _cells(READS))
def test_read(world: World, call: str, actor: str) -> None:
    spec = READS[call]
    expected = spec.outcome[actor]
    before = stored(world)
    if isinstance(expected, type):
        with acting(world, actor) as s, pytest.raises(expected) as refused:
            spec.run(world, s, actor)
        _plain_refusal(refused.value)
        seen: set[int] = set()
    else:
        with acting(world, actor) as s:
            seen = spec.run(world, s, actor)
    assert seen <= world.visible_to(actor), f"shown leads the {actor} may not see: {seen - world.visible_to(actor)}"
    if expected == OK:
        assert seen & world.ana_leads, "Ana's data did not come back"
    else:
        assert not seen & world.ana_leads
        REFUSED_CELLS.append(f"{call} | {actor}")
    assert stored(world) == before


def test_zz_count_of_refused_cells(request, capsys) -> None:
    """The closing count, shown even under -q (the last test of the file, so it runs after the cells)."""
    cells = len(_cells(WRITES)) + len(_cells(READS))
    refusals = sum(1 for table in (WRITES, READS) for spec in table.values() for o in spec.outcome.values() if o != OK)
    with capsys.disabled():
        print(f"\nrole matrix: {cells} cells, {refusals} of them attempts that must be refused; "
              f"{len(REFUSED_CELLS)} were tried and refused in this run")
    ran = [item for item in request.session.items if item.module is request.module]
    if len(ran) == cells + 1:  # the whole matrix ran: every refusal was really tried
        assert len(REFUSED_CELLS) == refusals
