"""Send many transactions to Anvil quickly and prove that every one of them succeeded.

Transactions are planned with explicit nonces and gas, so none needs a gas estimate against state that is
not mined yet: a plan goes out in JSON-RPC batches without waiting for receipts, then the receipts are
collected and checked. A failure names the planned action and the revert reason from the node's trace.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Sequence
from typing import Any, Final

import msgspec
from eth_typing import ChecksumAddress
from web3 import AsyncHTTPProvider, Web3
from web3.types import RPCEndpoint
from web3.utils.address import get_create_address

# Explicit limits, because a transaction planned behind unmined ones cannot be estimated. Measured on the
# devnet: the largest deploy (PoolConfigurator) uses 5.3M gas; the smaller the limit, the more fit a block.
DEPLOY_GAS: Final = 8_000_000
CALL_GAS: Final = 1_000_000
_BATCH_SIZE: Final = 500
_RECEIPT_DEADLINE_S: Final = 120.0
_POLL_INTERVAL_S: Final = 0.01
# Checksumming hashes the address; a benchmark plan names the same few thousand addresses over and over.
_checksum: Final = functools.lru_cache(maxsize=65_536)(Web3.to_checksum_address)


class RpcFailed(Exception):
    """A JSON-RPC request came back with an error object."""

    def __init__(self, method: str, error: Any) -> None:
        super().__init__(f"{method} failed: {error}")
        self.method = method
        self.error = error


class TxFailed(Exception):
    """A planned transaction was rejected or reverted; `action` says what it was for."""

    def __init__(self, action: str, tx_hash: str | None, reason: str) -> None:
        where = f" (tx {tx_hash})" if tx_hash else ""
        super().__init__(f"{action} failed{where}: {reason}")
        self.action = action
        self.tx_hash = tx_hash
        self.reason = reason


class Tx(msgspec.Struct, frozen=True, kw_only=True):
    action: str
    sender: ChecksumAddress
    nonce: int
    to: ChecksumAddress | None  # None deploys `data` as creation code
    data: str
    gas: int
    value: int = 0

    def rpc_params(self) -> dict[str, str]:
        params = {"from": self.sender, "nonce": hex(self.nonce), "gas": hex(self.gas), "data": self.data,
                  "value": hex(self.value)}  # fmt: skip
        if self.to is not None:
            params["to"] = self.to
        return params


class Rpc:
    """Raw JSON-RPC on one HTTP endpoint: no web3 formatting, so thousands of requests stay cheap."""

    def __init__(self, http_url: str) -> None:
        self.http_url = http_url
        self._provider = AsyncHTTPProvider(http_url, request_kwargs={"timeout": 60})

    async def call(self, method: str, *params: Any) -> Any:
        response = await self._provider.make_request(RPCEndpoint(method), list(params))
        if "error" in response:
            raise RpcFailed(method, response["error"])
        return response["result"]

    async def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """Results in request order; a failed element is returned as its `RpcFailed`, never raised here."""
        results: list[Any] = []
        for start in range(0, len(calls), _BATCH_SIZE):
            chunk = [(RPCEndpoint(method), params) for method, params in calls[start : start + _BATCH_SIZE]]
            responses = await self._provider.make_batch_request(chunk)
            if not isinstance(responses, list):  # the node rejected the whole batch
                raise RpcFailed("batch", responses.get("error"))
            for (method, _), response in zip(chunk, responses, strict=True):
                results.append(RpcFailed(method, response["error"]) if "error" in response else response["result"])
        return results

    async def aclose(self) -> None:
        await self._provider.disconnect()


class TxPlan:
    """Transactions in the order they must run, with nonces counted per sender from a known start."""

    def __init__(self, next_nonces: dict[ChecksumAddress, int]) -> None:
        self._next = dict(next_nonces)
        self.txs: list[Tx] = []

    @classmethod
    async def for_senders(cls, rpc: Rpc, senders: Sequence[str]) -> TxPlan:
        addresses = [_checksum(s) for s in dict.fromkeys(senders)]
        counts = await rpc.batch([("eth_getTransactionCount", [a, "pending"]) for a in addresses])
        for count in counts:
            if isinstance(count, RpcFailed):
                raise count
        return cls({a: int(c, 16) for a, c in zip(addresses, counts, strict=True)})

    def call(self, action: str, sender: str, to: str, data: str, *, gas: int = CALL_GAS, value: int = 0) -> None:
        self._add(action, sender, _checksum(to), data, gas, value)

    def deploy(self, action: str, sender: str, creation_code: str, *, gas: int = DEPLOY_GAS) -> ChecksumAddress:
        """Plan a contract creation and return the address it will get (sender and nonce fix it)."""
        tx = self._add(action, sender, None, creation_code, gas, 0)
        return get_create_address(tx.sender, tx.nonce)

    def _add(self, action: str, sender: str, to: ChecksumAddress | None, data: str, gas: int, value: int) -> Tx:
        account = _checksum(sender)
        if account not in self._next:
            raise KeyError(f"{action}: sender {account} was not given to this plan")
        tx = Tx(action=action, sender=account, nonce=self._next[account], to=to, data=data, gas=gas, value=value)
        self._next[account] += 1
        self.txs.append(tx)
        return tx


async def execute(rpc: Rpc, txs: Sequence[Tx]) -> list[dict[str, Any]]:
    """Send the transactions in block-sized waves without awaiting each; return the receipts once all succeeded.

    Why waves: when Anvil 1.7.1 builds a block and a transaction does not fit, the sender's later
    transactions that do fit fail the nonce check and are silently dropped from the pool. A wave is a run of
    transactions whose gas limits fit in one block, and the next wave goes out only once it is mined.
    Why mine by hand under automine: automine can miss the wake-up of a transaction that arrives in a burst
    (it sits pending until the next one), so automine is paused and each wave is mined with `evm_mine`.
    Under interval mining the node's own next block takes the wave.
    """
    latest = await rpc.call("eth_getBlockByNumber", "latest", False)
    automine: bool = await rpc.call("anvil_getAutomine")
    if automine:
        await rpc.call("evm_setAutomine", False)
    try:
        receipts: list[dict[str, Any]] = []
        for wave in waves(txs, int(latest["gasLimit"], 16)):
            hashes = await _send(rpc, wave)
            mined = await _receipts(rpc, wave, hashes, mine=automine)
            # Stop at the first failed wave: later waves build on it and would only add confusing failures.
            for tx, tx_hash, receipt in zip(wave, hashes, mined, strict=True):
                if receipt["status"] != "0x1":
                    raise TxFailed(tx.action, tx_hash, await _revert_reason(rpc, tx, tx_hash, receipt))
            receipts += mined
    finally:
        if automine:
            await rpc.call("evm_setAutomine", True)
    return receipts


def waves(txs: Sequence[Tx], block_gas_limit: int) -> list[Sequence[Tx]]:
    """Consecutive runs of transactions whose gas limits add up to at most one block's."""
    found: list[Sequence[Tx]] = []
    start, used = 0, 0
    for i, tx in enumerate(txs):
        if tx.gas > block_gas_limit:
            raise TxFailed(tx.action, None, f"gas limit {tx.gas} exceeds the block gas limit {block_gas_limit}")
        if used + tx.gas > block_gas_limit:
            found.append(txs[start:i])
            start, used = i, 0
        used += tx.gas
    if start < len(txs):
        found.append(txs[start:])
    return found


async def _send(rpc: Rpc, txs: Sequence[Tx]) -> list[str]:
    results = await rpc.batch([("eth_sendTransaction", [tx.rpc_params()]) for tx in txs])
    for tx, result in zip(txs, results, strict=True):
        if isinstance(result, RpcFailed):
            raise TxFailed(tx.action, None, f"rejected by the node: {result.error}")
    return results


async def _receipts(rpc: Rpc, txs: Sequence[Tx], hashes: list[str], *, mine: bool) -> list[dict[str, Any]]:
    receipts: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + _RECEIPT_DEADLINE_S
    while True:
        if mine:
            await rpc.call("evm_mine")
        missing = [i for i in range(len(hashes)) if i not in receipts]
        found = await rpc.batch([("eth_getTransactionReceipt", [hashes[i]]) for i in missing])
        for i, receipt in zip(missing, found, strict=True):
            if isinstance(receipt, RpcFailed):
                raise TxFailed(txs[i].action, hashes[i], f"receipt lookup failed: {receipt.error}")
            if receipt is not None:
                receipts[i] = receipt
        if len(receipts) == len(hashes):
            return [receipts[i] for i in range(len(hashes))]
        first = min(i for i in range(len(hashes)) if i not in receipts)
        if mine and not await _pool_holds_any(rpc):
            raise TxFailed(txs[first].action, hashes[first], "dropped: not mined and no longer in the pool")
        if time.monotonic() > deadline:
            raise TxFailed(txs[first].action, hashes[first], f"not mined within {_RECEIPT_DEADLINE_S:g} s")
        if not mine:
            await asyncio.sleep(_POLL_INTERVAL_S)


async def _pool_holds_any(rpc: Rpc) -> bool:
    status = await rpc.call("txpool_status")
    return int(status["pending"], 16) + int(status["queued"], 16) > 0


async def _revert_reason(rpc: Rpc, tx: Tx, tx_hash: str, receipt: dict[str, Any]) -> str:
    """Why a mined transaction reverted, from its trace: the block holds the wave's earlier transactions, so
    replaying it alone on the parent block could fail for a different reason."""
    if int(receipt["gasUsed"], 16) >= tx.gas:
        return f"out of gas (limit {tx.gas})"
    try:
        trace = await rpc.call("debug_traceTransaction", tx_hash, {"tracer": "callTracer"})
    except RpcFailed as failure:
        return f"reverted (no trace: {failure.error})"
    reason = trace.get("revertReason") or trace.get("output") or "no reason given"
    return f"reverted: {reason}"
