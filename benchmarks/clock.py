"""A block clock for the measurement: automine off, one empty block every `interval` seconds, as on a chain
with a fixed block time (Monad's is about 0.4 s), and a price update mined alone in a block of its own.

Every block is mined here, by `evm_mine`, so the moment a block exists is known on this process's
`time.monotonic()` clock, the same clock the local Bot API server stamps requests with: the earlier of
`evm_mine` answering and the node's own `newHeads` notification for the block reaching this process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from chainwatch.devnet.deploy import ADMIN_ACCOUNT_INDEX, FEED_DECIMALS
from chainwatch.devnet.solc import compile_own_contracts

_PRICE_GAS = 150_000
_HEAD_DEADLINE_S = 10.0


class NodeRpc:
    """Bare JSON-RPC to the node itself (not through the counting proxy): the benchmark's own requests."""

    def __init__(self, http_url: str) -> None:
        self._url = http_url
        self._session = aiohttp.ClientSession()
        self._id = 0

    async def call(self, method: str, *params: Any) -> Any:
        self._id += 1
        body = {"jsonrpc": "2.0", "id": self._id, "method": method, "params": list(params)}
        async with self._session.post(self._url, json=body) as response:
            answer = await response.json()
        if "error" in answer:
            raise RuntimeError(f"{method} failed: {answer['error']}")
        return answer["result"]

    async def aclose(self) -> None:
        await self._session.close()


@dataclass(frozen=True)
class Mined:
    number: int
    at: float  # monotonic, right after evm_mine answered
    calls: int  # the caller's counter (eth_calls through the proxy) sampled at that moment


@dataclass(frozen=True)
class PriceMove:
    block: int
    sent_at: float  # monotonic, before the transaction was sent
    mined_at: float  # monotonic, once evm_mine answered
    head_seen_at: float  # monotonic, when the node's own newHeads notification for the block reached us
    wall_at_origin: float  # time.time() at `origin`, to place the watchers' log timestamps

    @property
    def origin(self) -> float:
        """The latency origin: the first moment the benchmark knew the block existed."""
        return min(self.mined_at, self.head_seen_at)


@dataclass
class BlockClock:
    rpc: NodeRpc
    ws_url: str  # the node's own WebSocket: when a block becomes visible, without the proxy in between
    interval: float
    counter: Callable[[], int]
    mined: list[Mined] = field(default_factory=list)
    heads_seen: dict[int, float] = field(default_factory=dict)
    _heads: asyncio.Task[None] | None = None
    _subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _head: int = 0
    _due: float = 0.0

    @property
    def head(self) -> int:
        return self._head

    async def start(self) -> None:
        self._heads = asyncio.create_task(self._follow_heads())
        async with asyncio.timeout(_HEAD_DEADLINE_S):
            await self._subscribed.wait()
        await self.rpc.call("evm_setAutomine", False)
        self._head = int(await self.rpc.call("eth_blockNumber"), 16)

    async def run(self) -> None:
        """Mines a block every `interval` seconds until cancelled; a price block restarts the count."""
        self._due = time.monotonic() + self.interval
        while True:
            await asyncio.sleep(max(0.0, self._due - time.monotonic()))
            async with self._lock:
                if time.monotonic() < self._due:
                    continue  # a price block was mined meanwhile and moved the schedule
                await self._mine()
                self._due += self.interval

    async def stop(self) -> None:
        if self._heads is not None:
            self._heads.cancel()
        await self.rpc.call("evm_setAutomine", True)

    async def move_price(self, aggregator: str, usd: int) -> PriceMove:
        """Sends the feed update and mines it alone in one block; checks it succeeded."""
        feed = (await compile_own_contracts())["SettableFeed"]
        admin = (await self.rpc.call("eth_accounts"))[ADMIN_ACCOUNT_INDEX]
        data = feed.calldata("updateAnswer", usd * 10**FEED_DECIMALS)
        async with self._lock:
            sent_at = time.monotonic()
            tx = await self.rpc.call("eth_sendTransaction", {"from": admin, "to": aggregator, "data": data,
                                                             "gas": hex(_PRICE_GAS)})  # fmt: skip
            mined = await self._mine()
            # The price block lives a full interval, like any other block, before the next one is mined.
            self._due = sent_at + self.interval
        wall, now = time.time(), time.monotonic()
        receipt = await self.rpc.call("eth_getTransactionReceipt", tx)
        if receipt is None or receipt["status"] != "0x1" or int(receipt["blockNumber"], 16) != mined.number:
            raise RuntimeError(f"the price update was not mined alone in block {mined.number}: {receipt}")
        async with asyncio.timeout(_HEAD_DEADLINE_S):
            while mined.number not in self.heads_seen:
                await asyncio.sleep(0.001)
        head_seen_at = self.heads_seen[mined.number]
        origin = min(mined.at, head_seen_at)
        return PriceMove(block=mined.number, sent_at=sent_at, mined_at=mined.at, head_seen_at=head_seen_at,
                         wall_at_origin=wall - (now - origin))  # fmt: skip

    def after(self, block: int) -> Mined | None:
        """The block mined right after `block`, once there is one."""
        return next((m for m in self.mined if m.number == block + 1), None)

    async def _follow_heads(self) -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(self.ws_url) as socket:
            await socket.send_json({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]})
            async for message in socket:
                payload = message.json()
                if payload.get("id") == 1:
                    self._subscribed.set()
                elif payload.get("method") == "eth_subscription":
                    self.heads_seen[int(payload["params"]["result"]["number"], 16)] = time.monotonic()

    async def _mine(self) -> Mined:
        await self.rpc.call("evm_mine")
        self._head += 1
        mined = Mined(number=self._head, at=time.monotonic(), calls=self.counter())
        self.mined.append(mined)
        return mined
