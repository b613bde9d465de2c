"""The backend routes that set and clear the session cookie, so that it can be HttpOnly: the pages'
JavaScript (and so any script injected into them) never reads the session token.

- `POST /auth/session` with `{"ticket": ...}`: the sign-in form's one-time ticket
  (accounts.sign_in_ticket) is swapped for a session, whose token is set as the `crm_session`
  cookie: HttpOnly, SameSite=Strict, Secure when CRM_SECURE_COOKIES says the app is served over
  HTTPS. The websocket's handshake carries the cookie to the app's state (AppState._session_token).
- `POST /auth/sign-out`: the session of the cookie ends and the cookie is cleared.

Both refuse a request from another site's page (Origin), which would otherwise sign a victim's
browser into the attacker's account ("login CSRF").
"""

from __future__ import annotations

import json

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from crm_app.db.engine import get_engine
from crm_app.db.models import utcnow
from crm_app.http_security import origin_allowed
from crm_app.services import accounts
from crm_app.settings import settings

SESSION_COOKIE = "crm_session"
SESSION_PATH = "/auth/session"
SIGN_OUT_PATH = "/auth/sign-out"
MAX_BODY = 2048


def _refused(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message, "fields": []}}, status_code=status,
                        headers={"Cache-Control": "no-store"})


def _as_owner(work):
    with Session(get_engine()) as session:  # nobody is acting yet: signing in is the tables' owner's work
        return work(session)


async def start_session(request: Request) -> Response:
    if not origin_allowed({k.lower(): v for k, v in request.headers.items()}):
        return _refused(403, "Sign in from the app's own sign-in page.")
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        return _refused(413, "That is not a sign-in ticket.")
    try:
        ticket = json.loads(await request.body()).get("ticket")
    except (ValueError, AttributeError):
        ticket = None
    if not isinstance(ticket, str):
        return _refused(400, "That is not a sign-in ticket.")
    now = utcnow()
    token = await run_in_threadpool(_as_owner, lambda s: accounts.redeem_ticket(s, ticket, now))
    if token is None:
        return _refused(403, "This sign-in has expired: sign in again.")
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    response.set_cookie(SESSION_COOKIE, token, max_age=int(accounts.session_hours() * 3600), path="/",
                        secure=settings.secure_cookies, httponly=True, samesite="strict")
    return response


async def end_session(request: Request) -> Response:
    if not origin_allowed({k.lower(): v for k, v in request.headers.items()}):
        return _refused(403, "Sign out from the app's own pages.")
    token, now = request.cookies.get(SESSION_COOKIE, ""), utcnow()
    if token:
        await run_in_threadpool(_as_owner, lambda s: accounts.sign_out(s, token, now))
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    response.delete_cookie(SESSION_COOKIE, path="/", secure=settings.secure_cookies, httponly=True,
                           samesite="strict")
    return response
