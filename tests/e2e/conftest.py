"""Runs the real app (as start.sh does: scripts/supervise.py, production mode) on its own database and drives
it with Chromium."""

from __future__ import annotations

import os
import sys
from urllib.parse import quote, urlsplit
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from playwright.sync_api import expect
from sqlmodel import Session

from crm_app.db.engine import make_engine
from crm_app.settings import REPO_ROOT
from tests.conftest import scratch_database
from tests.servers import free_port, serve
from tests.factories import TEST_PASSWORD

ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# The app's own clock runs during browser tests, so their data is placed relative to real now.
APP_NOW = datetime.now(timezone.utc)
# Every test user's password (the browser tests sign in like anyone else).
E2E_PASSWORD = TEST_PASSWORD
DEFAULT_VIEWER = "Ria Rep"
# What a user sees may take a while on a busy 2-core CI machine (a full analytics reload took over the
# default 5 s there); a check still fails if the page never gets there.
expect.set_options(timeout=15_000)


@pytest.fixture(scope="session")
def app_database_url(database_url: str) -> Iterator[str]:
    """A database of its own for the running app (tests' rollbacks cannot reach another process)."""
    with scratch_database(database_url, "crm_e2e") as url:
        yield url


@pytest.fixture(scope="session")
def app_engine(app_database_url: str):
    eng = make_engine(app_database_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def app_session(app_engine) -> Iterator[Session]:
    with Session(app_engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture(scope="session")
def seeded_app_data(app_session: Session) -> dict:
    """The small, known team every browser test reads. Returns the objects by name."""
    from crm_app.domain import ActivityKind as K
    from crm_app.domain import Source, Stage
    from tests.factories import make_lead, make_user

    now = APP_NOW
    ria = make_user(app_session, "Ria Rep")
    sam = make_user(app_session, "Sam Seller")
    maya = make_user(app_session, "Maya Manager", role="manager")
    make_user(app_session, "Abe Admin", role="admin")  # a team with an admin: sign-in is not the first run
    leads = {
        "Ada Lovelace": make_lead(
            app_session, "Ada Lovelace", now=now, owner=ria, company="Analytical Engines", company_size=120,
            source=Source.REFERRAL, deal_value=48000,
            activities=[(K.PRICING_REQUEST, timedelta(minutes=20)), (K.DEMO_REQUEST, timedelta(days=2))],
        ),
        "Grace Hopper": make_lead(
            app_session, "Grace Hopper", now=now, owner=ria, company="Compilers Inc", company_size=30,
            source=Source.WEBINAR, stage=Stage.CONTACTED, deal_value=12000,
            activities=[(K.EMAIL_OPENED, timedelta(days=3)), (K.PAGE_VISIT, timedelta(days=4))],
        ),
        "Alan Turing": make_lead(
            app_session, "Alan Turing", now=now, owner=sam, company="Bletchley Labs", company_size=800,
            source=Source.LINKEDIN, stage=Stage.QUALIFIED, deal_value=90000,
            activities=[(K.PRICING_PAGE_VISIT, timedelta(days=6))],
        ),
        "Edsger Dijkstra": make_lead(
            app_session, "Edsger Dijkstra", now=now, owner=None, company="Shortest Path BV", company_size=5,
            source=Source.COLD_OUTREACH, deal_value=3000,
        ),
    }
    return {"users": {"Ria Rep": ria, "Sam Seller": sam, "Maya Manager": maya}, "leads": leads}


# PGAPPNAME of the app's connections, so a test can cut exactly those (test_database_outage.py).
APP_CONNECTIONS = "crm-e2e-app"


@pytest.fixture(scope="session")
def app_server(app_database_url: str, seeded_app_data: dict) -> Iterator[tuple[str, int]]:
    """Build and start the app in production mode against the test database, the way start.sh does
    (under scripts/supervise.py); stop it afterwards. Yields its URL and the supervisor's pid."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": app_database_url,
        "REFLEX_USE_NPM": "1",
        "REFLEX_TELEMETRY_ENABLED": "false",
        "REFLEX_CHECK_LATEST_VERSION": "false",
        "PGAPPNAME": APP_CONNECTIONS,
    }
    env.pop("REFLEX_REDIS_URL", None)
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "scripts/supervise.py", "--port", str(port)]
    # The first build installs the frontend with npm: allow it ten minutes.
    with serve(command, env=env, ready_url=f"{url}/ping", log_path=ARTIFACTS / "app.log", what="The app",
               timeout=600) as supervisor:
        yield url, supervisor.pid


@pytest.fixture(scope="session")
def app_url(app_server: tuple[str, int]) -> str:
    return app_server[0]


def sign_in_cookie(app_session: Session, app_url: str, name: str) -> dict:
    """A session cookie for a test user, made through the same service the sign-in form calls."""
    from crm_app.db.models import utcnow
    from crm_app.services.accounts import sign_in

    token, _ = sign_in(app_session, email=email_of(name), password=E2E_PASSWORD, now=utcnow())
    # As the app's sign-in route sets it: HttpOnly, so no script of the page reads it.
    return {"name": "crm_session", "value": token, "url": app_url, "httpOnly": True, "sameSite": "Strict"}


def email_of(name: str) -> str:
    return f"{name.split()[0].lower()}@test.crm"  # as tests/factories.make_user names them


@pytest.fixture
def page(browser, app_url: str, app_session: Session, seeded_app_data: dict, request):
    """A browser tab signed in as the default rep (tests switch with `choose_viewer`)."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=app_url)
    context.add_cookies([sign_in_cookie(app_session, app_url, DEFAULT_VIEWER)])
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    yield pg
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)




def forget_browser(page) -> None:
    """Like a new browser: no session cookie, and a tab whose app state starts empty (Reflex keys a
    tab's state by a token in sessionStorage). Done from a page of the app's origin that runs none of
    its JavaScript (the health check), so no pending update can write the old cookie back."""
    page.goto("/_health")
    page.context.clear_cookies()
    page.evaluate("window.sessionStorage.clear()")


def sign_in_as(page, name: str, next_path: str = "/") -> None:
    """A fresh browser signing in through the real form as `name`; lands on `next_path`."""
    forget_browser(page)
    page.goto(f"/sign-in?next={quote(next_path)}")
    page.locator(".sign-in-ready").wait_for(state="attached")
    page.locator("#field-email").fill(email_of(name))
    page.locator("#field-password").fill(E2E_PASSWORD)
    page.locator(".sign-in-submit").click()
    page.wait_for_url(lambda url: urlsplit(url).path.rstrip("/") == next_path.rstrip("/"))
    # The sign-in route set the (HttpOnly) cookie before the page was loaded: it survives a reload.
    assert any(c["name"] == "crm_session" for c in page.context.cookies())


def choose_viewer(page, name: str) -> None:
    """Look at the current page as `name`: sign in as them and come back to it."""
    sign_in_as(page, name, urlsplit(page.url).path or "/")
