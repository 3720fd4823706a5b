"""JSON-RPC over HTTP for reads: `eth_call` pinned to a block, `eth_getLogs`, heads; polite to every endpoint and
failing over between them (the endpoints' health and budgets live in endpoints.py).

Endpoint URLs often carry API keys, so errors, logs and metrics name an endpoint by its position in the config
(`http_urls[0]`), never by URL. Plain aiohttp rather than web3's provider: a 429's `Retry-After` header and the
status of a 5xx are what decide how long to rest an endpoint, and web3's provider does not hand them back.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import msgspec
import structlog

from chainwatch import metrics
from chainwatch.chain import Head, Log, LogFilter, head_from_rpc, log_from_rpc
from chainwatch.config import HttpEndpoint
from chainwatch.endpoints import Endpoint, EndpointPool, retry_after_seconds

log = structlog.get_logger(__name__)

# Attempts per request across all endpoints, and how long a request may wait for a usable one: enough to ride out
# a provider shedding load (each 429 or 5xx rests the endpoint, so attempts are spread over seconds), bounded so
# that a caller with its own recovery (the engine's re-read, the listener's reconnect, start-up's retry with its
# log line) hears of an outage within seconds.
MAX_ATTEMPTS = 8
PATIENCE_SECONDS = 15.0
# EIP-1474's "limit exceeded": what several providers answer, with HTTP 200, instead of a 429.
_LIMIT_EXCEEDED = -32005


def _plain(value: Any) -> Any:
    """msgspec's enc_hook: str subclasses (a checksummed Address) go out as the string they are."""
    if isinstance(value, str):
        return str(value)
    raise NotImplementedError(f"cannot send a {type(value).__name__} in JSON-RPC params")


_ENCODER = msgspec.json.Encoder(enc_hook=_plain)


class RpcError(Exception):
    """A JSON-RPC request failed on every endpoint; the text carries no URL."""

    def __init__(self, method: str, reason: str, *, answered: bool = False) -> None:
        super().__init__(f"{method} failed: {reason}")
        self.method = method
        self.reason = reason
        # The node itself answered with a JSON-RPC error (a revert, out of gas): asking again gets the same.
        self.answered = answered


class _EndpointFailed(Exception):
    """One attempt got no usable answer from an endpoint: `outcome` is the metric's label."""

    def __init__(self, outcome: str, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason
        self.retry_after = retry_after


class Rpc:
    """Reads from the chain over HTTP. Each request takes the best usable endpoint (fewest recent errors, then
    lowest latency, then config order), waits for a token of its budget, and on a failure that is the endpoint's
    (429, 5xx, timeout, no connection, a body that is not JSON-RPC) moves to the next while that one rests."""

    def __init__(
        self, endpoints: Sequence[str | HttpEndpoint], *, max_attempts: int = MAX_ATTEMPTS,
        patience_seconds: float = PATIENCE_SECONDS, seed: int | None = None,
    ) -> None:  # fmt: skip
        if not endpoints:
            raise ValueError("at least one HTTP RPC URL is needed")
        configs = [HttpEndpoint(url=e) if isinstance(e, str) else e for e in endpoints]
        self._pool = EndpointPool(configs, seed=seed)
        self._max_attempts = max_attempts
        self._patience = patience_seconds
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None

    @property
    def endpoints(self) -> Sequence[Endpoint]:
        return self._pool.endpoints

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, params: list[Any]) -> Any:
        body = _ENCODER.encode({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params})
        deadline = time.monotonic() + self._patience
        reasons: dict[str, str] = {}  # the last failure of each endpoint tried, for the error
        for _ in range(self._max_attempts):
            endpoint = await self._pool.take(deadline)
            if endpoint is None:
                break
            try:
                return await self._attempt(endpoint, method, body)
            except _EndpointFailed as failure:
                reasons[endpoint.name] = failure.reason
            finally:
                self._pool.settled()
        told = "; ".join(f"{name}: {reason}" for name, reason in sorted(reasons.items()))
        raise RpcError(method, told or "every endpoint is resting after failures")

    async def _attempt(self, endpoint: Endpoint, method: str, body: bytes) -> Any:
        """The result of one request to `endpoint`; RpcError(answered) for the node's own JSON-RPC error;
        _EndpointFailed (the endpoint now resting) for anything that is the endpoint's fault."""
        await endpoint.limiter.acquire()
        started = time.monotonic()
        try:
            response = await self._post(endpoint, body)
        except _EndpointFailed as failure:
            was_healthy = endpoint.failures_in_a_row == 0
            rest = endpoint.failed(time.monotonic(), self._pool.rng, failure.retry_after)
            metrics.RPC_REQUESTS.labels(endpoint.name, method, failure.outcome).inc()
            if was_healthy:
                log.warning("rpc.endpoint_resting", endpoint=endpoint.name, method=method, outcome=failure.outcome,
                            rest_seconds=round(rest, 2))  # fmt: skip
            raise
        was_resting = endpoint.failures_in_a_row > 0
        endpoint.answered(time.monotonic() - started)
        if was_resting:
            log.info("rpc.endpoint_back", endpoint=endpoint.name)
        if "error" in response:
            metrics.RPC_REQUESTS.labels(endpoint.name, method, "answered").inc()
            error = response["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            # A JSON-RPC error is the node's answer (a revert, a bad block): another endpoint won't differ.
            raise RpcError(method, f"{endpoint.name}: {message}", answered=True)
        metrics.RPC_REQUESTS.labels(endpoint.name, method, "ok").inc()
        return response["result"]

    async def _post(self, endpoint: Endpoint, body: bytes) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=endpoint.timeout)
        headers = {"Content-Type": "application/json"}
        try:
            async with self._session.post(endpoint.url, data=body, headers=headers, timeout=timeout) as answer:
                if answer.status == 429 or answer.status >= 500:
                    outcome = "429" if answer.status == 429 else "5xx"
                    retry_after = retry_after_seconds(answer.headers.get("Retry-After"))
                    raise _EndpointFailed(outcome, f"HTTP {answer.status}", retry_after)
                if answer.status != 200:
                    raise _EndpointFailed("error", f"HTTP {answer.status}")
                raw = await answer.read()
        except TimeoutError:
            raise _EndpointFailed("timeout", f"no answer within {endpoint.timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as error:
            # The type only: aiohttp's texts name the host and port.
            raise _EndpointFailed("error", type(error).__name__) from None
        try:
            response = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            raise _EndpointFailed("malformed", "a body that is not JSON") from None
        if not isinstance(response, dict) or ("result" not in response and "error" not in response):
            raise _EndpointFailed("malformed", "JSON that is not a JSON-RPC response")
        error = response.get("error")
        if isinstance(error, dict) and error.get("code") == _LIMIT_EXCEEDED:
            # A provider's rate limit told as a JSON-RPC error: the endpoint's refusal, not the node's answer.
            raise _EndpointFailed("429", "limit exceeded (JSON-RPC -32005)")
        return response

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
