"""Backend routes served beside the Reflex app on the same port (rx.App(api_transformer=...)).

- `/api/v1/...`: the REST API for other systems, with its OpenAPI docs at /api/v1/docs (rest/app.py).
- `/export/leads.csv`: large downloads go here rather than through the websocket; the CSV export
  streams from PostgreSQL straight into the HTTP response behind a signed link
  (services/signed_links.py). The link names the sign-in session it was made in and is served only
  while that session is signed in and its user active.
- `/auth/session` and `/auth/sign-out`: set and clear the HttpOnly session cookie (auth_routes.py).
- `/import/skipped.csv`: the rows an import left out, with their problems (the Import page's "import
  the valid rows, skip the rest"), behind a signed link like the export's, to the manager who made it.
- `/health`: for a load balancer, 200 when this worker can serve (health.py).
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from sqlmodel import Session

from crm_app.auth_routes import SESSION_PATH, SIGN_OUT_PATH, end_session, start_session
from crm_app.db.engine import get_app_engine, get_engine
from crm_app.db.models import utcnow
from crm_app.db.security import apply_acting_user
from crm_app.health import HEALTH_PATH, health
from crm_app.rest import outage
from crm_app.rest.app import API_PREFIX, v1
from crm_app.rest.gate import error_response
from crm_app.services.accounts import session_is_live
from crm_app.services.exporting import filter_from_dict, stream_leads_csv
from crm_app.services.signed_links import InvalidLink, verify_link

EXPORT_PATH = "/export/leads.csv"
EXPORT_PURPOSE = "export-leads"
ENDED = ("The session this export link was made in has ended (signed out, expired or the account deactivated): "
         "sign in and export again from the Leads page.")


def export_leads(request: Request):
    try:
        payload = verify_link(EXPORT_PURPOSE, request.query_params.get("token", ""), now=utcnow())
    except InvalidLink as error:
        return PlainTextResponse(str(error), status_code=403)
    viewer, signed_in = payload.get("viewer"), payload.get("session")
    if not isinstance(viewer, int) or not isinstance(signed_in, int):
        return PlainTextResponse("This export link names nobody: export again from the Leads page.", status_code=403)
    with Session(get_engine()) as session:  # as the owner: sessions are not the app role's to read
        live = session_is_live(session, signed_in, viewer, utcnow())
    if not live:
        return PlainTextResponse(ENDED, status_code=403)
    flt, sort = filter_from_dict(payload)
    filename = f"leads-{utcnow():%Y-%m-%d-%H%M}.csv"
    # A sync generator: Starlette iterates it in a worker thread, so the event loop stays free.
    return StreamingResponse(
        _rows_the_viewer_may_see(viewer, flt, sort),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


def _rows_the_viewer_may_see(viewer_id: int, flt, sort: str):
    """The export as the user who asked for it, under row-level security: a rep's "whole team"
    export holds their own leads and the pool, never another rep's."""
    with get_app_engine().connect() as connection, connection.begin():
        apply_acting_user(connection, viewer_id)
        yield from stream_leads_csv(connection, flt, sort)


SKIPPED_PATH = "/import/skipped.csv"
SKIPPED_PURPOSE = "import-skipped-rows"


def skipped_rows(request: Request):
    """The skipped-rows file named by a signed link, while its manager's sign-in lasts. The name in the
    link is a random one the Import page chose under the imports folder (never a path from outside)."""
    from crm_app.state.importing import imports_dir

    try:
        payload = verify_link(SKIPPED_PURPOSE, request.query_params.get("token", ""), now=utcnow())
    except InvalidLink as error:
        return PlainTextResponse(str(error), status_code=403)
    viewer, signed_in, name = payload.get("viewer"), payload.get("session"), payload.get("file")
    if not isinstance(viewer, int) or not isinstance(signed_in, int) or not isinstance(name, str):
        return PlainTextResponse("This link names nobody: download it again from the Import page.",
                                 status_code=403)
    with Session(get_engine()) as session:
        live = session_is_live(session, signed_in, viewer, utcnow())
    if not live:
        ended = ENDED.replace("export again from the Leads page", "download it again from the Import page")
        return PlainTextResponse(ended, status_code=403)
    path = imports_dir() / name
    if "/" in name or not name.endswith("-skipped.csv") or not path.is_file():
        return PlainTextResponse("This file is no longer on the server: validate the file again.",
                                 status_code=404)
    return FileResponse(path, media_type="text/csv; charset=utf-8",
                        filename=str(payload.get("as") or "skipped.csv"),
                        headers={"Cache-Control": "no-store"})


# No docs at the root: the API's own docs are at /api/v1/docs.
api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, routes=[
    Route(EXPORT_PATH, export_leads, methods=["GET"]),
    Route(SKIPPED_PATH, skipped_rows, methods=["GET"]),
    Route(SESSION_PATH, start_session, methods=["POST"]),
    Route(SIGN_OUT_PATH, end_session, methods=["POST"]),
    Route(HEALTH_PATH, health, methods=["GET"]),
])
outage.install(v1, error_response)  # 503 + Retry-After while the database is away
api.mount(API_PREFIX, v1)
