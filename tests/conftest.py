from __future__ import annotations

from collections.abc import Iterator

import pytest

from .postgres import PostgresServer, find_pg_bin, postgres_server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server on loopback for the whole session, or a skip that says why there is none."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed here (Debian: apt-get install postgresql; make test does it as root)")
    with postgres_server(bin_dir) as server:
        yield server
