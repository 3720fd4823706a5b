"""The PostgreSQL schema, versioned like the SQLite one: each migration turns version N-1 into N, in one
transaction together with its number in `schema_version`.

Every table is keyed by chain id, so that one database can serve the watchers of several chains; the schema itself
is shared by all of them, hence one version for the whole database.
"""

from __future__ import annotations

import asyncpg

from chainwatch.schema import SchemaTooNew

# Version 1 is what the SQLite schema is at its version 2 (per-chat levels, the bot's tables), plus the chain id.
_V1 = """
CREATE TABLE cursor (
    chain_id BIGINT PRIMARY KEY,
    block_number BIGINT NOT NULL,
    block_hash TEXT NOT NULL
);
CREATE TABLE levels (
    chain_id BIGINT NOT NULL,
    chat_id BIGINT NOT NULL,
    protocol TEXT NOT NULL,
    account TEXT NOT NULL,
    market TEXT NOT NULL,
    level INTEGER NOT NULL,
    health_factor DOUBLE PRECISION NOT NULL,
    block BIGINT NOT NULL,
    PRIMARY KEY (chain_id, chat_id, protocol, account, market)
);
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    chain_id BIGINT NOT NULL,
    priority INTEGER NOT NULL,
    chat_id BIGINT,
    text TEXT NOT NULL,
    position TEXT NOT NULL,
    kind TEXT NOT NULL,
    block BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    sent_at DOUBLE PRECISION,
    failed_at DOUBLE PRECISION,
    buttons TEXT
);
CREATE INDEX outbox_pending ON outbox (chain_id, priority DESC, id) WHERE sent_at IS NULL AND failed_at IS NULL;
-- The supersede UPDATE looks pending messages up by position and chat.
CREATE INDEX outbox_by_position ON outbox (chain_id, position, chat_id) WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE TABLE chats (
    chain_id BIGINT NOT NULL,
    chat_id BIGINT NOT NULL,
    type TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    paused_at DOUBLE PRECISION,
    PRIMARY KEY (chain_id, chat_id)
);
-- seq breaks ties between watches added within one clock tick, so a chat's list keeps the order they were added.
CREATE TABLE chat_watches (
    chain_id BIGINT NOT NULL,
    chat_id BIGINT NOT NULL,
    address TEXT NOT NULL,
    label TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    seq BIGSERIAL NOT NULL,
    PRIMARY KEY (chain_id, chat_id, address),
    FOREIGN KEY (chain_id, chat_id) REFERENCES chats (chain_id, chat_id)
);
-- '' in address, protocol or market means "any": a rule for the whole chat, or for all of an address's protocols.
CREATE TABLE thresholds (
    chain_id BIGINT NOT NULL,
    chat_id BIGINT NOT NULL,
    address TEXT NOT NULL,
    protocol TEXT NOT NULL,
    market TEXT NOT NULL,
    warn DOUBLE PRECISION NOT NULL,
    critical DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (chain_id, chat_id, address, protocol, market),
    FOREIGN KEY (chain_id, chat_id) REFERENCES chats (chain_id, chat_id)
);
-- until NULL: muted until /unmute.
CREATE TABLE mutes (
    chain_id BIGINT NOT NULL,
    chat_id BIGINT NOT NULL,
    address TEXT NOT NULL,
    until DOUBLE PRECISION,
    PRIMARY KEY (chain_id, chat_id, address),
    FOREIGN KEY (chain_id, chat_id) REFERENCES chats (chain_id, chat_id)
);
"""

# What discovery found in past events, and how far each account's scan went: a restart scans only newer blocks.
_V2 = """
CREATE TABLE discovery_scans (
    chain_id BIGINT NOT NULL,
    protocol TEXT NOT NULL,
    account TEXT NOT NULL,
    scope TEXT NOT NULL,
    block BIGINT NOT NULL,
    PRIMARY KEY (chain_id, protocol, account)
);
CREATE TABLE discovered (
    chain_id BIGINT NOT NULL,
    protocol TEXT NOT NULL,
    account TEXT NOT NULL,
    market TEXT NOT NULL,
    block BIGINT NOT NULL,
    PRIMARY KEY (chain_id, protocol, account, market)
);
"""

# Version 3: the work queue of a cluster (ingest -> workers). A chunk is a block's targets to read, riskiest first;
# (chain, block hash, seq) is unique so a block's work can never be written twice, even by two ingests. Each
# target's state records the newest block whose result was applied (an older result is dropped) and what that read
# found (exposure, lowest health), which the ingest reads back to keep its index and its risk order.
_V3 = """
CREATE TABLE work_chunks (
    id BIGSERIAL PRIMARY KEY,
    chain_id BIGINT NOT NULL,
    block_number BIGINT NOT NULL,
    block_hash TEXT NOT NULL,
    seq INTEGER NOT NULL,
    risk DOUBLE PRECISION NOT NULL,
    targets BYTEA NOT NULL,
    state TEXT NOT NULL DEFAULT 'ready',
    lease_until DOUBLE PRECISION,
    claimed_by TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    written_by TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    done_at DOUBLE PRECISION,
    UNIQUE (chain_id, block_hash, seq)
);
CREATE INDEX work_chunks_open ON work_chunks (chain_id, block_number DESC, seq) WHERE state <> 'done';
CREATE TABLE target_state (
    chain_id BIGINT NOT NULL,
    protocol TEXT NOT NULL,
    account TEXT NOT NULL,
    applied_block BIGINT NOT NULL,
    exposure BYTEA NOT NULL,
    worst_health DOUBLE PRECISION NOT NULL,
    partly_unread BOOLEAN NOT NULL DEFAULT FALSE,
    read_again BOOLEAN NOT NULL DEFAULT FALSE,
    seq BIGSERIAL NOT NULL,
    PRIMARY KEY (chain_id, protocol, account)
);
CREATE INDEX target_state_by_seq ON target_state (chain_id, seq);
"""

MIGRATIONS = (_V1, _V2, _V3)
LATEST = len(MIGRATIONS)

# Any constant shared by every chainwatch: watchers of several chains starting at once on one database take turns
# migrating it instead of racing to create the same tables.
_MIGRATION_LOCK = 0x63776D67  # "cwmg"


async def schema_version(db: asyncpg.Connection) -> int:
    """The database's schema version; 0 for a database chainwatch never opened."""
    # A scan of the catalog by SQL, not to_regclass: after waiting for the migration lock, to_regclass can answer
    # from this backend's catalog cache, which may predate the tables another watcher just created.
    if not await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables WHERE tablename = 'schema_version' "
        "AND schemaname = current_schema())"
    ):
        return 0
    return int(await db.fetchval("SELECT version FROM schema_version"))


async def migrate(db: asyncpg.Connection) -> int:
    """Brings the database to the latest schema; returns the version it was at."""
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        found = await schema_version(db)
    if found > LATEST:
        raise SchemaTooNew(f"the database has schema version {found}, this chainwatch knows up to {LATEST}")
    for version in range(found + 1, LATEST + 1):
        async with db.transaction():
            await db.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            if await schema_version(db) >= version:  # another watcher took this step while we waited for the lock
                continue
            await db.execute(MIGRATIONS[version - 1])
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);"
                "DELETE FROM schema_version;"
            )
            await db.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
    return found
