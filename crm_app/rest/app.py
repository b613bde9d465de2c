"""The REST API, version 1: FastAPI routes mounted at /api/v1 on the app's own server.

Every request names an API key (`Authorization: Bearer crm_...`), which acts as one user: reads and
writes run under that user's row-level security. Keys are counted per minute against their limit.

Writes are one transaction each, all or nothing, and rescore what they touch inside it. A POST with
an `Idempotency-Key` header stores its answer in that same transaction, so a retry (same key, same
body) is answered from the store and changes nothing; the same key with another body is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import text
from sqlmodel import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from crm_app.db.engine import get_app_engine
from crm_app.db.models import utcnow
from crm_app.db.security import act_as, apply_acting_user
from crm_app.rest.gate import ApiGate, error_response
from crm_app.rest.schemas import (
    ErrorOut,
    EventBatch,
    EventBatchOut,
    EventIn,
    EventOut,
    KeyInfo,
    LeadBatch,
    LeadBatchOut,
    LeadOut,
    LeadPage,
    LeadUpsert,
    NO_NUL,
    Moment,
    StageMove,
    StageName,
    TierName,
)
from crm_app.services import api_keys, capture, lead_records
from crm_app.services.api_keys import ApiPrincipal
from crm_app.services.errors import (
    Conflict,
    Forbidden,
    InvalidFields,
    InvalidInput,
    MissingFields,
    NotFound,
    ServiceError,
    StaleLead,
)
from crm_app.services.leads import move_lead_to_stage

API_PREFIX = "/api/v1"

DESCRIPTION = """
Feed the CRM from websites, forms and email tools, and read leads with their score.

**Authentication.** Send an API key created by an admin on the app's *API keys* page:
`Authorization: Bearer crm_...`. A key acts as one teammate and sees exactly what they see.
Read keys may only read. A rep's key does what the rep's pages allow: it updates and claims the
rep's leads and the pool and logs rep-side events (call, email_sent, meeting, note, email_replied);
it creates no lead (one it cannot see is 404) and sends no prospect-side event (403). Systems that
report what prospects do use a key acting as a manager or admin.

**Retries.** Send `Idempotency-Key: <unique id>` with a POST. A retry with the same key and body gets
the first answer back (header `Idempotent-Replayed: true`) and is never applied twice.

**Errors** are JSON: `{"error": {"status", "message", "fields": [{"field", "message"}]}}`, with field
names like `events[3].occurred_at`. A request that fails writes nothing.

**Limits.** Each key has a per-minute request limit (header `X-RateLimit-Remaining`); over it, 429
with `Retry-After`. Requests without a valid key are limited per client address. Batches take up
to 1,000 leads or events; a body over the server's size limit (16 MB unless configured) is 413.
"""

v1 = FastAPI(
    title="Pipeline CRM API",
    version="1.0",
    description=DESCRIPTION,
    docs_url="/docs",
    redoc_url=None,
    openapi_url="/openapi.json",
    responses={
        400: {"model": ErrorOut, "description": "The body is not JSON"},
        401: {"model": ErrorOut, "description": "No valid API key"},
        413: {"model": ErrorOut, "description": "The body is over the size limit"},
        422: {"model": ErrorOut, "description": "Bad input; `fields` names each wrong field"},
        429: {"model": ErrorOut, "description": "Rate limit reached; see Retry-After"},
    },
)
bearer = HTTPBearer(auto_error=False, description="An API key from the app's API keys page: crm_...")


class ApiError(Exception):
    def __init__(self, status: int, message: str, fields: list[tuple[str, str]] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.fields, self.headers = status, message, fields or [], headers or {}


def _from_service(error: ServiceError) -> ApiError:
    if isinstance(error, MissingFields):
        return ApiError(404, str(error), error.errors)
    if isinstance(error, InvalidFields):
        return ApiError(422, str(error), error.errors)
    if isinstance(error, InvalidInput):
        return ApiError(422, str(error), [(error.field or "body", str(error))])
    if isinstance(error, Conflict):
        return ApiError(409, str(error), [(error.field, str(error))] if error.field else [])
    if isinstance(error, StaleLead):
        return ApiError(409, str(error), [("expected_version", str(error))])
    if isinstance(error, NotFound):
        return ApiError(404, str(error))
    if isinstance(error, Forbidden):
        return ApiError(403, str(error))
    return ApiError(400, str(error))


@v1.exception_handler(ApiError)
async def _api_error(request: Request, error: ApiError) -> JSONResponse:
    headers = {**getattr(request.state, "rate_headers", {}), **error.headers}
    return error_response(error.status, error.message, error.fields, headers)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path or str(loc[0] if loc else "body")


@v1.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    fields = []
    for problem in error.errors():
        message = problem.get("msg", "Invalid value").removeprefix("Value error, ")
        if problem.get("type") == "extra_forbidden":
            message = "Unknown field."
        elif problem.get("type") == "missing":
            message = "Required."
        loc = tuple(problem.get("loc", ()))
        if (problem.get("ctx") or {}).get("field"):  # a rule on the whole object that one field can fix
            loc += (problem["ctx"]["field"],)
        fields.append((_field_path(loc), message))
    headers = getattr(request.state, "rate_headers", {})
    return error_response(422, "The request is not valid; nothing was saved.", fields, headers)


@v1.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    headers = dict(error.headers or {})
    if error.status_code == 405:
        # Starlette names only the first route matching the path; list every method the path has.
        methods = set()
        for route in request.app.router.routes:
            if route.matches(request.scope)[0] is not Match.NONE:
                methods |= getattr(route, "methods", None) or set()
        headers["Allow"] = ", ".join(sorted(methods))
    return error_response(error.status_code, str(error.detail), headers=headers)


v1.add_middleware(ApiGate)  # body size, key and rate, before FastAPI reads the body (rest/gate.py)


def principal(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> ApiPrincipal:
    """The key's principal, checked and counted by the gate before the body was read (`credentials`
    is here for the OpenAPI schema: it documents the bearer key)."""
    found = getattr(request.state, "principal", None)
    if found is None:  # only when the gate was bypassed, which the app never does
        raise ApiError(401, "Send your API key as 'Authorization: Bearer <key>'.",
                       headers={"WWW-Authenticate": "Bearer"})
    return found


Principal = Annotated[ApiPrincipal, Depends(principal)]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", max_length=200,
    description="Any unique string per logical request; a retry with it is never applied twice.")]


@contextmanager
def _reading_as(who: ApiPrincipal) -> Iterator[Session]:
    with Session(get_app_engine(), expire_on_commit=False) as session:
        act_as(session, who.user.id)
        yield session


def _write(who: ApiPrincipal, idempotency_key: str | None, request_fingerprint: str,
           work: Callable[[Session, datetime], tuple[int, Any]]) -> Response:
    """Run `work` as the key's user in one transaction; store its answer under the idempotency key
    in that same transaction. Any error rolls everything back."""
    try:
        api_keys.require_write(who)
    except Forbidden as error:
        raise ApiError(403, str(error)) from None
    now = utcnow()
    request_hash = hashlib.sha256(request_fingerprint.encode()).hexdigest()
    response: JSONResponse | None = None
    with get_app_engine().connect() as connection:
        transaction = connection.begin()
        try:
            apply_acting_user(connection, who.user.id)
            if idempotency_key:
                replay = _claim(connection, who, idempotency_key, request_hash, now)
                if replay is not None:
                    transaction.rollback()
                    return replay
            # Services "commit" into a savepoint; this transaction decides.
            with Session(bind=connection, join_transaction_mode="create_savepoint",
                         expire_on_commit=False) as session:
                try:
                    status, payload = work(session, now)
                    session.commit()  # releases the savepoint into this transaction
                except StaleLead as error:
                    # The refused move's audit entry stays; the idempotency claim does not.
                    if idempotency_key:
                        _unclaim(connection, who, idempotency_key)
                    transaction.commit()
                    raise _from_service(error) from None
                except ServiceError as error:
                    raise _from_service(error) from None
            response = JSONResponse(jsonable_encoder(payload), status_code=status)
            if idempotency_key:
                connection.execute(
                    text("UPDATE api_idempotency SET status_code = :status, response = :body "
                         "WHERE api_key_id = :key AND key = :ikey"),
                    {"status": status, "body": response.body.decode(), "key": who.key_id, "ikey": idempotency_key},
                )
            transaction.commit()
        finally:
            if transaction.is_active:
                transaction.rollback()
    return response


def _claim(connection, who: ApiPrincipal, key: str, request_hash: str, now: datetime) -> Response | None:
    """Reserve the idempotency key for this request, or the stored answer when it was used before.
    A concurrent request with the same key waits here until the first one commits or rolls back."""
    claimed = connection.execute(
        text("INSERT INTO api_idempotency (api_key_id, key, request_hash, status_code, response, created_at) "
             "VALUES (:key_id, :key, :hash, 0, '', :now) ON CONFLICT DO NOTHING RETURNING 1"),
        {"key_id": who.key_id, "key": key, "hash": request_hash, "now": now},
    ).first()
    if claimed:
        return None
    stored = connection.execute(
        text("SELECT request_hash, status_code, response FROM api_idempotency WHERE api_key_id = :key_id AND key = :key"),
        {"key_id": who.key_id, "key": key},
    ).first()
    if stored.request_hash != request_hash:
        raise ApiError(422, "This Idempotency-Key was already used for a different request.",
                       [("Idempotency-Key", "Use a new key for a new request.")])
    return Response(stored.response, status_code=stored.status_code, media_type="application/json",
                    headers={"Idempotent-Replayed": "true"})


def _unclaim(connection, who: ApiPrincipal, key: str) -> None:
    connection.execute(text("DELETE FROM api_idempotency WHERE api_key_id = :key_id AND key = :key"),
                       {"key_id": who.key_id, "key": key})


def _scores(session: Session, lead_ids: list[int]) -> list[dict[str, Any]]:
    rows = lead_records.get_leads(session, lead_ids)
    return [{key: rows[i][key] for key in ("id", "score", "tier", "reasons", "version")} for i in lead_ids if i in rows]


def _events(items: list[EventIn]) -> list[capture.EventInput]:
    return [
        capture.EventInput(
            lead=capture.LeadRef(lead_id=e.lead.id, external_id=e.lead.external_id, email=e.lead.email),
            type=e.type.value, occurred_at=e.occurred_at, subject=e.subject, body=e.body,
            play=e.play and e.play.value,
        )
        for e in items
    ]


def _via(who: ApiPrincipal) -> str:
    return f"API key '{who.key_name}'"


# --- Routes ------------------------------------------------------------------------------------------


@v1.get("/me", response_model=KeyInfo, summary="The key in use and who it acts as")
def who_am_i(who: Principal) -> dict[str, Any]:
    user = who.user
    return {"key_name": who.key_name, "scope": who.scope, "role": user.role.value,
            "acts_as": {"id": user.id, "name": user.name, "email": user.email},
            "rate_per_minute": who.rate_per_minute}


@v1.get("/leads", response_model=LeadPage, summary="A page of leads, best score first")
def list_leads(
    who: Principal,
    tier: TierName | None = None,
    stage: StageName | None = None,
    owner: Annotated[str | None, Query(pattern=r"^(me|pool|[0-9]{1,9})$",
                                       description="me, pool, or a user id")] = None,
    q: Annotated[str | None, Query(max_length=100, pattern=NO_NUL,
                                   description="Search name, company or email")] = None,
    updated_since: Moment | None = None,
    sort: Literal["score", "updated"] = "score",
    limit: Annotated[int, Query(ge=1, le=lead_records.MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    query = lead_records.LeadQuery(tier=tier and tier.value, stage=stage and stage.value, owner=owner, search=q,
                                   updated_since=updated_since, sort=sort, limit=limit, cursor=cursor)
    with _reading_as(who) as session:
        try:
            items, next_cursor = lead_records.list_leads(session, query, viewer_id=who.user.id)
        except ServiceError as error:
            raise _from_service(error) from None
    return {"items": items, "next_cursor": next_cursor}


@v1.post("/leads/batch", response_model=LeadBatchOut, summary="Create or update up to 1,000 leads at once",
         responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut, "description": "No such owner"},
                    409: {"model": ErrorOut}})
def upsert_lead_batch(who: Principal, batch: LeadBatch, idempotency_key: IdempotencyKey = None) -> Response:
    def work(session: Session, now: datetime):
        items = [item.model_dump(exclude_unset=True, mode="json") for item in batch.leads]
        results = capture.upsert_leads(session, who.user, items, now=now, via=_via(who), batch=True)
        return 200, {"results": [{"lead_id": r.lead_id, "created": r.created, "changed": list(r.changed)}
                                 for r in results]}

    return _write(who, idempotency_key, f"POST /leads/batch {batch.model_dump_json(exclude_unset=True)}", work)


@v1.get("/leads/{lead_id:int}", response_model=LeadOut, summary="One lead with its score and reasons",
        responses={404: {"model": ErrorOut}})
def get_lead(who: Principal, lead_id: Annotated[int, Path(ge=1, le=2_147_483_647)]) -> dict[str, Any]:
    with _reading_as(who) as session:
        try:
            return lead_records.get_lead(session, lead_id)
        except ServiceError as error:
            raise _from_service(error) from None


@v1.post("/leads", response_model=LeadOut, status_code=201,
         summary="Create or update a lead (matched on external_id, then email)",
         responses={200: {"model": LeadOut, "description": "Updated"}, 201: {"description": "Created"},
                    403: {"model": ErrorOut}, 404: {"model": ErrorOut, "description": "No such owner"},
                    409: {"model": ErrorOut}})
def upsert_lead(who: Principal, lead: LeadUpsert, idempotency_key: IdempotencyKey = None) -> Response:
    def work(session: Session, now: datetime):
        [result] = capture.upsert_leads(session, who.user, [lead.model_dump(exclude_unset=True, mode="json")],
                                        now=now, via=_via(who))
        return (201 if result.created else 200), lead_records.get_lead(session, result.lead_id)

    return _write(who, idempotency_key, f"POST /leads {lead.model_dump_json(exclude_unset=True)}", work)


@v1.post("/leads/{lead_id:int}/stage", response_model=LeadOut, summary="Move a lead to a stage",
         responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}})
def move_stage(who: Principal, lead_id: Annotated[int, Path(ge=1, le=2_147_483_647)], move: StageMove,
               idempotency_key: IdempotencyKey = None) -> Response:
    def work(session: Session, now: datetime):
        move_lead_to_stage(session, lead_id=lead_id, to_stage=move.stage.value, now=now, user_id=who.user.id,
                           expected_version=move.expected_version, lost_reason=move.lost_reason,
                           lost_note=move.lost_note)
        return 200, lead_records.get_lead(session, lead_id)

    # The fingerprint leaves out unset close details, so a retry of a request sent before they
    # existed still matches its stored answer.
    unset = {name for name in ("lost_reason", "lost_note") if name not in move.model_fields_set}
    return _write(who, idempotency_key, f"POST /leads/{lead_id}/stage {move.model_dump_json(exclude=unset)}", work)


@v1.post("/events", response_model=EventOut, status_code=201,
         summary="Record one event (page visit, pricing view, demo request, email opened/clicked/replied, ...)",
         responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut, "description": "No such lead"}})
def post_event(who: Principal, event: EventIn, idempotency_key: IdempotencyKey = None) -> Response:
    def work(session: Session, now: datetime):
        result = capture.record_events(session, who.user, _events([event]), now=now)
        return 201, {"lead": _scores(session, result.lead_ids)[0]}

    return _write(who, idempotency_key, f"POST /events {event.model_dump_json(exclude_unset=True)}", work)


@v1.post("/events/batch", response_model=EventBatchOut, status_code=201,
         summary="Record up to 1,000 events at once: all or none",
         responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut, "description": "An event names no lead"}})
def post_event_batch(who: Principal, batch: EventBatch, idempotency_key: IdempotencyKey = None) -> Response:
    def work(session: Session, now: datetime):
        result = capture.record_events(session, who.user, _events(batch.events), now=now, batch=True)
        return 201, {"accepted": len(result.lead_ids), "leads": _scores(session, sorted(set(result.lead_ids)))}

    return _write(who, idempotency_key, f"POST /events/batch {batch.model_dump_json(exclude_unset=True)}", work)
