"""The REST API over real HTTP on real PostgreSQL: what an integration (a website form, an email
tool) would send, and what it and the team must then see."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal

from sqlalchemy import text

from crm_app.db.models import Lead
from tests.api.conftest import NOW, ago, auth
from tests.factories import make_lead


def _email() -> str:
    return f"lead-{uuid.uuid4().hex[:10]}@example.com"


def _count(api_db, sql: str, **params) -> int:
    api_db.rollback()  # see what the server committed since
    return api_db.execute(text(sql), params).scalar_one()


def _fields(response) -> dict[str, str]:
    return {f["field"]: f["message"] for f in response.json()["error"]["fields"]}


# --- Upsert ------------------------------------------------------------------------------------------


def test_a_form_creates_a_lead_and_a_second_post_updates_it(http, team, api_db):
    key = auth(team.keys["manager_write"])
    email = _email()
    created = http.post("/leads", json={"email": email, "name": "Form Filler", "company": "Big Co",
                                        "company_size": 400, "source": "webinar"}, headers=key)
    assert created.status_code == 201, created.text
    lead = created.json()
    assert (lead["name"], lead["source"], lead["stage"], lead["owner"]) == ("Form Filler", "webinar", "new", None)
    # Scored at once, with reasons that add up to the score.
    assert sum(r["points"] for r in lead["reasons"]) == lead["score"]
    assert any("employees" in r["text"] for r in lead["reasons"])

    updated = http.post("/leads", json={"email": email.upper(), "title": "CTO", "deal_value": "25000"}, headers=key)
    assert updated.status_code == 200, updated.text
    again = updated.json()
    assert again["id"] == lead["id"] and again["title"] == "CTO" and again["deal_value"] == "25000.00"
    assert again["company"] == "Big Co"  # a field not sent is kept
    assert again["version"] == lead["version"] + 1
    assert _count(api_db, "SELECT count(*) FROM leads WHERE lower(email) = :e", e=email) == 1
    # Sending the same again changes nothing: same version, no new audit entry.
    same = http.post("/leads", json={"email": email, "title": "CTO"}, headers=key)
    assert same.status_code == 200 and same.json()["version"] == again["version"]
    # The edit is in the audit log, naming the key.
    change = api_db.execute(text("SELECT old, new FROM audit_log WHERE lead_id = :id AND action = 'lead_edited'"),
                            {"id": lead["id"]}).one()
    assert change.old == {"title": None, "deal_value": "0.00"}
    assert change.new["title"] == "CTO" and "manager_write" in change.new["via"]


def test_external_id_wins_over_email_and_a_manager_key_gives_a_new_lead_to_a_rep(http, team):
    key = auth(team.keys["manager_write"])
    external = f"hub-{uuid.uuid4().hex[:8]}"
    first = http.post("/leads", json={"external_id": external, "email": _email(), "name": "Ext Person",
                                      "owner_email": team.rep.email}, headers=key)
    assert first.status_code == 201 and first.json()["owner"]["name"] == "Rhea Rep"
    renamed = http.post("/leads", json={"external_id": external, "email": _email(), "name": "Ext Renamed"},
                        headers=key)
    assert renamed.status_code == 200
    assert renamed.json()["id"] == first.json()["id"] and renamed.json()["name"] == "Ext Renamed"


def test_lead_batch_is_all_or_nothing_and_names_the_bad_item(http, team, api_db):
    key = auth(team.keys["manager_write"])
    emails = [_email() for _ in range(3)]
    bad = http.post("/leads/batch", json={"leads": [
        {"email": emails[0], "name": "One"},
        {"email": emails[1], "name": "Two", "company_size": "lots"},
        {"email": emails[2]},  # a new lead without a name
    ]}, headers=key)
    assert bad.status_code == 422
    assert "leads[1].company_size" in _fields(bad)
    assert _count(api_db, "SELECT count(*) FROM leads WHERE email = ANY(:e)", e=emails) == 0

    no_name = http.post("/leads/batch", json={"leads": [{"email": emails[0], "name": "One"}, {"email": emails[2]}]},
                        headers=key)
    assert no_name.status_code == 422 and _fields(no_name) == {"leads[1].name": "A new lead needs a name."}
    assert _count(api_db, "SELECT count(*) FROM leads WHERE email = ANY(:e)", e=emails) == 0

    good = http.post("/leads/batch", json={"leads": [{"email": e, "name": f"Batch {i}"} for i, e in enumerate(emails)]},
                     headers=key)
    assert good.status_code == 200, good.text
    assert [r["created"] for r in good.json()["results"]] == [True, True, True]
    assert _count(api_db, "SELECT count(*) FROM leads WHERE email = ANY(:e)", e=emails) == 3


# --- Events ------------------------------------------------------------------------------------------


def test_an_event_rescores_its_lead_in_the_same_request(http, team, api_db):
    lead = make_lead(api_db, f"Eve {uuid.uuid4().hex[:6]}", now=NOW, owner=team.rep, company_size=10)
    before = lead.score
    website = auth(team.keys["manager_write"])  # prospects' events come from a manager's (the website's) key
    response = http.post("/events", json={"lead": {"email": lead.email}, "type": "pricing_request",
                                          "occurred_at": ago(minutes=5)}, headers=website)
    assert response.status_code == 201, response.text
    scored = response.json()["lead"]
    assert scored["id"] == lead.id and scored["score"] == before + 30 + 20 + 5  # pricing, recent, engagement
    assert any("pricing" in r["text"].lower() for r in scored["reasons"])
    api_db.rollback()
    stored = api_db.get(Lead, lead.id, populate_existing=True)
    assert (stored.score, stored.tier) == (scored["score"], scored["tier"])


def test_a_reply_is_stored_with_its_body_and_its_tone(http, team, api_db):
    lead = make_lead(api_db, f"Tone {uuid.uuid4().hex[:6]}", now=NOW, owner=team.rep)
    body = "Honestly this is too expensive and we are going with a competitor. <script>alert(1)</script>"
    response = http.post("/events", json={"lead": {"id": lead.id}, "type": "email_replied", "body": body},
                         headers=auth(team.keys["rep_write"]))
    assert response.status_code == 201, response.text
    kind, stored_body, sentiment = api_db.execute(
        text("SELECT kind, body, sentiment FROM activities WHERE lead_id = :id ORDER BY id DESC LIMIT 1"),
        {"id": lead.id}).one()
    assert (kind, stored_body) == ("email_received", body)  # stored as sent, never interpreted
    assert sentiment < 0


def test_a_batch_of_events_is_refused_whole_when_one_is_bad(http, team, api_db):
    leads = [make_lead(api_db, f"Batch {i} {uuid.uuid4().hex[:6]}", now=NOW, owner=team.rep) for i in range(3)]
    events = [{"lead": {"id": lead.id}, "type": "page_visit"} for lead in leads]
    events.append({"lead": {"id": leads[0].id}, "type": "demo_request", "occurred_at": "2999-01-01T00:00:00Z"})
    ids = [lead.id for lead in leads]
    before = _count(api_db, "SELECT count(*) FROM activities WHERE lead_id = ANY(:ids)", ids=ids)
    response = http.post("/events/batch", json={"events": events}, headers=auth(team.keys["manager_write"]))
    assert response.status_code == 422
    assert _fields(response) == {"events[3].occurred_at": "An activity cannot be in the future."}
    assert _count(api_db, "SELECT count(*) FROM activities WHERE lead_id = ANY(:ids)", ids=ids) == before

    events[3]["occurred_at"] = ago(hours=1)
    response = http.post("/events/batch", json={"events": events}, headers=auth(team.keys["manager_write"]))
    assert response.status_code == 201, response.text
    assert response.json()["accepted"] == 4 and {s["id"] for s in response.json()["leads"]} == set(ids)
    assert _count(api_db, "SELECT count(*) FROM activities WHERE lead_id = ANY(:ids)", ids=ids) == before + 4


def test_a_thousand_events_in_one_batch_and_no_more(http, team, api_db):
    lead = make_lead(api_db, f"Busy {uuid.uuid4().hex[:6]}", now=NOW, owner=team.rep)
    events = [{"lead": {"email": lead.email}, "type": "email_opened", "occurred_at": ago(days=3, seconds=i)}
              for i in range(1000)]
    response = http.post("/events/batch", json={"events": events}, headers=auth(team.keys["manager_write"]))
    assert response.status_code == 201, response.text
    assert response.json()["accepted"] == 1000
    # Engagement is capped at 25 however many opens there are.
    [scored] = response.json()["leads"]
    assert any(r["points"] == 25 and "interaction" in r["text"].lower() for r in scored["reasons"]), scored
    too_many = http.post("/events/batch", json={"events": events + events[:1]},
                         headers=auth(team.keys["manager_write"]))
    assert too_many.status_code == 422 and "events" in _fields(too_many)


# --- Idempotency -------------------------------------------------------------------------------------


def test_a_retried_event_is_counted_once(http, team, api_db):
    lead = make_lead(api_db, f"Retry {uuid.uuid4().hex[:6]}", now=NOW, owner=team.rep)
    event = {"lead": {"id": lead.id}, "type": "demo_request", "occurred_at": ago(minutes=1)}
    headers = {**auth(team.keys["manager_write"]), "Idempotency-Key": f"evt-{uuid.uuid4()}"}
    first = http.post("/events", json=event, headers=headers)
    retry = http.post("/events", json=event, headers=headers)
    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json() and retry.headers.get("Idempotent-Replayed") == "true"
    assert _count(api_db, "SELECT count(*) FROM activities WHERE lead_id = :id AND kind = 'demo_request'",
                  id=lead.id) == 1

    other_body = http.post("/events", json={**event, "type": "pricing_request"}, headers=headers)
    assert other_body.status_code == 422 and "Idempotency-Key" in _fields(other_body)


def test_concurrent_retries_apply_once(http, team, api_db):
    lead = make_lead(api_db, f"Race {uuid.uuid4().hex[:6]}", now=NOW, owner=team.rep)
    event = {"lead": {"id": lead.id}, "type": "form_submission", "occurred_at": ago(minutes=2)}
    headers = {**auth(team.keys["manager_write"]), "Idempotency-Key": f"race-{uuid.uuid4()}"}
    answers = []

    def send():
        answers.append(http.post("/events", json=event, headers=headers))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [201] * 4
    assert len({a.text for a in answers}) == 1
    assert _count(api_db, "SELECT count(*) FROM activities WHERE lead_id = :id", id=lead.id) == 1


# --- Keys, scopes, limits ------------------------------------------------------------------------------


def test_no_key_or_a_wrong_key_is_refused(http):
    assert http.get("/leads").status_code == 401
    wrong = http.get("/leads", headers=auth("crm_" + "x" * 43))
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "This API key is not valid."


def test_a_read_key_reads_but_cannot_write(http, team, api_db):
    key = auth(team.keys["rep_read"])
    assert http.get("/leads", headers=key).status_code == 200
    email = _email()
    refused = http.post("/leads", json={"email": email, "name": "Nope"}, headers=key)
    assert refused.status_code == 403 and "read-only" in refused.json()["error"]["message"]
    assert _count(api_db, "SELECT count(*) FROM leads WHERE email = :e", e=email) == 0


def test_a_revoked_key_stops_working_at_once(http, team, api_db):
    from crm_app.domain import Role
    from crm_app.services.api_keys import create_key, revoke_key
    from crm_app.services.permissions import CurrentUser

    admin = CurrentUser(team.admin.id, team.admin.email, team.admin.name, Role.ADMIN)
    secret, key_id = create_key(api_db, admin, name="Temp", scope="write", user_id=team.rep.id, now=NOW)
    assert http.get("/me", headers=auth(secret)).json()["acts_as"]["name"] == "Rhea Rep"
    revoke_key(api_db, admin, key_id, NOW)
    refused = http.get("/me", headers=auth(secret))
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
    stored = api_db.execute(text("SELECT secret_hash FROM api_keys WHERE id = :id"), {"id": key_id}).scalar_one()
    assert secret not in stored and len(stored) == 64  # only a hash is kept


def test_over_the_limit_is_429_with_retry_after(http, team):
    key = auth(team.keys["slow"])
    statuses = [http.get("/me", headers=key) for _ in range(4)]
    assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
    assert statuses[3].status_code == 429
    assert 1 <= int(statuses[3].headers["Retry-After"]) <= 60
    assert statuses[2].headers["X-RateLimit-Remaining"] == "0"


# --- Row-level security: a key acts as its user -----------------------------------------------------


def test_a_rep_key_cannot_read_or_write_another_reps_lead(http, team, api_db):
    theirs = make_lead(api_db, f"Theirs {uuid.uuid4().hex[:6]}", now=NOW, owner=team.other_rep)
    key = auth(team.keys["rep_write"])
    assert http.get(f"/leads/{theirs.id}", headers=key).status_code == 404
    listed = http.get("/leads", params={"q": theirs.name, "limit": 200}, headers=key).json()["items"]
    assert theirs.id not in [lead["id"] for lead in listed]

    event = http.post("/events", json={"lead": {"id": theirs.id}, "type": "call"}, headers=key)
    assert event.status_code == 404 and "lead" in _fields(event)
    moved = http.post(f"/leads/{theirs.id}/stage", json={"stage": "won"}, headers=key)
    assert moved.status_code == 404
    # Upserting their email must not create a twin nor touch theirs, nor say that it exists.
    twin = http.post("/leads", json={"email": theirs.email, "name": "Twin", "company": "Hijack"}, headers=key)
    assert twin.status_code == 404 and "email" in _fields(twin)
    api_db.rollback()
    stored = api_db.get(Lead, theirs.id, populate_existing=True)
    assert (stored.company, stored.stage, stored.version) == (theirs.company, theirs.stage, theirs.version)
    assert _count(api_db, "SELECT count(*) FROM activities WHERE lead_id = :id", id=theirs.id) == 0
    # Their own key sees it.
    assert http.get(f"/leads/{theirs.id}", headers=auth(team.keys["other_rep_write"])).status_code == 200


def test_a_rep_key_cannot_give_a_lead_away(http, team, api_db):
    email = _email()
    refused = http.post("/leads", json={"email": email, "name": "Gift", "owner_email": team.other_rep.email},
                        headers=auth(team.keys["rep_write"]))
    assert refused.status_code == 403
    assert _count(api_db, "SELECT count(*) FROM leads WHERE email = :e", e=email) == 0
    given = http.post("/leads", json={"email": email, "name": "Gift", "owner_email": team.other_rep.email},
                      headers=auth(team.keys["manager_write"]))
    assert given.status_code == 201 and given.json()["owner"]["name"] == "Otto Other"


# --- Reads and stage moves ---------------------------------------------------------------------------


def test_pages_walk_every_visible_lead_once_best_first(http, team, api_db):
    key = auth(team.keys["other_rep_write"])
    for i in range(5):
        make_lead(api_db, f"Page {i} {uuid.uuid4().hex[:6]}", now=NOW, owner=team.other_rep, company_size=20 * i)
    visible = _count(api_db, "SELECT count(*) FROM leads WHERE owner_id = :me OR owner_id IS NULL",
                     me=team.other_rep.id)
    seen, cursor, scores = [], None, []
    while True:
        page = http.get("/leads", params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=key).json()
        seen += [lead["id"] for lead in page["items"]]
        scores += [lead["score"] for lead in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == visible
    assert scores == sorted(scores, reverse=True)
    bad = http.get("/leads", params={"cursor": "not-a-cursor"}, headers=key)
    assert bad.status_code == 422 and "cursor" in _fields(bad)


def test_a_stage_move_checks_the_version_it_was_sent_with(http, team, api_db):
    lead = make_lead(api_db, f"Mover {uuid.uuid4().hex[:6]}", now=NOW, owner=team.rep)
    key = auth(team.keys["rep_write"])
    moved = http.post(f"/leads/{lead.id}/stage", json={"stage": "contacted", "expected_version": lead.version},
                      headers=key)
    assert moved.status_code == 200 and moved.json()["stage"] == "contacted"
    stale = http.post(f"/leads/{lead.id}/stage", json={"stage": "qualified", "expected_version": lead.version},
                      headers=key)
    assert stale.status_code == 409 and "expected_version" in _fields(stale)
    assert _count(api_db, "SELECT count(*) FROM stage_changes WHERE lead_id = :id AND to_stage = 'qualified'",
                  id=lead.id) == 0
    assert _count(api_db, "SELECT count(*) FROM audit_log WHERE lead_id = :id AND action = 'stage_move_refused'",
                  id=lead.id) == 1


def test_bad_payloads_name_the_field(http, team):
    key = auth(team.keys["manager_write"])
    cases = [
        ({"email": _email(), "name": "X", "company_size": "many"}, "company_size"),
        ({"email": _email(), "name": "X", "source": "carrier pigeon"}, "source"),
        ({"email": _email(), "name": "X", "favourite_colour": "blue"}, "favourite_colour"),
        ({"email": _email(), "name": "X" * 201}, "name"),
        ({"email": "not an email", "name": "X"}, "email"),
        ({"email": _email(), "name": "X", "deal_value": -5}, "deal_value"),
        ({"name": "No way to match"}, "email"),
    ]
    for payload, field in cases:
        response = http.post("/leads", json=payload, headers=key)
        assert response.status_code == 422, (payload, response.text)
        assert field in _fields(response), (payload, response.json())
    not_json = http.post("/leads", content=b"{nope", headers={**key, "Content-Type": "application/json"})
    assert not_json.status_code == 422
    unknown_type = http.post("/events", json={"lead": {"id": 1}, "type": "telepathy"}, headers=key)
    assert unknown_type.status_code == 422 and "type" in _fields(unknown_type)


def test_money_keeps_its_cents(http, team):
    response = http.post("/leads", json={"email": _email(), "name": "Cents", "deal_value": "1234.5"},
                         headers=auth(team.keys["manager_write"]))
    assert Decimal(response.json()["deal_value"]) == Decimal("1234.50")
