"""The running app's web defences in headless Chromium (issue #17, item 10): the session cookie is
HttpOnly and set by the server, every page works under its Content-Security-Policy (Reflex's inline
scripts and styles, its eval of server scripts, the websocket, Plotly), answers carry the frame and
sniffing protections, no other site may read answers with the user's cookies (CORS) or open the
websocket, and a sign-in never sends the browser to another site."""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

import httpx
import pytest
from playwright.sync_api import expect
from simple_websocket import Client

from tests.e2e.conftest import E2E_PASSWORD, email_of, forget_browser, sign_in_as, sign_in_cookie

pytestmark = pytest.mark.e2e

EVIL = "https://evil.example"
# Every CSP violation the page meets, and every error its console shows.
WATCH_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
    e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + (e.sample || '')));
"""


@pytest.fixture
def watched(browser, app_url):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=app_url)
    context.add_init_script(WATCH_CSP)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    yield page
    context.close()


def _no_csp_trouble(page) -> None:
    assert page.evaluate("window.__csp") == []
    assert [e for e in page.console_errors if "Content Security Policy" in e] == []


def test_the_session_cookie_is_httponly_and_the_app_works_under_its_csp(watched, seeded_app_data):
    page = watched
    sign_in_as(page, "Ria Rep", "/leads")  # the real form: a one-time ticket, swapped by the server
    [cookie] = [c for c in page.context.cookies() if c["name"] == "crm_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"]  # CRM_SECURE_COOKIES is not set for this plain-HTTP test server
    assert "crm_session" not in page.evaluate("document.cookie")
    expect(page.locator(".signed-in-name")).to_have_text("Ria Rep")

    # An event round-trips over the websocket under the CSP: a search narrows the table.
    expect(page.locator(".lead-row")).to_have_count(2)
    page.get_by_placeholder(re.compile("Search", re.I)).fill("Grace")
    expect(page.locator(".lead-row")).to_have_count(1)
    expect(page.locator(".lead-row")).to_contain_text("Grace Hopper")
    _no_csp_trouble(page)

    ada = seeded_app_data["leads"]["Ada Lovelace"]
    for path, ready in (
        ("/", ".queue-item"),
        ("/pipeline", ".pipeline-column"),
        ("/analytics", ".js-plotly-plot"),
        (f"/leads/{ada.id}", "text=Analytical Engines"),
        ("/account", "#field-current"),
    ):
        page.goto(path)
        expect(page.locator(ready).first).to_be_visible()
        _no_csp_trouble(page)

    # Signing out runs a server-sent script (eval, allowed by the CSP) and the route clears the cookie.
    page.locator(".sign-out").click()
    page.wait_for_url(re.compile(r"/sign-in"))
    # The sign-in page is ready (the sign-out's own navigations are over), so the next goto is not
    # interrupted by one of them.
    page.locator(".sign-in-ready").wait_for(state="attached")
    assert [c for c in page.context.cookies() if c["name"] == "crm_session"] == []
    page.goto("/pipeline", wait_until="commit")  # the app sends a signed-out browser on at once
    page.wait_for_url(re.compile(r"/sign-in"))
    _no_csp_trouble(page)


def test_pages_and_api_answers_carry_the_protections(app_url):
    for path, status in (
        ("/", 200),
        ("/leads", 200),
        ("/api/v1/me", 401),
        ("/api/v1/docs", 200),
        ("/export/leads.csv?token=x", 403),
        ("/api/v1/openapi.json", 200),
    ):
        answer = httpx.get(app_url + path, timeout=30, follow_redirects=True)
        assert answer.status_code == status, path
        headers = answer.headers
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert headers["referrer-policy"] == "same-origin", path


def test_the_app_cannot_be_framed(watched, app_url):
    """A page frames one of the app's pages: Chromium shows its error page in the frame instead
    (clickjacking). The framing page is one of the app's own, whose policy allows frames of its
    origin, so what refuses is the framed page's frame-ancestors/X-Frame-Options. (A page of another
    site is refused by Chromium's private-network rules before the app's headers even matter here.)"""
    import time

    page = watched
    page.goto("/sign-in")
    page.locator(".sign-in-ready").wait_for(state="attached")
    page.evaluate("""() => { const f = document.createElement('iframe'); f.src = '/sign-in';
                             document.body.appendChild(f); }""")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (len(page.frames) < 2 or page.frames[1].url in ("", "about:blank")):
        page.wait_for_timeout(200)  # no page state to wait for: the frame's error page is the browser's own
    assert page.frames[1].url.startswith("chrome-error://"), page.frames[1].url


def test_no_other_site_reads_answers_with_the_users_cookies(app_url, app_session):
    token = sign_in_cookie(app_session, app_url, "Ria Rep")["value"]
    cookies = {"crm_session": token}
    simple = httpx.get(
        f"{app_url}/api/v1/openapi.json", headers={"Origin": EVIL}, cookies=cookies, timeout=30
    )
    assert "access-control-allow-origin" not in simple.headers
    preflight = httpx.options(
        f"{app_url}/auth/sign-out",
        timeout=30,
        headers={
            "Origin": EVIL,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.headers.get("access-control-allow-origin") not in (EVIL, "*")
    # Nor signs the user out, nor opens the app's websocket with their cookie.
    assert (
        httpx.post(
            f"{app_url}/auth/sign-out", headers={"Origin": EVIL}, cookies=cookies, timeout=30
        ).status_code
        == 403
    )
    ws_url = app_url.replace("http://", "ws://") + "/_event/?EIO=4&transport=websocket&token=x"
    with pytest.raises(Exception):
        Client.connect(ws_url, headers={"Origin": EVIL, "Cookie": f"crm_session={token}"}).receive(timeout=10)
    # The same handshake without the foreign Origin opens (the app's own pages open theirs with the
    # app's origin: the browser test above runs on it).
    own = Client.connect(ws_url, headers={"Cookie": f"crm_session={token}"})
    assert (own.receive(timeout=30) or "").startswith("0")
    own.close()


@pytest.mark.parametrize(
    "trick",
    [
        "/%09/evil.example",
        "/\t/evil.example",
        "//evil.example",
        "/\\evil.example",
        "https://evil.example",
        "/%2F%2Fevil.example",
    ],
)
def test_signing_in_never_leaves_the_site(watched, app_url, trick):
    page = watched
    forget_browser(page)
    page.goto(f"/sign-in?next={quote(trick, safe='')}")
    page.locator(".sign-in-ready").wait_for(state="attached")
    page.locator("#field-email").fill(email_of("Ria Rep"))
    page.locator("#field-password").fill(E2E_PASSWORD)
    page.locator(".sign-in-submit").click()
    page.wait_for_url(lambda url: urlsplit(url).path == "/")
    assert urlsplit(page.url).netloc == urlsplit(app_url).netloc
    expect(page.locator(".signed-in-name")).to_have_text("Ria Rep")
