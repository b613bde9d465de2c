"""Activities and stage changes carry their lead's owner (migration 0025), and row-level security
reads that column: it is always the lead's owner, whatever a writer sends, and follows the lead in
the same transaction that reassigns it."""

from __future__ import annotations

from sqlalchemy import text
from sqlmodel import Session

from tests.test_row_security import Team, _as, _ids, _refused, team  # noqa: F401 - the fixture


def _owners(session: Session, table: str, lead_id: int) -> set:
    session.execute(text("RESET ROLE"))
    return {row[0] for row in session.execute(text(f"SELECT owner_id FROM {table} WHERE lead_id = :id"),
                                              {"id": lead_id})}


def _log(session: Session, lead_id: int) -> None:
    """Two activities and a move on a lead, written as the tables' owner."""
    session.execute(text("INSERT INTO activities (lead_id, kind, occurred_at, created_at) "
                         "VALUES (:id, 'page_visit', now(), now()), (:id, 'email_opened', now(), now())"),
                    {"id": lead_id})
    session.execute(text("INSERT INTO stage_changes (lead_id, from_stage, to_stage, changed_at) "
                         "VALUES (:id, 'new', 'contacted', now())"), {"id": lead_id})


def test_history_rows_carry_their_leads_owner_whatever_the_writer_sends(session: Session, team: Team) -> None:
    _log(session, team.ana_lead)
    _log(session, team.pool_lead)
    assert _owners(session, "activities", team.ana_lead) == {team.ana}
    assert _owners(session, "activities", team.pool_lead) == {None}
    _as(session, team.ana)
    # Ana writes on her own lead, claiming the row is Ben's: it is hers all the same.
    session.execute(text("INSERT INTO activities (lead_id, kind, occurred_at, created_at, owner_id) "
                         "VALUES (:id, 'call', now(), now(), :ben)"), {"id": team.ana_lead, "ben": team.ben})
    session.execute(text("INSERT INTO stage_changes (lead_id, from_stage, to_stage, changed_at, owner_id) "
                         "VALUES (:id, 'new', 'contacted', now(), NULL)"), {"id": team.ana_lead})
    assert _owners(session, "activities", team.ana_lead) == {team.ana}
    assert _owners(session, "stage_changes", team.ana_lead) == {team.ana}
    _as(session, team.ana)
    # Nor can she hand a row of hers to anyone by updating it.
    session.execute(text("UPDATE activities SET owner_id = NULL WHERE lead_id = :id"), {"id": team.ana_lead})
    assert _owners(session, "activities", team.ana_lead) == {team.ana}


def test_a_rep_attaches_nothing_to_another_reps_lead_by_forging_the_owner(session: Session, team: Team) -> None:
    _as(session, team.ana)
    for table, sql in (
        ("activities", "INSERT INTO activities (lead_id, kind, occurred_at, created_at, owner_id) "
                       "VALUES (:id, 'note', now(), now(), :ana)"),
        ("stage_changes", "INSERT INTO stage_changes (lead_id, to_stage, changed_at, owner_id) "
                          "VALUES (:id, 'won', now(), :ana)"),
    ):
        assert _refused(session, sql, {"id": team.ben_lead, "ana": team.ana}), table
    assert _ids(session, f"SELECT id FROM activities WHERE lead_id = {team.ben_lead}") == set()


def test_history_follows_a_reassignment_in_the_same_transaction(session: Session, team: Team) -> None:
    _log(session, team.ben_lead)
    ben_rows = _ids(session, f"SELECT id FROM activities WHERE lead_id = {team.ben_lead}")
    assert len(ben_rows) == 2
    _as(session, team.meg)  # a manager hands Ben's lead to Ana
    assert session.execute(text("UPDATE leads SET owner_id = :ana WHERE id = :id"),
                           {"ana": team.ana, "id": team.ben_lead}).rowcount == 1
    assert _owners(session, "activities", team.ben_lead) == {team.ana}
    assert _owners(session, "stage_changes", team.ben_lead) == {team.ana}
    _as(session, team.ana)
    assert _ids(session, f"SELECT id FROM activities WHERE lead_id = {team.ben_lead}") == ben_rows
    _as(session, team.ben)
    assert _ids(session, f"SELECT id FROM activities WHERE lead_id = {team.ben_lead}") == set()
    assert _ids(session, f"SELECT id FROM stage_changes WHERE lead_id = {team.ben_lead}") == set()


def test_a_claim_from_the_pool_brings_the_history_along(session: Session, team: Team) -> None:
    _log(session, team.pool_lead)
    _as(session, team.ben)
    pool_rows = _ids(session, f"SELECT id FROM activities WHERE lead_id = {team.pool_lead}")
    assert len(pool_rows) == 2  # the pool's history is everyone's
    _as(session, team.ana)
    session.execute(text("UPDATE leads SET owner_id = :ana WHERE id = :id"), {"ana": team.ana, "id": team.pool_lead})
    assert _owners(session, "activities", team.pool_lead) == {team.ana}
    _as(session, team.ben)
    assert _ids(session, f"SELECT id FROM activities WHERE lead_id = {team.pool_lead}") == set()
