"""JSON-RPC over HTTP for reads: `eth_call` pinned to a block, `eth_getLogs`, heads; failover across URLs.

Endpoint URLs often carry API keys, so errors name an endpoint by its position in the config, never by URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp
import structlog
from web3 import AsyncHTTPProvider
from web3.types import RPCEndpoint

from chainwatch.chain import Head, Log, LogFilter, head_from_rpc, log_from_rpc

log = structlog.get_logger(__name__)


class RpcError(Exception):
    """A JSON-RPC request failed on every endpoint; the text carries no URL."""

    def __init__(self, method: str, reason: str, *, answered: bool = False) -> None:
        super().__init__(f"{method} failed: {reason}")
        self.method = method
        self.reason = reason
        # The node itself answered with a JSON-RPC error (a revert, out of gas): asking again gets the same.
        self.answered = answered


class Rpc:
    """Reads from the chain over HTTP; tries each configured endpoint in turn, starting with the last good one."""

    def __init__(self, urls: Sequence[str], *, timeout: float = 15.0) -> None:
        if not urls:
            raise ValueError("at least one HTTP RPC URL is needed")
        self._providers = [
            AsyncHTTPProvider(url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None)
            for url in urls
        ]
        self._preferred = 0

    async def close(self) -> None:
        for provider in self._providers:
            await provider.disconnect()

    async def request(self, method: str, params: list[Any]) -> Any:
        reasons = []
        count = len(self._providers)
        for attempt in range(count):
            index = (self._preferred + attempt) % count
            try:
                response = await self._providers[index].make_request(RPCEndpoint(method), params)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
                # ValueError: a body that is not JSON (a proxy's HTML error page); try the next endpoint.
                reasons.append(f"http_urls[{index}]: {type(error).__name__}")
                continue
            if not isinstance(response, dict) or ("result" not in response and "error" not in response):
                reasons.append(f"http_urls[{index}]: malformed JSON-RPC response")
                continue
            if "error" in response:
                error = response["error"]
                message = error.get("message", error) if isinstance(error, dict) else error
                # A JSON-RPC error is the node's answer (a revert, a bad block): another endpoint won't differ.
                raise RpcError(method, f"http_urls[{index}]: {message}", answered=True)
            self._preferred = index
            return response["result"]
        raise RpcError(method, "; ".join(reasons))

    async def call(self, to: str, data: bytes, block: int) -> bytes:
        result = await self.request("eth_call", [{"to": to, "data": "0x" + data.hex()}, hex(block)])
        return bytes.fromhex(result.removeprefix("0x"))

    async def block_number(self) -> int:
        return int(await self.request("eth_blockNumber", []), 16)

    async def chain_id(self) -> int:
        return int(await self.request("eth_chainId", []), 16)

    async def head(self, number: int | None = None) -> Head:
        tag = "latest" if number is None else hex(number)
        raw = await self.request("eth_getBlockByNumber", [tag, False])
        if raw is None:
            raise RpcError("eth_getBlockByNumber", f"no block {tag}")
        return head_from_rpc(raw)

    async def block_logs(self, log_filter: LogFilter, block_hash: str) -> list[Log]:
        """The filter's logs in one block, by hash (EIP-234), so a reorg cannot swap the block underneath."""
        params = {**log_filter.as_rpc(), "blockHash": block_hash}
        return [log_from_rpc(raw) for raw in await self.request("eth_getLogs", [params])]

    async def logs(self, log_filter: LogFilter, from_block: int, to_block: int) -> list[Log]:
        params = {**log_filter.as_rpc(), "fromBlock": hex(from_block), "toBlock": hex(to_block)}
        return [log_from_rpc(raw) for raw in await self.request("eth_getLogs", [params])]
