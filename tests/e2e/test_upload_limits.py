"""Uploads on the running app (issue #17 items 2 and 6): `/_upload` refuses a signed-out tab, a made-up
client token and a rep before reading the body, and a body over CRM_IMPORT_MAX_MB; a manager demoted
while the Import page is open is refused at the next click; a hostile file is refused in words in the
file area, naming the file."""

from __future__ import annotations

import gzip
import json
import select
import socket
import time
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from crm_app.settings import settings
from crm_app.state.importing import ImportState
from tests.e2e.conftest import choose_viewer, email_of, sign_in_cookie

pytestmark = pytest.mark.e2e

HANDLER = f"{ImportState.get_full_name()}.handle_upload"
BIG = 201 * 1024 * 1024  # what the penetration test sent


def _imports() -> set[str]:
    from crm_app.state.importing import imports_dir

    return {p.name for p in imports_dir().glob("*.csv")}


def _raw_upload(app_url: str, *, cookie: str | None, declared: int, send_at_most: int,
                token: str = "made-up-client-token") -> tuple[int, dict, int, float]:
    """POST a multipart body of `declared` bytes to /_upload, sending at most `send_at_most` of it, and
    stop as soon as the server answers. Returns (status, JSON body, bytes of body sent, seconds)."""
    parts = urlsplit(app_url)
    boundary = "----crmtest"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.csv\"\r\n"
            "Content-Type: text/csv\r\n\r\n").encode()
    request = (f"POST /_upload HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {declared}\r\n"
               f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
               f"Reflex-Client-Token: {token}\r\nReflex-Event-Handler: {HANDLER}\r\n"
               + (f"Cookie: crm_session={cookie}\r\n" if cookie else "") + "\r\n").encode()
    started = time.monotonic()
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.sendall(request + head)
    sock.setblocking(False)
    sent, chunk, answer = len(head), b"x" * 65536, b""
    try:
        while time.monotonic() - started < 60:
            readable, writable, _ = select.select([sock], [sock] if sent < send_at_most else [], [], 1.0)
            if readable:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
                if b"\r\n\r\n" in answer:
                    head_part, _, rest = answer.partition(b"\r\n\r\n")
                    length = next((int(line.split(b":")[1]) for line in head_part.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), None)
                    if length is not None and len(rest) >= length:
                        break
            elif writable:
                try:
                    sent += sock.send(chunk)
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    pass
    finally:
        sock.close()
    seconds = time.monotonic() - started
    head_part, _, body = answer.partition(b"\r\n\r\n")
    status = int(head_part.split(b" ")[1]) if head_part else 0
    return status, (json.loads(body) if body.startswith(b"{") else {}), sent, seconds


def test_uploads_without_a_managers_session_are_refused_before_the_body(
        app_url, app_session, seeded_app_data):
    before = _imports()
    rep = sign_in_cookie(app_session, app_url, "Ria Rep")["value"]
    for cookie, status in ((None, 401), ("a-made-up-session-token", 401), (rep, 403)):
        answer, body, sent, seconds = _raw_upload(app_url, cookie=cookie, declared=BIG, send_at_most=BIG)
        assert answer == status, (cookie, answer, body)
        # Refused on its headers: what went over was what the sockets buffer before anyone reads.
        assert sent < 32 * 1024 * 1024, sent
        assert seconds < 15
    assert body["error"]["message"] == "Only a manager can import leads."
    assert _imports() == before


def test_an_upload_over_the_limit_is_refused_with_the_limit_in_words(app_url, app_session, seeded_app_data):
    before = _imports()
    manager = sign_in_cookie(app_session, app_url, "Maya Manager")["value"]
    status, body, sent, _ = _raw_upload(app_url, cookie=manager, declared=settings.import_max_bytes + 1,
                                        send_at_most=settings.import_max_bytes + 1)
    assert status == 413
    message = body["error"]["message"]
    assert "larger than 200 MB" in message and "CRM_IMPORT_MAX_MB" in message
    assert sent < 32 * 1024 * 1024
    assert _imports() == before


def test_a_demoted_manager_and_a_hostile_file_are_refused_in_the_file_area(
        page, app_url, app_session, tmp_path):
    page.goto("/import")
    choose_viewer(page, "Maya Manager")
    drop = page.locator(".csv-drop input[type=file]")
    # A gzip file renamed .csv: said in the file area, naming the file; nothing kept on the server.
    before = _imports()
    packed = tmp_path / "leads.csv"
    packed.write_bytes(gzip.compress(b"Name,Email,Source\nAnn,ann@example.com,Website\n" * 50))
    drop.set_input_files(str(packed))
    expect(page.locator(".import-message")).to_contain_text('"leads.csv" cannot be imported: This is a '
                                                            "gzip-compressed file")
    assert _imports() == before
    # A name with braces is only a name.
    braces = tmp_path / "{0}.csv"
    braces.write_text("Full Name,E-mail,Lead Source\nBrace Person,brace@example.com,Referral\n")
    drop.set_input_files(str(braces))
    expect(page.locator(".uploaded-name")).to_have_text("{0}.csv")
    expect(page.locator(".import-message")).to_have_count(0)
    expect(page.locator(".preview-row").first).to_contain_text("Brace Person")
    # Demoted while the page is open: the next click is refused from the database's word, and the
    # upload route refuses the same browser's cookie.
    cookie = next(c["value"] for c in page.context.cookies() if c["name"] == "crm_session")
    app_session.execute(text("UPDATE users SET role = 'rep' WHERE email = :e"),
                        {"e": email_of("Maya Manager")})
    app_session.commit()
    try:
        page.get_by_role("button", name="Validate").click()
        expect(page.locator(".managers-only")).to_be_visible()
        expect(page.locator(".report-summary")).to_have_count(0)
        assert _imports() == before  # what they uploaded as a manager is deleted
        status, body, _, _ = _raw_upload(app_url, cookie=cookie, declared=1000, send_at_most=1000)
        assert (status, body["error"]["message"]) == (403, "Only a manager can import leads.")
    finally:
        app_session.execute(text("UPDATE users SET role = 'manager' WHERE email = :e"),
                            {"e": email_of("Maya Manager")})
        app_session.commit()
    assert app_session.execute(text("SELECT count(*) FROM leads WHERE email = 'brace@example.com'")).scalar_one() == 0
