"""The web path (the app's login, acting as the manager under row-level security, as an import job)
and the command-line path (the tables' owner) import the same generated file into a database holding
many leads with the same result; the matching sees what the importing user may see; a cancelled
import stores nothing. Each test has databases of its own: imports commit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from sqlalchemy import text
from sqlmodel import Session

from crm_app.db.engine import login_role_url, make_app_engine, make_engine
from crm_app.db.security import act_as, read_acting_key
from crm_app.demo.import_load import MAPPING, seed_stored_leads, seed_team, write_import_file
from crm_app.services import import_runs
from crm_app.services.errors import Forbidden
from crm_app.services.importing import import_file
from tests.conftest import scratch_database

NOW = datetime(2026, 11, 12, 15, 0, tzinfo=timezone.utc)
STORED = 3_000
ROWS = 600


class Team:
    def __init__(self, url: str):
        self.owner = make_engine(url)
        self.ids = seed_team(self.owner)
        seed_stored_leads(self.owner, STORED)

        def key() -> bytes:
            with self.owner.connect() as conn:
                return read_acting_key(conn)

        self.web = make_app_engine(login_role_url(url), key)
        self.manager = self.ids["Bench Manager"]

    def as_manager(self) -> Session:
        return act_as(Session(self.web, expire_on_commit=False), self.manager)

    def stored(self) -> list[tuple]:
        with self.owner.connect() as conn:
            return [tuple(r) for r in conn.execute(text(
                "SELECT id, external_id, name, email, company, company_size, source, stage, deal_value, owner_id, "
                "score, tier, score_reasons, import_row, version FROM leads ORDER BY id"))]

    def dispose(self) -> None:
        self.web.dispose()
        self.owner.dispose()


@pytest.fixture
def two_teams(database_url: str) -> Iterator[tuple[Team, Team]]:
    with scratch_database(database_url, "crm_imp_cli") as a, scratch_database(database_url, "crm_imp_web") as b:
        teams = Team(a), Team(b)
        yield teams
        for team in teams:
            team.dispose()


@pytest.fixture
def team(database_url: str) -> Iterator[Team]:
    with scratch_database(database_url, "crm_imp") as url:
        one = Team(url)
        yield one
        one.dispose()


def test_the_web_path_and_the_command_line_store_the_same_leads(two_teams, tmp_path):
    cli_team, web_team = two_teams
    path = write_import_file(tmp_path / "leads.csv", ROWS, stored=STORED)
    with Session(cli_team.owner, expire_on_commit=False) as session:
        by_cli = import_file(session, path, MAPPING, now=NOW)
    with web_team.as_manager() as session:
        by_web = import_file(session, path, MAPPING, now=NOW, actor_id=web_team.manager)
    # A third of the rows are new; the others match stored leads of the manager, both reps and the pool.
    assert by_cli.created == ROWS // 3
    assert (by_web.created, by_web.updated, by_web.skipped) == (by_cli.created, by_cli.updated, by_cli.skipped)
    assert by_cli.updated + by_cli.skipped == ROWS - ROWS // 3
    assert web_team.stored() == cli_team.stored()
    assert len(web_team.stored()) == STORED + ROWS // 3


def test_matching_sees_what_the_manager_sees_and_a_rep_may_not_import(team, tmp_path):
    path = write_import_file(tmp_path / "leads.csv", ROWS, stored=STORED)
    rep = team.ids["Bench Rep One"]
    with act_as(Session(team.web, expire_on_commit=False), rep) as session:
        visible_to_rep = session.execute(text("SELECT count(*) FROM leads")).scalar_one()
        with pytest.raises(Forbidden):
            import_file(session, path, MAPPING, now=NOW, actor_id=rep)
    assert visible_to_rep < STORED  # the rep sees their own and the pool's leads only
    with team.as_manager() as session:
        assert session.execute(text("SELECT count(*) FROM leads")).scalar_one() == STORED
        summary = import_file(session, path, MAPPING, now=NOW, actor_id=team.manager)
    # Every matching row found its stored lead whoever owns it: nothing matched was created again.
    assert summary.created == ROWS // 3
    with team.owner.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM leads")).scalar_one() == STORED + ROWS // 3
        owners = conn.execute(text("SELECT count(DISTINCT coalesce(owner_id, 0)) FROM leads l "
                                   "WHERE l.version > 1")).scalar_one()
    assert owners == 4  # updated leads of the manager, both reps and the pool


def test_a_duplicate_email_in_the_file_is_refused_naming_its_rows(team, tmp_path):
    path = write_import_file(tmp_path / "leads.csv", 30, stored=0)
    with path.open("a") as handle:
        handle.write("Again,new5@file.example,,Firm,3,website,new,0\n")
    with team.as_manager() as session, pytest.raises(Exception) as refused:
        import_file(session, path, MAPPING, now=NOW, actor_id=team.manager)
    assert "rows 6, 31 have the same email" in str(refused.value)
    assert any(e.row == 31 and "Same email as row 6" in e.message for e in refused.value.report.errors)
    assert len(team.stored()) == STORED


def test_an_import_cancelled_from_the_page_stores_nothing_and_its_job_says_cancelled(team, tmp_path):
    path = write_import_file(tmp_path / "leads.csv", ROWS, stored=STORED)
    open_owner = lambda: Session(team.owner, expire_on_commit=False)  # noqa: E731
    with open_owner() as session:
        job_id = import_runs.start_job(session, team.manager, "leads.csv", NOW)
    control = import_runs.ImportControl()
    inside = threading.Event()

    def progress(step) -> None:
        if step.message == "Matching existing leads":
            inside.set()
            control.cancelled.wait(30)  # hold the import inside its transaction until the cancel lands

    outcome: list[BaseException] = []

    def run() -> None:
        try:
            with import_runs.heartbeat(open_owner, job_id, control, lambda: datetime.now(timezone.utc)), \
                    team.as_manager() as session:
                import_file(session, path, MAPPING, now=NOW, actor_id=team.manager, progress=progress,
                            control=control)
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    assert inside.wait(60)
    with open_owner() as session:  # what the page's Cancel does
        assert import_runs.request_cancel(session, team.manager)
    worker.join(60)
    assert len(outcome) == 1 and isinstance(outcome[0], import_runs.ImportCancelled)
    with open_owner() as session:
        import_runs.finish_job(session, job_id, "cancelled", NOW, str(outcome[0]))
        assert session.execute(text("SELECT status FROM import_jobs WHERE id = :id"),
                               {"id": job_id}).scalar_one() == "cancelled"
    assert len(team.stored()) == STORED
    with team.owner.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM leads WHERE version > 1")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM imports")).scalar_one() == 0


def test_a_cancel_ends_the_statement_the_import_is_waiting_in(team, tmp_path):
    """The page's Cancel stops an import inside a running statement, not only between steps: here the
    import waits for leads another transaction holds (an edit in progress), and the cancel ends that
    wait while the other transaction still holds them."""
    path = write_import_file(tmp_path / "leads.csv", ROWS, stored=STORED)
    open_owner = lambda: Session(team.owner, expire_on_commit=False)  # noqa: E731
    with open_owner() as session:
        job_id = import_runs.start_job(session, team.manager, "leads.csv", NOW)
    control = import_runs.ImportControl()
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            with import_runs.heartbeat(open_owner, job_id, control, lambda: datetime.now(timezone.utc)), \
                    team.as_manager() as session:
                import_file(session, path, MAPPING, now=NOW, actor_id=team.manager, control=control)
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome.append(error)

    with team.owner.connect() as editor:
        editor.execute(text("SELECT id FROM leads FOR UPDATE"))  # every stored lead, held until rollback
        worker = threading.Thread(target=run)
        worker.start()
        with team.owner.connect() as conn:
            def waiting() -> bool:
                return conn.execute(text(
                    "SELECT count(*) FROM pg_stat_activity a JOIN import_jobs j ON j.backend_pid = a.pid "
                    "WHERE j.id = :id AND a.wait_event_type = 'Lock'"), {"id": job_id}).scalar_one() == 1

            deadline = datetime.now(timezone.utc).timestamp() + 60
            while not waiting():
                assert datetime.now(timezone.utc).timestamp() < deadline, "the import never waited for the leads"
                threading.Event().wait(0.2)
            assert control.step == "Comparing matched leads"
        with open_owner() as session:  # what the page's Cancel does
            assert import_runs.request_cancel(session, team.manager)
        worker.join(30)
        assert not worker.is_alive(), "the cancel did not end the statement the import was waiting in"
        editor.rollback()
    assert len(outcome) == 1 and isinstance(outcome[0], import_runs.ImportCancelled)
    assert len(team.stored()) == STORED
    with team.owner.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM leads WHERE version > 1")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM imports")).scalar_one() == 0
