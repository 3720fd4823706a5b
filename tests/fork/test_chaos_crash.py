"""Crash safety, proven on the real `chainwatch run` process: SIGKILL at the worst moments, then a restart.

The promise under test (README, "Delivery guarantees"): no alert is lost to a crash, and each kill can repeat at
most one message per position (one that reached Telegram but was not yet recorded as sent).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pytest

from chainwatch.devnet.actions import Position
from tests.fork.conftest import DEADLINE, TOKEN, Chain, aave_protocol
from tests.fork.test_cli import CHAINWATCH
from tests.support.botapi import BotApiServer, running_bot_api
from tests.support.rpcproxy import RpcProxy

BURST = 20
FIRST_CHAT = 7000


@pytest.fixture
async def bot_api() -> AsyncIterator[BotApiServer]:
    async with running_bot_api(TOKEN) as server:
        yield server


def chaos_config(path: Path, chain: Chain, proxy: RpcProxy, bot_api: BotApiServer, accounts: list[str]) -> Path:
    """Each account alerts its own chat, so the burst's sends run concurrently (and are killed concurrently)."""
    watches = "\n".join(
        f'[[watch]]\naddress = "{a}"\nlabel = "chaos {i}"\nchat_id = {FIRST_CHAT + i}\n' for i, a in enumerate(accounts)
    )
    path.write_text(f"""
[chain]
chain_id = {chain.devnet.chain_id}
ws_urls = ["{proxy.ws_url}"]
http_urls = ["{proxy.http_url}"]
multicall3 = "{chain.devnet.multicall3}"

[telegram]
token = "{TOKEN}"
api_base = "{bot_api.base_url}"
per_chat_interval = 0.05

[bot]
enabled = false

[storage]
path = "{path.parent / 'chaos.db'}"
{aave_protocol(chain)}
{watches}
""")
    return path


class Chainwatch:
    """One `chainwatch run` process; its stderr (JSON log lines) is read as it comes, so the pipe never fills."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[str] = []
        self._seen = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := (await self.process.stderr.readline()).decode():
            async with self._seen:
                self.events.append(line)
                self._seen.notify_all()

    async def logged(self, needle: str) -> None:
        async with asyncio.timeout(DEADLINE), self._seen:
            await self._seen.wait_for(lambda: any(needle in line for line in self.events) or self._reader.done())
        assert any(needle in line for line in self.events), f"no {needle!r} in:\n{''.join(self.events)[-3000:]}"

    def kill(self, signum: signal.Signals = signal.SIGKILL) -> None:
        os.kill(self.process.pid, signum)

    async def ended(self) -> int:
        async with asyncio.timeout(DEADLINE):
            await self._reader
            return await self.process.wait()


@asynccontextmanager
async def chainwatch_run(config: Path) -> AsyncIterator[Chainwatch]:
    process = await asyncio.create_subprocess_exec(
        *CHAINWATCH, "run", "--config", str(config), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    running = Chainwatch(process)
    try:
        yield running
    finally:
        if process.returncode is None:
            process.kill()
        await running.ended()


async def open_burst(chain: Chain, count: int) -> list[str]:
    """`count` borrowers of 1 WETH against 1,000 USDC (health 1.70): WETH at $1,300 takes all below critical."""
    accounts = [str(a) for a in await chain.actions.fund_accounts(count, label="chaos")]
    positions = [Position(account=a, supply={"WETH": Decimal(1)}, borrow={"USDC": Decimal(1000)}) for a in accounts]
    await chain.actions.open_positions(positions)
    return accounts


def stored(db: Path) -> tuple[int, int]:
    """(the saved cursor's block, how many messages the outbox holds), read from the file a killed process left."""
    with sqlite3.connect(db) as connection:
        (cursor,) = connection.execute("SELECT block_number FROM cursor WHERE id = 1").fetchone()
        (queued,) = connection.execute("SELECT COUNT(*) FROM outbox").fetchone()
    return cursor, queued


class TestKilled:
    async def test_killed_twice_in_a_burst_every_alert_arrives_with_at_most_one_repeat_per_kill(
        self, chain: Chain, proxy: RpcProxy, bot_api: BotApiServer, tmp_path: Path
    ) -> None:
        """1. SIGKILL twice while 20 alerts are being sent (80 ms a request): after a restart all 20 positions
        were alerted, and none more than once per kill."""
        accounts = await open_burst(chain, BURST)
        config = chaos_config(tmp_path / "chaos.toml", chain, proxy, bot_api, accounts)
        bot_api.send_delay = 0.08  # the burst takes over a second: both kills land mid-burst
        kills = 0
        async with chainwatch_run(config) as first:
            await first.logged("listener.subscribed")
            await chain.actions.set_price("WETH", 1300)
            await bot_api.wait_until(lambda: len(bot_api.messages) >= 3, "the burst under way", timeout=DEADLINE)
            first.kill()
            kills += 1
            assert await first.ended() == -signal.SIGKILL
        reached = len(bot_api.messages)
        assert reached < BURST  # the kill came mid-burst, else this scenario proves nothing
        async with chainwatch_run(config) as second:
            await bot_api.wait_until(lambda: len(bot_api.messages) >= reached + 2, "the burst resumed", timeout=DEADLINE)
            second.kill()
            kills += 1
            assert await second.ended() == -signal.SIGKILL
        async with chainwatch_run(config) as third:
            await third.logged("listener.subscribed")
            chats = set(range(FIRST_CHAT, FIRST_CHAT + BURST))
            await bot_api.wait_until(lambda: {m.chat_id for m in bot_api.messages} >= chats, "every position alerted",
                                     timeout=DEADLINE)  # fmt: skip
            third.kill(signal.SIGTERM)
            assert await third.ended() == 0
        per_position = Counter(m.chat_id for m in bot_api.messages)
        assert set(per_position) == chats
        assert max(per_position.values()) <= 1 + kills, per_position
        assert all(m.text.split()[1] == "CRITICAL" for m in bot_api.messages)
        assert bot_api.peak_sends_in_flight_per_chat == 1

    async def test_killed_before_the_price_block_was_processed_it_still_alerts_after_restart(
        self, chain: Chain, proxy: RpcProxy, bot_api: BotApiServer, tmp_path: Path
    ) -> None:
        """2. Frozen (SIGSTOP) before the price block is mined, then SIGKILLed: nothing was queued and the saved
        cursor is below the block, and the restarted watcher alerts exactly once."""
        (account,) = await open_burst(chain, 1)
        config = chaos_config(tmp_path / "chaos.toml", chain, proxy, bot_api, [account])
        async with chainwatch_run(config) as first:
            await first.logged("listener.subscribed")
            # A stopped process runs no code at all: it cannot see, read or queue the block mined meanwhile.
            first.kill(signal.SIGSTOP)
            price_block = await chain.actions.set_price("WETH", 1300)
            first.kill()
            assert await first.ended() == -signal.SIGKILL
        cursor, queued = stored(tmp_path / "chaos.db")
        assert (cursor < price_block, queued) == (True, 0)
        async with chainwatch_run(config) as second:
            await bot_api.wait_for_messages(1, timeout=DEADLINE)
            second.kill(signal.SIGTERM)
            assert await second.ended() == 0
        [alert] = bot_api.messages
        assert alert.chat_id == FIRST_CHAT and alert.text.split()[1] == "CRITICAL"
        assert stored(tmp_path / "chaos.db")[0] >= price_block
