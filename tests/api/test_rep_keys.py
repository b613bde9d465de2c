"""A key acting as a rep does what the rep's pages allow, and learns nothing about other reps' books
(issue #17, item 11): no lead creation (a lead elsewhere answers like a lead nowhere), no
prospect-side events (a rep cannot push their own leads Hot). Keys acting as a manager or admin
feed prospects in."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from tests.api.conftest import NOW, ago, auth
from tests.factories import make_lead


def _answer(response) -> tuple[int, dict]:
    return response.status_code, response.json()


def test_a_lead_in_another_reps_book_answers_exactly_like_no_lead(http, team, api_db):
    theirs = make_lead(api_db, f"Hidden {uuid.uuid4().hex[:6]}", now=NOW, owner=team.other_rep)
    theirs.external_id = f"hidden-{uuid.uuid4().hex[:8]}"
    api_db.add(theirs)
    api_db.commit()
    nobody, nothing = f"nobody-{uuid.uuid4().hex[:8]}@example.com", f"nothing-{uuid.uuid4().hex[:8]}"
    key = auth(team.keys["rep_write"])
    pairs = [
        ({"email": theirs.email, "name": "Probe"}, {"email": nobody, "name": "Probe"}),
        ({"email": theirs.email.upper()}, {"email": nobody.upper()}),
        ({"external_id": theirs.external_id, "name": "Probe"}, {"external_id": nothing, "name": "Probe"}),
        (
            {"external_id": theirs.external_id, "email": nobody, "name": "Probe"},
            {"external_id": nothing, "email": nobody, "name": "Probe"},
        ),
    ]
    for hidden, missing in pairs:
        elsewhere, nowhere = (
            http.post("/leads", json=hidden, headers=key),
            http.post("/leads", json=missing, headers=key),
        )
        assert _answer(elsewhere) == _answer(nowhere), (hidden, elsewhere.text, nowhere.text)
        assert elsewhere.status_code == 404
        batch = [
            http.post("/leads/batch", json={"leads": [probe]}, headers=key) for probe in (hidden, missing)
        ]
        assert _answer(batch[0]) == _answer(batch[1]) and batch[0].status_code == 404
    # Nothing was created or touched.
    api_db.rollback()
    assert (
        api_db.execute(
            text("SELECT count(*) FROM leads WHERE lower(email) = :e OR external_id = :x"),
            {"e": nobody, "x": nothing},
        ).scalar_one()
        == 0
    )
    assert api_db.execute(
        text("SELECT version, name FROM leads WHERE id = :id"), {"id": theirs.id}
    ).one() == (theirs.version, theirs.name)


def test_a_rep_key_cannot_report_what_the_prospect_did(http, team, api_db):
    lead = make_lead(api_db, f"Own {uuid.uuid4().hex[:6]}", now=NOW, owner=team.rep, company_size=10)
    key = auth(team.keys["rep_write"])
    for kind in (
        "pricing_request",
        "demo_request",
        "pricing_page_visit",
        "page_visit",
        "form_submission",
        "email_opened",
        "email_clicked",
    ):
        refused = http.post("/events", json={"lead": {"id": lead.id}, "type": kind}, headers=key)
        assert refused.status_code == 403 and kind in refused.json()["error"]["message"], refused.text
    batch = http.post(
        "/events/batch",
        json={
            "events": [
                {"lead": {"id": lead.id}, "type": "call"},
                {"lead": {"id": lead.id}, "type": "demo_request"},
            ]
        },
        headers=key,
    )
    assert batch.status_code == 403 and "events[1].type" in batch.json()["error"]["message"]
    api_db.rollback()
    assert (
        api_db.execute(text("SELECT count(*) FROM activities WHERE lead_id = :id"), {"id": lead.id}).scalar()
        == 0
    )
    assert (
        api_db.execute(text("SELECT score FROM leads WHERE id = :id"), {"id": lead.id}).scalar() == lead.score
    )
    # What a rep logs by hand works, and a manager's key (a website's) reports the prospect's requests.
    for kind in ("call", "email_sent", "meeting", "email_replied"):
        assert (
            http.post(
                "/events", json={"lead": {"id": lead.id}, "type": kind, "body": "Hi"}, headers=key
            ).status_code
            == 201
        )
    hot = http.post(
        "/events",
        json={"lead": {"id": lead.id}, "type": "demo_request", "occurred_at": ago(minutes=1)},
        headers=auth(team.keys["manager_write"]),
    )
    assert hot.status_code == 201, hot.text


def test_a_rep_key_still_updates_and_claims_what_the_rep_sees(http, team, api_db):
    own = make_lead(api_db, f"Mine {uuid.uuid4().hex[:6]}", now=NOW, owner=team.rep)
    pool = make_lead(api_db, f"Pool {uuid.uuid4().hex[:6]}", now=NOW)
    key = auth(team.keys["rep_write"])
    updated = http.post("/leads", json={"email": own.email, "title": "CTO"}, headers=key)
    assert updated.status_code == 200 and updated.json()["title"] == "CTO"
    claimed = http.post("/leads", json={"email": pool.email, "owner_email": team.rep.email}, headers=key)
    assert claimed.status_code == 200 and claimed.json()["owner"]["id"] == team.rep.id
    # A manager's key creates leads for a rep.
    email = f"new-{uuid.uuid4().hex[:8]}@example.com"
    created = http.post(
        "/leads",
        json={"email": email, "name": "New One", "owner_email": team.rep.email},
        headers=auth(team.keys["manager_write"]),
    )
    assert created.status_code == 201 and created.json()["owner"]["id"] == team.rep.id
