"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chainwatch.devnet.postgres import embedded_postgres_server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One PostgreSQL server for the whole session, started on first use: the URL of its `postgres` database."""
    with embedded_postgres_server() as url:
        yield url
