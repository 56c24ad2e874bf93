from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from logpx.app.config import Settings
from logpx.app.main import create_app

from ..helpers import write_checkpoints


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoints(tmp_path_factory.mktemp("checkpoints"))


def make_client(checkpoint_dir: Path, **overrides: object) -> TestClient:
    """A client of the app; its job store is a fresh SQLite file unless ``data_dir`` or ``database_url`` is given."""
    if "data_dir" not in overrides and "database_url" not in overrides:
        overrides["data_dir"] = Path(tempfile.mkdtemp(prefix="logpx-data-"))
    return TestClient(create_app(Settings(checkpoint_dir=checkpoint_dir, **overrides)), raise_server_exceptions=False)


def wait_ready(client: TestClient, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/v2/health/ready").status_code != 200:
        assert time.monotonic() < deadline, "service never became ready"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def client(checkpoint_dir: Path) -> Iterator[TestClient]:
    with make_client(checkpoint_dir) as c:
        wait_ready(c)
        yield c
