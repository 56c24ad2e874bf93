"""ASGI middleware: request ids and JSON access logs, bearer-token guard, body-size limit.

The size limit is enforced while the body streams in: a declared Content-Length over the limit is
refused before a byte is read, and a chunked body is cut off as soon as it passes the limit.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import problem_response
from .metrics import Metrics

__all__ = ["RequestGuard"]

log = logging.getLogger("logpx.access")
# The health checks, and what a browser needs before it can ask for the token: the page, its files, the API docs.
OPEN_PATHS = ("/v2/health/live", "/v2/health/ready", "/", "/docs", "/openapi.json")
OPEN_PREFIXES = ("/static/",)


class _BodyTooLarge(Exception):
    pass


class RequestGuard:
    """One middleware for what every request goes through, so their order is explicit."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        api_token: str | None,
        metrics: Metrics,
        max_upload_bytes: int | None = None,
        limit_concurrency: int | None = None,
    ) -> None:
        self.app = app
        self.limit_concurrency = limit_concurrency
        self.in_flight = 0  # requests this process is handling, health checks aside
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes or max_body_bytes  # a job's data set: POST /v1/jobs
        self.api_token = api_token
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        given = _header(scope, b"x-request-id")
        # A client's id is echoed and logged only if it is a sane one: short, printable, no spaces.
        request_id = (
            given
            if given and len(given) <= MAX_REQUEST_ID and given.isascii() and given.isprintable() and " " not in given
            else uuid.uuid4().hex
        )
        scope.setdefault("state", {})["log"] = {}
        status_holder = {"status": 500}
        overflow = {"hit": False, "replaced": False}

        async def send_wrapped(message: Message) -> None:
            if overflow["hit"]:
                # The app saw a body cut short and answered something else; the answer is 413.
                if not overflow["replaced"]:
                    overflow["replaced"] = True
                    await self._too_large(scope, receive, send_raw, limit)
                return
            await send_raw(message)

        async def send_raw(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = 1
                headers = message.setdefault("headers", [])
                headers.append((b"x-request-id", request_id.encode()))
                headers.append((b"x-content-type-options", b"nosniff"))  # a body is only ever what it is declared
            await send(message)

        path = scope["path"]
        limit = self.max_upload_bytes if path == "/v1/jobs" and scope["method"] == "POST" else self.max_body_bytes
        try:
            # A CORS preflight carries no credentials by design: it goes on to the CORS middleware.
            preflight = scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method") is not None
            open_path = path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)
            if self.api_token and not open_path and not preflight and not _authorised(scope, self.api_token):
                await problem_response(
                    401,
                    "Unauthorized",
                    "missing or wrong bearer token",
                    field="Authorization",
                    headers={"WWW-Authenticate": "Bearer"},
                )(scope, receive, send_raw)
                return
            # Health checks always answer, whatever holds the other slots (event streams, slow uploads): a
            # liveness probe that saw 503 would restart the service and its jobs.
            counted = not path.startswith(HEALTH_PREFIX)
            if counted and self.limit_concurrency is not None and self.in_flight >= self.limit_concurrency:
                await problem_response(
                    503,
                    "Server saturated",
                    f"{self.in_flight} requests in flight, the limit {self.limit_concurrency}; retry shortly",
                    limit=self.limit_concurrency,
                    headers={"Retry-After": "1"},
                )(scope, receive, send_raw)
                return
            declared = _header(scope, b"content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > limit):
                await self._too_large(scope, receive, send_raw, limit)
                return
            if counted:
                self.in_flight += 1
            try:
                await self.app(scope, self._limited(receive, overflow, limit), send_wrapped)
            finally:
                if counted:
                    self.in_flight -= 1
        except _BodyTooLarge:
            if not overflow["replaced"]:
                overflow["replaced"] = True
                await self._too_large(scope, receive, send_raw, limit)
        except Exception:
            # The app's own handler answered already if it could; otherwise answer here, so that even a
            # 500 carries the request id (Starlette's outer error middleware would send a bare one).
            log.exception("unhandled error on %s", path)
            if status_holder["status"] == 500 and not status_holder.get("started"):
                await problem_response(
                    500, "Internal server error", "the server failed to handle this request; see its log"
                )(scope, receive, send_raw)
        finally:
            fields: dict[str, Any] = scope["state"].get("log", {})
            endpoint = _endpoint(scope)
            self.metrics.requests.labels(fields.get("model", ""), endpoint, str(status_holder["status"])).inc()
            if log.isEnabledFor(logging.INFO):
                log.info(
                    json.dumps(
                        {
                            "request_id": request_id,
                            "method": scope["method"],
                            "path": path,
                            "status": status_holder["status"],
                            "duration_s": round(time.monotonic() - started, 6),
                            **fields,
                        }
                    )
                )

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        await problem_response(413, "Payload too large", f"request body over {limit} bytes", field="body", limit=limit)(
            scope, receive, send
        )

    def _limited(self, receive: Receive, overflow: dict[str, bool], limit: int) -> Receive:
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    overflow["hit"] = True
                    raise _BodyTooLarge
            return message

        return wrapped


HEALTH_PREFIX = "/v2/health/"
MAX_REQUEST_ID = 128  # characters of a client-chosen X-Request-ID; a longer one is replaced by our own


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _authorised(scope: Scope, token: str) -> bool:
    given = _header(scope, b"authorization") or ""
    scheme, _, value = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


def _endpoint(scope: Scope) -> str:
    """The route template (``/v1/models/{name}/evidence``), so that metric labels stay bounded."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"
