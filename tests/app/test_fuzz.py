"""API fuzzing with schemathesis against the service's own OpenAPI document (a live server on loopback).

Bounded here (LOGPX_FUZZ_EXAMPLES, default 25 per operation); the release run is documented in
docs/reliability.md. Checks: no 5xx, documented status codes and content types, every response body
matches its schema.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.local_server import LocalServer

from ..helpers import write_checkpoints

EXAMPLES = int(os.environ.get("LOGPX_FUZZ_EXAMPLES", "25"))


@schemathesis.serializer("application/x-npy", "application/vnd.safetensors")
def _binary(ctx, value):  # type: ignore[no-untyped-def]
    """/v1/estimate's binary bodies: whatever bytes the strategy drew (the server must refuse junk with 4xx)."""
    return value if isinstance(value, bytes) else str(value).encode()


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("fuzz")
    env = {"LOGPX_MAX_K": "2000", "LOGPX_MAX_BATCH_K": "20000", "LOGPX_LOG_LEVEL": "warning"}
    with LocalServer(write_checkpoints(directory / "ckpt"), env=env, log_path=directory / "server.log") as server:
        yield server.url


def test_api_never_fails_and_matches_its_schema(live_url: str) -> None:
    # The schemathesis pytest plugin does not run under this pytest; drive its strategies directly.
    schema = schemathesis.openapi.from_url(f"{live_url}/openapi.json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(checks=checks)

        run()
