"""Role processes of a cluster start at once on a fresh database: each migrates, one after the other, none fails."""

from __future__ import annotations

import asyncio

import asyncpg

from chainwatch import postgres_schema
from tests.integration.test_store_port import fresh_database


async def test_several_processes_migrating_a_fresh_database_at_once_all_succeed(postgres_url: str) -> None:
    """Those that waited for the migration lock see the tables the first created (not a cached 'no such table')."""
    for _ in range(3):
        url = await fresh_database(postgres_url)
        connections = [await asyncpg.connect(url) for _ in range(4)]
        try:
            await asyncio.gather(*(postgres_schema.migrate(db) for db in connections))  # none raises
            assert await postgres_schema.schema_version(connections[0]) == postgres_schema.LATEST
        finally:
            for db in connections:
                await db.close()
