"""The REST API: a twin's state, history and flag events; observations in (FHIR R4 JSON).

A presentation layer like the CLI and the app: every call goes through
:mod:`cardiotwin.workflows`, which checks the caller's role and writes the audit record.
``create_app(store_root)`` builds the ASGI application; ``cardiotwin api serve`` runs it with
uvicorn. The OpenAPI schema is at ``/openapi.json`` and the interactive docs at ``/docs``.

Errors are RFC 9457 problem details (``application/problem+json``) whose ``detail`` says what
to do; no traceback ever reaches a client.
"""

import logging
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)
from starlette.exceptions import HTTPException

from cardiotwin import __version__, workflows
from cardiotwin.api import models
from cardiotwin.api.auth import TokenRegistry
from cardiotwin.errors import AccessDenied, CardiotwinError, InputError, StoreError
from cardiotwin.twin.state import PSEUDONYM_PATTERN

log = logging.getLogger(__name__)

__all__ = ["MAX_BODY_BYTES", "PROBLEM_MEDIA_TYPE", "create_app"]

MAX_BODY_BYTES = 1 << 20
"""Largest request body accepted (1 MiB, about 1,500 FHIR Observations in a Bundle); a larger
one is refused with 413 before it is parsed."""

PROBLEM_MEDIA_TYPE = "application/problem+json"
PURPOSE = "patient monitoring"
_CLIENT_OK = re.compile(r"[^A-Za-z0-9._:/@-]")
_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 409: "Conflict", 413: "Content Too Large",
            415: "Unsupported Media Type", 422: "Unprocessable Content",
            500: "Internal Server Error"}
_NOT_JSON = ("the body is not valid JSON; send one FHIR R4 Observation or Bundle as UTF-8 JSON "
             "(Content-Type: application/fhir+json or application/json)")
_WWW_AUTH = 'Basic realm="cardiotwin", Bearer realm="cardiotwin"'


class ApiProblem(Exception):
    """An error answered as a problem detail."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None,
                 quarantined: list[models.QuarantinedRecord] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers, self.quarantined = (status, detail, headers,
                                                                    quarantined)


def _problem(request: Request, status: int, detail: str, *,
             headers: dict[str, str] | None = None,
             quarantined: list[models.QuarantinedRecord] | None = None) -> JSONResponse:
    body = models.Problem(title=_REASONS.get(status, "Error"), status=status, detail=detail,
                          instance=request.url.path, quarantined=quarantined)
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=status,
                        headers=headers, media_type=PROBLEM_MEDIA_TYPE)


_PROBLEM = {"model": models.Problem, "description": "A problem detail (RFC 9457)."}
_AUTH_PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {**_PROBLEM, "description": "Malformed request (e.g. a body that is not JSON)."},
    401: {**_PROBLEM, "description": "No or wrong credentials (audited as a failed login)."},
    403: {**_PROBLEM, "description": "Your role may not do this (audited as denied)."},
    413: {**_PROBLEM, "description": f"Request body larger than {MAX_BODY_BYTES} bytes."},
    422: {**_PROBLEM, "description": "A parameter or the body is not valid; the detail names it."},
}
_TWIN_PROBLEMS = {**_AUTH_PROBLEMS,
                  404: {**_PROBLEM, "description": "No twin of that pseudonym in this store."}}
Pseudonym = Annotated[str, PathParam(
    pattern=PSEUDONYM_PATTERN.pattern, description="The twin's pseudonym (1-64 characters from "
    "[A-Za-z0-9._-]), never a name or hospital ID.", examples=["TW-3F2A"])]
AsOf = Annotated[datetime | None, Query(
    description="ISO 8601 time with a UTC offset, e.g. 2024-05-01T10:42:00+02:00: what the "
    "twin said then. Default: now.")]

_EXAMPLE_OBSERVATION = {
    "resourceType": "Observation", "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "subject": {"reference": "Patient/TW-3F2A"},
    "effectiveDateTime": "2024-05-01T10:42:00+02:00",
    "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org",
                      "code": "/min"}}


class _BodyLimit:
    """ASGI middleware: refuse a request body larger than ``limit`` bytes with 413 before the
    application sees any of it (Content-Length or the bytes actually sent, chunked or not)."""

    def __init__(self, app: Any, *, limit: int) -> None:
        self.app, self.limit = app, int(limit)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"")
        too_big = declared.isdigit() and int(declared) > self.limit
        chunks: list[bytes] = []
        size = 0
        more = not too_big
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                too_big = True
                break
            chunks.append(chunk)
            more = message.get("more_body", False)
        if too_big:
            body = models.Problem(
                title=_REASONS[413], status=413, instance=scope.get("path", ""),
                detail=f"the request body is larger than {self.limit} bytes; split the Bundle "
                "into smaller ones").model_dump_json(exclude_none=True).encode()
            await send({"type": "http.response.start", "status": 413, "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
            return
        payload = b"".join(chunks)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": payload, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def create_app(store_root: str | Path, *, max_body_bytes: int = MAX_BODY_BYTES,
               tokens: TokenRegistry | None = None) -> FastAPI:
    """The ASGI application serving the store at ``store_root``.

    Parameters
    ----------
    store_root : str or Path
        The store folder (``cardiotwin --store`` / ``$CARDIOTWIN_HOME``).
    max_body_bytes : int
        Largest request body accepted, bytes (413 beyond).
    tokens : TokenRegistry, optional
        Where bearer tokens live (default: a new one, in this process's memory).
    """
    store = workflows.open_store(store_root)
    registry = tokens or TokenRegistry()
    app = FastAPI(
        title="cardiotwin REST API", version=__version__,
        description="Read a patient twin's state (physiology ± spread, data age, stale and "
        "drift flags) and history, post monitoring observations (FHIR R4 JSON) and list drift "
        "and stale events. Authenticate with HTTP Basic (the store's users) or a bearer token "
        "from POST /token. Every call is role-checked and audited.",
        responses={})
    app.state.store = store
    app.state.tokens = registry
    basic = HTTPBasic(auto_error=False, realm="cardiotwin",
                      description="A user of the store (cardiotwin users add).")
    bearer = HTTPBearer(auto_error=False, description="A token from POST /token.")

    def client_of(request: Request) -> str:
        host = request.client.host if request.client else "unknown"
        return ("api/" + _CLIENT_OK.sub("_", host))[:64]

    def refuse(request: Request, reason: str, username: str | None = None) -> ApiProblem:
        workflows.refuse_request(store, client=client_of(request), reason=reason,
                                 username=username)
        return ApiProblem(401, f"{reason}; send HTTP Basic credentials of a user of the store, "
                          "or 'Authorization: Bearer <token>' with a token from POST /token",
                          headers={"WWW-Authenticate": _WWW_AUTH})

    def login(request: Request, cred: HTTPBasicCredentials) -> Any:
        try:
            return workflows.login(store, cred.username, cred.password,
                                   client=client_of(request))
        except (AccessDenied, InputError) as exc:  # audited by the store as a failed login
            raise ApiProblem(401, str(exc), headers={"WWW-Authenticate": _WWW_AUTH}) from None

    def actor(request: Request,
              user: Annotated[HTTPBasicCredentials | None, Depends(basic)],
              token: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Any:
        if token is not None:
            who = registry.actor(token.credentials)
            if who is None:
                raise refuse(request, "the bearer token is unknown or expired (tokens live "
                             f"{registry.idle_s / 60:.0f} min without use and die with the "
                             "server); get a new one from POST /token")
            return who
        if user is not None:
            return login(request, user)
        raise refuse(request, "this call needs credentials")

    def basic_actor(request: Request,
                    user: Annotated[HTTPBasicCredentials | None, Depends(basic)]) -> Any:
        if user is None:
            raise refuse(request, "POST /token needs HTTP Basic credentials")
        return login(request, user)

    Actor = Annotated[Any, Depends(actor)]

    # ----------------------------------------------------------------------------- errors
    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return _problem(request, exc.status, exc.detail, headers=exc.headers,
                        quarantined=exc.quarantined)

    @app.exception_handler(AccessDenied)
    async def _denied(request: Request, exc: AccessDenied) -> JSONResponse:
        return _problem(request, 403, f"{exc}; ask an admin for a role that may, or use "
                        "another account")

    @app.exception_handler(StoreError)
    async def _store_error(request: Request, exc: StoreError) -> JSONResponse:
        text = str(exc)
        missing = "not in this store" in text or " has no " in text
        return _problem(request, 404 if missing else 409, text)

    @app.exception_handler(CardiotwinError)
    async def _input(request: Request, exc: CardiotwinError) -> JSONResponse:
        return _problem(request, 422, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return _problem(request, 400, _NOT_JSON)
        parts = []
        for e in errors[:5]:
            where = ".".join(str(x) for x in e.get("loc", ()))
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return _problem(request, 422, "invalid request: " + "; ".join(parts)
                        + " (see /docs for what each parameter expects)")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        detail = str(exc.detail)
        if exc.status_code == 400:  # FastAPI could not parse the body (bad UTF-8, too deep)
            detail = _NOT_JSON
        elif exc.status_code == 404:
            detail = f"no such endpoint {request.url.path}; see /docs for the endpoints"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}; see /docs"
        elif exc.status_code == 401:
            detail = ("the Authorization header could not be read; send HTTP Basic "
                      "credentials or 'Authorization: Bearer <token>'")
            return _problem(request, 401, detail, headers={"WWW-Authenticate": _WWW_AUTH})
        return _problem(request, exc.status_code, detail, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _problem(request, 500, "internal error; it was logged on the server, tell the "
                        "administrator the time of the request")

    # ------------------------------------------------------------------------- endpoints
    @app.get("/health", response_model=models.Health, tags=["service"])
    def health() -> models.Health:
        """Liveness: the server runs (no authentication, no patient data)."""
        return models.Health(version=__version__)

    @app.post("/token", response_model=models.Token, tags=["auth"],
              responses={k: v for k, v in _AUTH_PROBLEMS.items() if k in (400, 401, 413)})
    def token(who: Annotated[Any, Depends(basic_actor)]) -> models.Token:
        """A bearer token for the user of the HTTP Basic credentials (an audited login)."""
        return models.Token(access_token=registry.issue(who), expires_in_s=int(registry.idle_s),
                            username=who.username, role=who.role)

    @app.get("/twins", response_model=list[models.TwinSummary], tags=["twins"],
             responses=_AUTH_PROBLEMS)
    def twins(who: Actor) -> list[models.TwinSummary]:
        """The twins in the store (pseudonyms only)."""
        return [models.TwinSummary(pseudonym=p.pseudonym, latest_version=p.latest_version,
                                   created_utc=p.created_utc)
                for p in workflows.list_patients(store=store, actor=who, purpose=PURPOSE)]

    @app.get("/twins/{pseudonym}", response_model=models.TwinState, tags=["twins"],
             responses=_TWIN_PROBLEMS)
    def twin(pseudonym: Pseudonym, who: Actor, as_of: AsOf = None) -> models.TwinState:
        """A twin's state now (or ``as_of``): version, physiology ± 1 SD, data age, stale and
        drift flags."""
        return models.twin_state_of(workflows.twin_status(pseudonym, store=store, actor=who,
                                                          as_of=as_of, purpose=PURPOSE))

    @app.get("/twins/{pseudonym}/versions", response_model=models.TwinHistory, tags=["twins"],
             responses=_TWIN_PROBLEMS)
    def versions(pseudonym: Pseudonym, who: Actor, as_of: AsOf = None) -> models.TwinHistory:
        """A twin's versions up to now (or ``as_of``) and the one in force then."""
        return models.history_of(workflows.twin_status(pseudonym, store=store, actor=who,
                                                       as_of=as_of, purpose=PURPOSE))

    @app.get("/twins/{pseudonym}/events", response_model=list[models.TwinEvent],
             tags=["events"], responses=_TWIN_PROBLEMS)
    def twin_events(pseudonym: Pseudonym, who: Actor) -> list[models.TwinEvent]:
        """When the twin went stale or current again, drifted or stopped drifting, since its
        last 3-D run (recomputed from the stored observations)."""
        return [models.event_of(e) for e in workflows.twin_events(
            pseudonym, store=store, actor=who, purpose=PURPOSE)]

    @app.get("/events", response_model=list[models.TwinEvent], tags=["events"],
             responses=_AUTH_PROBLEMS)
    def events(who: Actor) -> list[models.TwinEvent]:
        """The stale and drift events of every twin in the store, in time order."""
        return [models.event_of(e) for e in workflows.all_events(store=store, actor=who,
                                                                 purpose=PURPOSE)]

    @app.post("/twins/{pseudonym}/observations", response_model=models.IngestResult,
              tags=["observations"],
              responses={**_TWIN_PROBLEMS,
                         409: {**_PROBLEM, "description": "A concurrent update; send again."},
                         422: {**_PROBLEM, "description": "Not a FHIR Observation or Bundle, "
                               "or every record was quarantined (listed with reasons)."}})
    def observations(
        pseudonym: Pseudonym, who: Actor,
        document: Annotated[models.FhirResource, Body(
            description="One FHIR R4 Observation or a Bundle of Observations (JSON).",
            openapi_examples={"heart rate": {"summary": "one heart-rate Observation",
                                             "value": _EXAMPLE_OBSERVATION}})],
    ) -> models.IngestResult:
        """Check observations, store them and update the twin (a new version); refused records
        are quarantined with their reasons. Needs the clinician or admin role."""
        res = workflows.ingest_fhir(pseudonym, document.model_dump(mode="json"), store=store,
                                    actor=who, purpose=PURPOSE, source="api")
        out = models.ingest_of(res)
        if res.quarantined and not res.accepted and not res.duplicates:
            reasons = "; ".join(q.reason for q in out.quarantined[:3])
            raise ApiProblem(422, f"no observation was accepted; {len(out.quarantined)} "
                             f"quarantined: {reasons}", quarantined=out.quarantined)
        return out

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            for ops in schema.get("paths", {}).values():
                for op in ops.values():
                    for code, resp in op.get("responses", {}).items():
                        content = resp.get("content", {})
                        if code[0] in "45" and "application/json" in content:
                            content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(_BodyLimit, limit=max_body_bytes)
    return app
