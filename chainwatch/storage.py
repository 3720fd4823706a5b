"""Opens the store the config names, on whichever engine its `[storage]` picks; callers get a `StorePort`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from chainwatch.postgres_url import StorageUnavailable, is_postgres_url
from chainwatch.storage_port import StorePort
from chainwatch.store import open_store as open_sqlite_store

if TYPE_CHECKING:
    from chainwatch.config import Config


@asynccontextmanager
async def open_store(target: Config | str | Path, *, chain_id: int | None = None) -> AsyncIterator[StorePort]:
    """A Config (its `[storage]`, for its chain), a postgresql:// URL (with `chain_id`), or a SQLite path.

    A SQLite file holds one chain's state, so it needs no chain id; a PostgreSQL database may hold several.
    """
    if not isinstance(target, (str, Path)):
        chain_id = target.chain.chain_id
        target = target.storage.target
    if is_postgres_url(target):
        if chain_id is None:
            raise ValueError("a PostgreSQL store is opened for one chain: pass chain_id")
        try:
            from chainwatch.postgres_store import open_postgres_store
        except ImportError:
            raise StorageUnavailable(
                "[storage] url is postgresql:// but asyncpg is not installed: pip install 'chainwatch[postgres]'"
            ) from None
        async with open_postgres_store(str(target), chain_id) as store:
            yield store
    else:
        async with open_sqlite_store(target) as sqlite_store:
            yield sqlite_store
