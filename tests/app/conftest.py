from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ..helpers import make_client, wait_ready, write_checkpoints


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(scope="module")
def client(checkpoint_dir: Path) -> Iterator[TestClient]:
    with make_client(checkpoint_dir) as c:
        wait_ready(c)
        yield c
