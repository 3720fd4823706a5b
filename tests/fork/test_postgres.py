"""chainwatch running on PostgreSQL instead of SQLite: the same alerts, and they survive a restart."""

from __future__ import annotations

from tests.fork.conftest import Chain, StartWatcher, kinds
from tests.fork.test_spine import open_standard_positions
from tests.integration.test_store_port import fresh_database
from tests.support.botapi import BotApiServer


async def test_a_price_drop_alerts_and_a_restart_neither_repeats_nor_misses(
    chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer, postgres_url: str
) -> None:
    """With [storage] url = postgresql://..., a crash alerts once; after a restart the recovery is told, once."""
    url = await fresh_database(postgres_url)
    await open_standard_positions(chain)
    running = await start_watcher(storage_url=url)
    await running.settled(await chain.actions.set_price("WETH", 1300))
    assert kinds(bot_api) == ["CRITICAL"]
    await running.shutdown()
    running = await start_watcher(storage_url=url)
    await running.settled(await chain.actions.set_price("WETH", 2000))
    assert kinds(bot_api) == ["CRITICAL", "RECOVERED"]
