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
    return base64.urlsafe_b64encode(
        json.dumps(value).encode() if not isinstance(value, bytes) else value
    ).decode()


def _is_json_error(response, status: int) -> bool:
    body = response.json()
    return response.status_code == status and body["error"]["status"] == status and body["error"]["message"]


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"name": "Nul\x00Name"}, "name"),
        ({"name": "\x00"}, "name"),
        ({"name": "Ok", "external_id": "ext\x00id"}, "external_id"),
        ({"name": "Ok", "external_id": "\x00"}, "external_id"),
    ],
)
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


@pytest.mark.parametrize(
    "sort, cursor",
    [
        ("score", _cursor(b"[1e999,1]")),
        ("score", _cursor({"a": 1})),
        ("score", _cursor([10**30, 1])),
        ("score", _cursor([1, 10**30])),
        ("score", _cursor([1])),
        ("score", _cursor("text")),
        ("score", _cursor(b"[NaN,1]")),
        ("score", _cursor([True, 1])),
        ("score", _cursor([1.5, 2])),
        ("updated", _cursor(["9999-99-99", 1])),
        ("updated", _cursor(["2026-01-01T00:00:00", 10**20])),
        ("updated", _cursor([{"x": 1}, 1])),
        ("updated", _cursor(["2026-01-01T00:00:00\x00", 1])),
        ("score", "%%%%"),
        ("score", "\u00e9t\u00e9"),
        ("score", "=" * 50),
    ],
)
def test_a_tampered_cursor_is_a_422(http, team, sort, cursor):
    response = http.get(
        "/leads", params={"cursor": cursor, "sort": sort}, headers=auth(team.keys["rep_read"])
    )
    assert _is_json_error(response, 422), (cursor, response.text)
    assert "cursor" in {f["field"] for f in response.json()["error"]["fields"]}


@pytest.mark.parametrize(
    "token",
    [
        "e30.%C3%A9",
        "e30.abc%C3%A9def",
        "%C3%A9.%C3%A9",
        "e30.%00",
        "..",
        ".",
        "e30",
        "%ED%A0%80.x",
        "e30.%FF",
        "x" * 5000,
        "%E2%80%AE.%EF%BC%9D",
    ],
)
def test_a_tampered_export_link_is_a_403(api_url, token):
    import httpx

    response = httpx.get(f"{api_url}/export/leads.csv?token={token}", timeout=30)
    assert response.status_code == 403, (token, response.status_code, response.text[:200])
    assert "not valid" in response.text


@pytest.mark.parametrize(
    "fragment, field",
    [
        ('"name": "Lone \\ud800 half"', "name"),
        ('"name": "Ok", "company": "\\udfff"', "company"),
        ('"name": "Ok", "custom_fields": {"k": "\\ud83d"}', "custom_fields.k"),
        ('"name": "Ok", "custom_fields": {"\\ud83d": "v"}', "custom_fields"),
        ('"name": "Ok", "external_id": "\\ud800x"', "external_id"),
    ],
)
def test_a_lone_surrogate_in_the_json_is_a_422(http, team, api_db, fragment, field):
    """JSON may escape half of a surrogate pair; PostgreSQL's UTF-8 cannot store it."""
    email = f"half-{uuid.uuid4().hex[:8]}@example.com"
    body = '{"email": "%s", %s}' % (email, fragment)
    response = http.post(
        "/leads",
        content=body.encode(),
        headers={**auth(team.keys["manager_write"]), "Content-Type": "application/json"},
    )
    assert _is_json_error(response, 422), response.text
    assert any(f["field"].startswith(field) for f in response.json()["error"]["fields"]), response.text
    api_db.rollback()
    assert api_db.execute(text("SELECT count(*) FROM leads WHERE email = :e"), {"e": email}).scalar_one() == 0


def test_a_lone_surrogate_in_an_event_is_a_422(http, team):
    body = '{"lead": {"email": "x@example.com"}, "type": "email_replied", "body": "half \\udc00"}'
    response = http.post(
        "/events",
        content=body.encode(),
        headers={**auth(team.keys["rep_write"]), "Content-Type": "application/json"},
    )
    assert _is_json_error(response, 422), response.text


# --- Bodies and rate limits (issue #17, item 7) --------------------------------------------------------


def _raw_request(api_url: str, head: str, body: bytes = b"", wait: float = 15) -> tuple[int, dict]:
    """Send a request's head (and maybe part of its body) on a raw socket and read the answer,
    without ever sending the rest of the body: an answer proves the server did not wait for it."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(api_url)
    with socket.create_connection((where.hostname, where.port), timeout=wait) as conn:
        conn.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < 10:
            chunk = conn.recv(65536)  # socket.timeout here: the server is still waiting for the body
            if not chunk:
                break
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    head_part, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(payload[: payload.rfind(b"}") + 1] or b"{}")


def test_a_52_mb_body_is_refused_from_its_length_before_it_is_read(api_url, team):
    from tests.api.conftest import MAX_BODY_MB

    head = (
        f"POST /api/v1/leads/batch HTTP/1.1\nHost: test\nAuthorization: Bearer {team.keys['manager_write']}\n"
        f"Content-Type: application/json\nContent-Length: {52 * 1024 * 1024}\n"
    )
    status, body = _raw_request(api_url, head, b'{"leads": [')
    assert status == 413 and body["error"]["status"] == 413
    assert f"{MAX_BODY_MB} MB" in body["error"]["message"]


def test_no_key_is_refused_before_the_body_is_read(api_url):
    head = (
        "POST /api/v1/leads HTTP/1.1\nHost: test\nContent-Type: application/json\nContent-Length: 1000000\n"
    )
    status, body = _raw_request(api_url, head, b'{"name": ')
    assert status == 401 and body["error"]["status"] == 401


def test_a_body_streamed_past_the_limit_is_413(http, team, api_db):
    from tests.api.conftest import MAX_BODY_MB

    marker = f"stream-{uuid.uuid4().hex[:8]}"

    def chunks():  # no Content-Length: the server learns the size only by reading
        yield b'{"leads": ['
        for i in range(MAX_BODY_MB * 1024 + 512):
            yield b'{"email": "%s-%d@example.com", "name": "%s"},' % (marker.encode(), i, b"x" * 900)
        yield b'{"email": "last@example.com", "name": "Last"}]}'

    response = http.post(
        "/leads/batch",
        content=chunks(),
        headers={**auth(team.keys["manager_write"]), "Content-Type": "application/json"},
    )
    assert _is_json_error(response, 413), response.text[:300]
    api_db.rollback()
    assert (
        api_db.execute(text("SELECT count(*) FROM leads WHERE email LIKE :m"), {"m": marker + "%"}).scalar()
        == 0
    )


def test_malformed_requests_count_against_the_keys_limit(http, team, api_db):
    from crm_app.domain import Role
    from crm_app.services.api_keys import create_key
    from crm_app.services.permissions import CurrentUser
    from tests.api.conftest import NOW

    admin = CurrentUser(team.admin.id, team.admin.email, team.admin.name, Role.ADMIN)
    secret, _ = create_key(
        api_db, admin, name="Three a minute", scope="write", user_id=team.rep.id, now=NOW, rate_per_minute=3
    )
    key = {**auth(secret), "Content-Type": "application/json"}
    garbage = [b"{nope", b"\xff\xfe", b'{"leads": ' + b"[" * 5000]
    answers = [
        http.post(path, content=body, headers=key)
        for path, body in zip(("/leads", "/events", "/leads/batch"), garbage)
    ]
    assert [a.status_code for a in answers] == [422, 422, 400], [
        a.text[:200] for a in answers
    ]  # 400: too deep
    assert answers[-1].headers["X-RateLimit-Remaining"] == "0"
    over = http.get("/me", headers=key)
    assert _is_json_error(over, 429) and 1 <= int(over.headers["Retry-After"]) <= 60


def test_requests_without_a_valid_key_count_against_their_address(http, team):
    from tests.api.conftest import FAILED_KEY_RATE

    here, elsewhere = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "198.51.100.9"}
    guesses = [
        http.get("/leads", headers={**here, **auth(f"crm_guess{i:040d}")}) for i in range(FAILED_KEY_RATE)
    ]
    assert {g.status_code for g in guesses} == {401}
    no_key = http.post("/leads", content=b"{nope", headers={**here, "Content-Type": "application/json"})
    assert _is_json_error(no_key, 429) and "203.0.113.7" in no_key.json()["error"]["message"]
    assert 1 <= int(no_key.headers["Retry-After"]) <= 60
    # Only that address pays: another one is still told 401, and a valid key works from both.
    assert http.get("/leads", headers={**elsewhere, **auth("crm_" + "y" * 43)}).status_code == 401
    assert http.get("/me", headers={**here, **auth(team.keys["rep_read"])}).status_code == 200
