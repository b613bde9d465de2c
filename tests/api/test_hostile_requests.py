"""Hostile requests against the REST API and the export route (issue #17): each is refused with the
API's usual JSON error (or 403 for a link), never a 500, and nothing is written."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from sqlalchemy import text

from tests.api.conftest import auth


def _cursor(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode() if not isinstance(value, bytes) else value).decode()


def _is_json_error(response, status: int) -> bool:
    body = response.json()
    return response.status_code == status and body["error"]["status"] == status and body["error"]["message"]


@pytest.mark.parametrize("payload, field", [
    ({"name": "Nul\x00Name"}, "name"),
    ({"name": "\x00"}, "name"),
    ({"name": "Ok", "external_id": "ext\x00id"}, "external_id"),
    ({"name": "Ok", "external_id": "\x00"}, "external_id"),
])
def test_a_nul_in_name_or_external_id_is_a_422_naming_the_field(http, team, api_db, payload, field):
    email = f"nul-{uuid.uuid4().hex[:8]}@example.com"
    response = http.post("/leads", json={"email": email, **payload}, headers=auth(team.keys["manager_write"]))
    assert _is_json_error(response, 422), response.text
    assert field in {f["field"] for f in response.json()["error"]["fields"]}
    api_db.rollback()
    assert api_db.execute(text("SELECT count(*) FROM leads WHERE email = :e"), {"e": email}).scalar_one() == 0


@pytest.mark.parametrize("query", ["q=%00", "q=abc%00def", "q=%00%00&tier=hot", "q=%00&cursor=x"])
def test_a_nul_in_the_search_is_a_422_even_for_a_read_key(http, team, query):
    response = http.get(f"/leads?{query}", headers=auth(team.keys["rep_read"]))
    assert _is_json_error(response, 422), response.text
    assert "q" in {f["field"] for f in response.json()["error"]["fields"]}


@pytest.mark.parametrize("sort, cursor", [
    ("score", _cursor(b"[1e999,1]")), ("score", _cursor({"a": 1})), ("score", _cursor([10 ** 30, 1])),
    ("score", _cursor([1, 10 ** 30])), ("score", _cursor([1])), ("score", _cursor("text")),
    ("score", _cursor(b"[NaN,1]")), ("score", _cursor([True, 1])), ("score", _cursor([1.5, 2])),
    ("updated", _cursor(["9999-99-99", 1])), ("updated", _cursor(["2026-01-01T00:00:00", 10 ** 20])),
    ("updated", _cursor([{"x": 1}, 1])), ("updated", _cursor(["2026-01-01T00:00:00\x00", 1])),
    ("score", "%%%%"), ("score", "\u00e9t\u00e9"), ("score", "=" * 50),
])
def test_a_tampered_cursor_is_a_422(http, team, sort, cursor):
    response = http.get("/leads", params={"cursor": cursor, "sort": sort}, headers=auth(team.keys["rep_read"]))
    assert _is_json_error(response, 422), (cursor, response.text)
    assert "cursor" in {f["field"] for f in response.json()["error"]["fields"]}


@pytest.mark.parametrize("token", [
    "e30.%C3%A9", "e30.abc%C3%A9def", "%C3%A9.%C3%A9", "e30.%00", "..", ".", "e30", "%ED%A0%80.x", "e30.%FF",
    "x" * 5000, "%E2%80%AE.%EF%BC%9D",
])
def test_a_tampered_export_link_is_a_403(api_url, token):
    import httpx

    response = httpx.get(f"{api_url}/export/leads.csv?token={token}", timeout=30)
    assert response.status_code == 403, (token, response.status_code, response.text[:200])
    assert "not valid" in response.text


@pytest.mark.parametrize("fragment, field", [
    ('"name": "Lone \\ud800 half"', "name"), ('"name": "Ok", "company": "\\udfff"', "company"),
    ('"name": "Ok", "custom_fields": {"k": "\\ud83d"}', "custom_fields.k"),
    ('"name": "Ok", "custom_fields": {"\\ud83d": "v"}', "custom_fields"),
    ('"name": "Ok", "external_id": "\\ud800x"', "external_id"),
])
def test_a_lone_surrogate_in_the_json_is_a_422(http, team, api_db, fragment, field):
    """JSON may escape half of a surrogate pair; PostgreSQL's UTF-8 cannot store it."""
    email = f"half-{uuid.uuid4().hex[:8]}@example.com"
    body = '{"email": "%s", %s}' % (email, fragment)
    response = http.post("/leads", content=body.encode(), headers={**auth(team.keys["manager_write"]),
                                                                    "Content-Type": "application/json"})
    assert _is_json_error(response, 422), response.text
    assert any(f["field"].startswith(field) for f in response.json()["error"]["fields"]), response.text
    api_db.rollback()
    assert api_db.execute(text("SELECT count(*) FROM leads WHERE email = :e"), {"e": email}).scalar_one() == 0


def test_a_lone_surrogate_in_an_event_is_a_422(http, team):
    body = '{"lead": {"email": "x@example.com"}, "type": "email_replied", "body": "half \\udc00"}'
    response = http.post("/events", content=body.encode(), headers={**auth(team.keys["rep_write"]),
                                                                     "Content-Type": "application/json"})
    assert _is_json_error(response, 422), response.text
