"""The base state: who is signed in, and the one door every page's database work goes through.

The session token is an HttpOnly cookie (set by crm_app/auth_routes.py), so no script of the page
can read it: the state reads it from the websocket's handshake (`_session_token`).

`AppState._db(work)` is the only way a state reaches the database. It checks the browser's session
token (again at most every RECHECK_SECONDS, so a sign-out or deactivation elsewhere takes effect
within that), then runs `work(session)` in a thread, in a session that acts as the signed-in user
under PostgreSQL row-level security (crm_app/db/security.py), on the web app's own database login,
which can only become the app role (crm_app/db/engine.py). Checking the token, signing in and out and
changing a password run as the tables' owner with fixed queries (`run_system_db`). A crafted event
from a browser that is not signed in never reaches a service: it raises NotSignedIn, which sends the
browser to the sign-in page (see `handle_backend_exception`).
"""

from __future__ import annotations

import asyncio
import json
import time
from http.cookies import CookieError, SimpleCookie
from urllib.parse import quote
from collections.abc import Callable
from typing import TypeVar

import reflex as rx
from reflex.app import default_backend_exception_handler
from reflex_base.event import EventSpec
from sqlmodel import Session

from crm_app.auth_routes import SESSION_COOKIE, SIGN_OUT_PATH
from crm_app.db.engine import get_app_engine, get_engine
from crm_app.db.models import utcnow
from crm_app.db.outage import database_unavailable
from crm_app.db.queries import UserOption, list_users
from crm_app import live
from crm_app.db.security import act_as
from crm_app.services import accounts
from crm_app.services.accounts import CurrentUser
from crm_app.services.errors import Forbidden, NotSignedIn

T = TypeVar("T")

# The app's one clock (db.models.utcnow), under the name the states use.
now_utc = utcnow
RECHECK_SECONDS = 30.0
SIGN_IN = "/sign-in"
SESSION_ENDED = "Your session has ended: sign in again."


# What a browser sends is whatever its socket sends: a crafted event may put any JSON in any
# argument. Handlers keep only what their page could have sent (issue #17, item 12).


def typed_text(value: object, limit: int = 300) -> str:
    """Text from the browser, safe to keep and to query with: a string (anything else is empty),
    without NUL or lone surrogates (PostgreSQL text holds neither; the driver refuses the query),
    at most `limit` characters."""
    if not isinstance(value, str):
        return ""
    if "\x00" in value or any("\ud800" <= ch <= "\udfff" for ch in value):
        value = "".join(ch for ch in value if ch != "\x00" and not "\ud800" <= ch <= "\udfff")
    return value[:limit]


def picked(value: object, allowed, current: str) -> str:
    """A select's or a radio group's value: one of `allowed` (a radio may send a one-item list),
    else `current` unchanged."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value if isinstance(value, str) and value in allowed else current


def whole_number(value: object) -> int | None:
    """An id the page sent: a positive int (or its digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isdecimal() and len(value) < 10:
        value = int(value)
    return value if isinstance(value, int) and 0 < value < 2**31 else None


def typed_into(draft: dict[str, str], errors: dict[str, str], field: str, value: str,
               limit: int = 300) -> tuple[dict[str, str], dict[str, str]]:
    """A form's draft with `value` typed into `field` (cut at `limit`) and that field's error gone;
    both unchanged for a field the form does not have."""
    if not isinstance(field, str) or field not in draft:
        return draft, errors
    return {**draft, field: typed_text(value, limit)}, {k: v for k, v in errors.items() if k != field}


def submitted(draft: dict[str, str], form: object, limit: int | dict[str, int] = 300) -> dict[str, str]:
    """The draft as its form held it at the moment it was submitted. Inputs report typing through
    debounced change events; a value typed and sent at once (Enter, or a quick click) can reach the
    handler before its last change event, so the submitted form's own values win. Fields the draft
    does not have, and values that are not text (a crafted event), are ignored. `limit` cuts each value
    (one for all, or per field)."""
    if not isinstance(form, dict):
        return dict(draft)
    limits = limit if isinstance(limit, dict) else {}
    return {**draft, **{key: typed_text(value, limits.get(key, limit if isinstance(limit, int) else 300))
                        for key, value in form.items() if key in draft and isinstance(value, str)}}


def open_session() -> Session:
    """A session as the tables' owner: system work only (scoring jobs, signing in)."""
    return Session(get_engine(), expire_on_commit=False)


def open_acting_session(user_id: int) -> Session:
    """A session acting as `user_id` under row-level security, on the web app's login."""
    return act_as(Session(get_app_engine(), expire_on_commit=False), user_id)


def _in_session(work: Callable[[Session], T], user_id: int | None) -> T:
    with open_session() if user_id is None else open_acting_session(user_id) as session:
        return work(session)


async def run_system_db(work: Callable[[Session], T]) -> T:
    """Database work that is nobody's in particular (signing in, the first admin), off the event loop.
    Runs as the tables' owner: never call it with a lead-facing service."""
    return await asyncio.to_thread(_in_session, work, None)


async def db_as(user_id: int, work: Callable[[Session], T]) -> T:
    """`work(session)` as `user_id` under row-level security, for background events that looked the
    user up inside `async with self` (AppState._db would touch the state outside its lock)."""
    return await asyncio.to_thread(_in_session, work, user_id)


async def session_user(token: str) -> CurrentUser | None:
    """Whose session the browser's token is (None: none, or ended), from the database. Background
    events call it outside `async with self` and keep the answer with AppState._set_user."""
    now = now_utc()
    return await run_system_db(lambda s: accounts.session_user(s, token, now)) if token else None


# A chart as the state holds it: the plotly figure's JSON (what Reflex's serializer sends the browser),
# not the go.Figure. A Figure in a tab's state cost ~75 ms of CPU to unpickle, empty or not (plotly
# validates every property again), and each tab held nine: with several web workers every event that
# loaded a tab's state from Redis paid ~750 ms, and one worker kept ~1 MB per tab. The page casts the
# var back (`figure_var`). An empty chart is EMPTY_FIGURE.
EMPTY_FIGURE: dict = {"data": [], "layout": {}}


def figure_data(figure) -> dict:
    """A go.Figure as plain JSON data (lists, dicts, numbers, strings), for a state var."""
    import plotly.io

    return json.loads(plotly.io.to_json(figure))


def figure_var(var):
    """A state's figure data, typed as the figure rx.plotly expects (the JSON is the same)."""
    import plotly.graph_objects as go

    return var.to(go.Figure)


def handle_backend_exception(exception: Exception) -> EventSpec | None:
    """Refusals become what the user should see: the sign-in page, or the reason in a toast."""
    if isinstance(exception, NotSignedIn):
        # Back to this page after signing in again; only the browser knows which page it is.
        return rx.call_script(f"window.location.assign('{SIGN_IN}?next=' + "
                              "encodeURIComponent(window.location.pathname))")
    if isinstance(exception, Forbidden):
        return rx.toast.error(str(exception), position="top-center")
    if database_unavailable(exception):  # a notice and a retry, not "An error occurred" (state/database.py)
        from crm_app.state.database import DatabaseState

        return DatabaseState.reconnect
    return default_backend_exception_handler(exception)


class AppState(rx.State):
    """Shared by every page: the signed-in user and the team."""

    viewer_id: str = ""
    # The web worker this tab's events reach (http_security.worker_id), set as each page loads and
    # as it asks for news; shown as the page frame's data-worker.
    served_by: str = ""
    viewer_name: str = ""
    viewer_role: str = ""
    users: list[UserOption] = []
    _user: CurrentUser | None = None
    # time.time() of the last check: wall clock, not time.monotonic(), because the state travels
    # between web workers on other machines (Redis), whose monotonic clocks count from their own boot.
    _checked_at: float = 0.0
    _checked_token: str = ""
    # The token this tab signed out of: if the browser hands it back (a cookie write racing the
    # sign-out), the sign-in page knows the user chose to leave and does not say "session ended".
    _signed_out_token: str = ""

    @rx.var
    def viewer_is_manager(self) -> bool:
        return self.viewer_role in ("manager", "admin")

    @rx.var
    def viewer_is_admin(self) -> bool:
        return self.viewer_role == "admin"

    def _session_token(self) -> str:
        """The browser's session token: its HttpOnly cookie, as the websocket's handshake carried it
        (a page load opens a new socket, so a sign-in or sign-out shows from the next page on).
        Only its hash is in the database."""
        try:
            jar = SimpleCookie(self.router.headers.cookie or "")
        except CookieError:
            return ""
        morsel = jar.get(SESSION_COOKIE)
        return morsel.value[:100] if morsel else ""

    def _checked_user(self, *, fresh: bool = True) -> CurrentUser | None:
        """The signed-in user as the last check found them, without a query, while the browser carries
        the same token; with `fresh`, only while that check is younger than RECHECK_SECONDS."""
        if self._user is None or self._session_token() != self._checked_token:
            return None
        if fresh and not 0 <= time.time() - self._checked_at < RECHECK_SECONDS:
            return None
        return self._user

    async def _current_user(self, recheck: bool = False) -> CurrentUser | None:
        """The signed-in user, checked against the database at most every RECHECK_SECONDS (always
        with `recheck`: every page load does, so a session ended elsewhere stops a new page at once)."""
        if not recheck and (user := self._checked_user()) is not None:
            return user
        user = await session_user(self._session_token())
        self._set_user(user)
        return user

    def _set_user(self, user: CurrentUser | None) -> None:
        self._user, self._checked_at, self._checked_token = user, time.time(), self._session_token()
        self.viewer_id = str(user.id) if user else ""
        self.viewer_name = user.name if user else ""
        self.viewer_role = user.role.value if user else ""

    async def _actor(self) -> CurrentUser:
        """The signed-in user, or NotSignedIn (the browser is sent to the sign-in page)."""
        user = await self._current_user()
        if user is None:
            raise NotSignedIn(SESSION_ENDED)
        return user

    async def _db(self, work: Callable[[Session], T]) -> T:
        """Run `work(session)` off the event loop as the signed-in user, under row-level security."""
        return await db_as((await self._actor()).id, work)

    async def _acting_sessions(self) -> Callable[[], Session]:
        """A factory of sessions acting as the signed-in user, for work that opens several at once."""
        user_id = (await self._actor()).id
        return lambda: open_acting_session(user_id)

    async def _load_team(self) -> bool:
        """Every page's first step: False (and the page should redirect) when nobody is signed in."""
        self._note_worker()
        if await self._current_user(recheck=True) is None:
            return False
        if not self.users:
            self.users = await self._db(list_users)
        return True

    async def _news_since(self, moment: float) -> bool:
        """Have leads this viewer can see changed since `moment` (time.time() when the page read
        them)? Answered from the worker's memory (crm_app/live.py); no query."""
        self._note_worker()
        user = await self._current_user()
        return user is not None and live.changed_since(moment, live.owners_seen_by(user.id, user.is_manager))

    def _note_worker(self) -> None:
        from crm_app.http_security import worker_id

        if self.served_by != worker_id():
            self.served_by = worker_id()

    def _sign_in_redirect(self):
        """To the sign-in page, coming back here afterwards."""
        path = str(self.router.url.path) or "/"
        return rx.redirect(f"{SIGN_IN}?next={quote(path)}")

    def viewer_int(self) -> int | None:
        return self._user.id if self._user else None

    @rx.event
    async def sign_out(self):
        token, now = self._session_token(), now_utc()
        if token:
            await run_system_db(lambda s: accounts.sign_out(s, token, now))
        self._signed_out_token = token
        self._set_user(None)
        self.users = []
        # Only the server can clear an HttpOnly cookie: the sign-out route does, then the sign-in page
        # loads afresh (a new websocket, without the cookie).
        return rx.call_script(f"fetch('{SIGN_OUT_PATH}', {{method: 'POST', credentials: 'same-origin'}})"
                              f".finally(() => window.location.assign('{SIGN_IN}'))")
