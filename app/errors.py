"""Domain errors and their RFC 9457 problem+json handlers. Registry, worker and services raise these,
never ``HTTPException``; every response body is built here, so none carries a stack trace or a path."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = [
    "ClientDisconnected",
    "DeadlineExceeded",
    "InsufficientStorage",
    "InvalidInput",
    "JobActive",
    "JobNotFound",
    "ModelNotFound",
    "ModelNotReady",
    "PayloadTooLarge",
    "ProblemError",
    "ServerSaturated",
    "StoreUnavailable",
    "TooManyJobs",
    "Unauthorized",
    "UnsupportedMediaType",
    "WrongModelFamily",
    "problem_response",
    "register_error_handlers",
    "store_answers",
]

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("logpx")


class ProblemError(Exception):
    """An error with an HTTP status; ``field`` and ``limit`` say what broke which bound."""

    status = 400
    title = "Bad request"

    def __init__(
        self, detail: str, *, field: str | None = None, limit: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.limit = limit
        self.headers = headers or {}


class InvalidInput(ProblemError):
    """422: a value in the request is not acceptable."""

    status, title = 422, "Invalid input"


class WrongModelFamily(InvalidInput):
    """422: the endpoint does not apply to this model's family."""

    title = "Endpoint does not apply to this model family"


class ModelNotFound(ProblemError):
    """404."""

    status, title = 404, "Model not found"


class ModelNotReady(ProblemError):
    """503: the model exists but failed to load or is still loading."""

    status, title = 503, "Model not ready"


class PayloadTooLarge(ProblemError):
    """413: body bytes, or inputs x samples, over budget."""

    status, title = 413, "Payload too large"


class UnsupportedMediaType(ProblemError):
    """415."""

    status, title = 415, "Unsupported media type"


class ServerSaturated(ProblemError):
    """503 with Retry-After: the device queue is full."""

    status, title = 503, "Server saturated"


class DeadlineExceeded(ProblemError):
    """504: the compute deadline passed; the work stopped at its next chunk."""

    status, title = 504, "Compute deadline exceeded"


class ClientDisconnected(ProblemError):
    """499 (nginx's "client closed request"): the client left before its answer; nobody reads this."""

    status, title = 499, "Client closed request"


class JobNotFound(ProblemError):
    """404."""

    status, title = 404, "Job not found"


class TooManyJobs(ProblemError):
    """429: this token has as many active jobs as it may."""

    status, title = 429, "Too many jobs"


class InsufficientStorage(ProblemError):
    """507: the job store holds as many data-set bytes as it may."""

    status, title = 507, "Insufficient storage"


class JobActive(ProblemError):
    """409: the job is queued or running, so it cannot be deleted."""

    status, title = 409, "Job still active"


class CertificatePending(ProblemError):
    """409: ``steps: auto`` asks for a certificate the model does not have yet; its certification is running."""

    status, title = 409, "Certificate pending"


class StoreUnavailable(ProblemError):
    """503: the job store does not answer (a database away, a lock held too long): try again later."""

    status, title = 503, "Job store unavailable"


@contextmanager
def store_answers(retry_after_s: int, field: str | None = None) -> Iterator[None]:
    """A job-store call on a request's path: a database away or a lock held too long is a 503 with Retry-After, a
    full disk a 507, each saying nothing was accepted, never a 500."""
    try:
        yield
    except sa_exc.OperationalError as exc:
        reason = (str(exc.orig) if exc.orig is not None else str(exc)).splitlines()[0][:200]
        if "full" in reason.lower() or "no space" in reason.lower():
            raise InsufficientStorage(f"the job store is full ({reason}); nothing was accepted", field=field) from None
        raise StoreUnavailable(
            f"the job store does not answer ({reason}); nothing was accepted, try again later",
            field=field,
            headers={"Retry-After": str(retry_after_s)},
        ) from None


class Unauthorized(ProblemError):
    """401: missing or wrong bearer token."""

    status, title = 401, "Unauthorized"


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    field: str | None = None,
    limit: Any = None,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
    instance: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if field is not None:
        body["field"] = field
    if limit is not None:
        body["limit"] = limit
    if errors:
        body["errors"] = errors
    if instance:
        body["instance"] = instance
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _loc_to_field(loc: tuple[Any, ...]) -> str:
    """``("body", "inputs", 0, 3)`` -> ``"inputs[0][3]"``."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header", "form", "file")]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def register_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.title,
            exc.detail,
            field=exc.field,
            limit=exc.limit,
            headers=exc.headers,
            instance=request.url.path,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors()[:20]:
            entry = {"field": _loc_to_field(tuple(err.get("loc", ()))), "message": err.get("msg", "invalid")}
            ctx = err.get("ctx") or {}
            for key in ("le", "ge", "lt", "gt", "max_length", "min_length", "expected"):
                if key in ctx:
                    entry["limit"] = f"{key} {ctx[key]}"
            errors.append(entry)
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            first = {"field": "body", "message": "body is not valid JSON"}
        return problem_response(
            422,
            "Invalid input",
            f"{first['field']}: {first['message']}",
            field=first["field"],
            limit=first.get("limit"),
            errors=errors,
            instance=request.url.path,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI and Starlette answer 400 for a body they cannot parse (invalid UTF-8, nesting too
            # deep, a malformed multipart body): one status for every unreadable body, the documented 422.
            return problem_response(
                422,
                "Invalid input",
                f"body: could not be parsed ({exc.detail})",
                field="body",
                instance=request.url.path,
            )
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        return problem_response(
            exc.status_code, title, str(exc.detail), headers=getattr(exc, "headers", None), instance=request.url.path
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)  # the trace goes to the log, never the client
        return problem_response(
            500,
            "Internal server error",
            "the server failed to handle this request; see its log",
            instance=request.url.path,
        )
