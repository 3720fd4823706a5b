"""Drive a deployed devnet like its users do: move prices, open and change Aave positions, fund many borrowers.

Used by tests, the demo and the benchmark. Every method returns the block number of its last transaction, so
a caller can wait for the watcher to have seen that block; a failed transaction raises `TxFailed` naming the
action (and Aave's error by name). Calls on one node must not overlap: `execute` pauses automine meanwhile.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Final

import msgspec
from eth_typing import ChecksumAddress
from eth_utils import keccak
from web3 import Web3

from chainwatch.devnet.artifacts import Artifact
from chainwatch.devnet.deploy import (
    ADMIN_ACCOUNT_INDEX, DATA_PROVIDER, ERC20, FEED_DECIMALS, ORACLE, POOL, Devnet, PriceSourcesDevnet, Reserve, aave_artifact,
)  # fmt: skip
from chainwatch.devnet.solc import compile_own_contracts, node_package
from chainwatch.devnet.transactions import Rpc, RpcFailed, TxFailed, TxPlan, execute

Amount = Decimal | int | float
_MAX_UINT256: Final = 2**256 - 1
_VARIABLE_RATE: Final = 2
# Repaying "everything" mints this much above the debt read just before, covering the interest accrued until
# the repay is mined; the pool takes only what is owed.
_REPAY_MARGIN: Final = Decimal("1.01")
# About twice what each action uses on the devnet (mint 51k, supply 171k, borrow 322k with two collaterals):
# the smaller the limits, the more of the benchmark's transactions fit in one block.
_TOKEN_GAS: Final = 150_000
_SUPPLY_GAS: Final = 500_000
_BORROW_GAS: Final = 800_000


class Position(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One account's intended position, amounts in whole tokens by reserve symbol."""

    account: str
    supply: dict[str, Decimal]
    borrow: dict[str, Decimal] = {}


class DevnetActions:
    """Transactions against one devnet; use as `async with DevnetActions(url, devnet) as actions:`."""

    def __init__(self, http_url: str, devnet: Devnet) -> None:
        self.devnet = devnet
        self._rpc = Rpc(http_url)
        self._pool = Web3.to_checksum_address(devnet.aave_v3.pool)
        self._erc20 = aave_artifact(ERC20)
        self._pool_art = aave_artifact(POOL)

    async def __aenter__(self) -> DevnetActions:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._rpc.aclose()

    async def anvil_accounts(self) -> list[ChecksumAddress]:
        """Anvil's unlocked, funded dev accounts (0 is the devnet admin, 9 supplies the liquidity)."""
        return [Web3.to_checksum_address(a) for a in await self._rpc.call("eth_accounts")]

    async def set_price(self, symbol: str, usd: Amount, *, aggregator: str | None = None) -> int:
        """Push a new answer to the asset's SettableFeed (it emits AnswerUpdated), or to `aggregator` (one a
        proxy was switched to); the update's block."""
        feed = (await compile_own_contracts())["SettableFeed"]
        target = aggregator or self.devnet.aave_v3.reserves[symbol].aggregator
        return await self._admin_call(f"set {symbol} price to ${usd}", target, feed, "updateAnswer", _answer(usd))

    async def switch_aggregator(self, symbol: str) -> tuple[ChecksumAddress, int]:
        """Deploy a new SettableFeed with the current answer and confirm it on the asset's proxy (it emits
        AggregatorConfirmed): the new aggregator and the switch's block. The price does not change."""
        own = await compile_own_contracts()
        reserve = self.devnet.aave_v3.reserves[symbol]
        current: str = await self._rpc.call(
            "eth_call", {"to": reserve.feed, "data": own["FeedProxy"].calldata("latestAnswer")}, "latest")
        admin = (await self.anvil_accounts())[ADMIN_ACCOUNT_INDEX]
        plan = await TxPlan.for_senders(self._rpc, [admin])
        code = own["SettableFeed"].creation_code(FEED_DECIMALS, f"{symbol} / USD", int(current, 16))
        new = plan.deploy(f"deploy a new {symbol} aggregator", admin, code)
        _call(plan, f"confirm the new {symbol} aggregator", admin, reserve.feed, own["FeedProxy"], "confirmAggregator",
              new, gas=_TOKEN_GAS)  # fmt: skip
        return new, await self._run(plan)

    async def reprice_through(self, symbol: str, *, scale: tuple[int, int] | None = None) -> tuple[ChecksumAddress, int]:
        """Make the Aave oracle read the asset through a new contract in front of its SettableFeed: a FeedProxy
        (the answer forwarded, as a Chainlink proxy does), or with `scale` = (numerator, denominator) a ScaledFeed
        (proxy-shaped, the answer multiplied). The new source and the block of `setAssetSources`."""
        own = await compile_own_contracts()
        reserve = self.devnet.aave_v3.reserves[symbol]
        admin = (await self.anvil_accounts())[ADMIN_ACCOUNT_INDEX]
        plan = await TxPlan.for_senders(self._rpc, [admin])
        if scale is None:
            code = own["FeedProxy"].creation_code(reserve.aggregator)
        else:
            code = own["ScaledFeed"].creation_code(reserve.aggregator, *scale)
        source = plan.deploy(f"deploy a {'scaled feed' if scale else 'proxy'} for {symbol}", admin, code)
        _call(plan, f"make {source} the oracle source of {symbol}", admin, self.devnet.aave_v3.oracle,
              aave_artifact(ORACLE), "setAssetSources", [reserve.asset], [source], gas=_TOKEN_GAS)  # fmt: skip
        return source, await self._run(plan)

    async def set_ratio(self, ratio: Amount) -> int:
        """sWETH's exchange rate (WETH per sWETH), on the ratio feed of its composite oracle."""
        feed, sources = (await compile_own_contracts())["SettableFeed"], self._price_sources()
        return await self._admin_call(f"set sWETH ratio to {ratio}", sources.ratio_feed, feed, "updateAnswer",
                                      _answer(ratio))  # fmt: skip

    async def set_redstone_price(self, symbol: str, usd: Amount) -> int:
        """A new value for the symbol's data feed on the shared RedStone adapter (it emits ValueUpdate)."""
        adapter, sources = (await compile_own_contracts())["RedstoneMultiFeedAdapter"], self._price_sources()
        feed_id = bytes.fromhex(sources.redstone_ids[symbol][2:])
        return await self._admin_call(f"set RedStone {symbol} to ${usd}", sources.redstone_adapter, adapter,
                                      "setValue", feed_id, _answer(usd))  # fmt: skip

    async def set_pyth_price(self, symbol: str, usd: Amount) -> int:
        """A new price for the symbol's id on the Pyth contract (it emits PriceFeedUpdate), 8 decimals."""
        pyth, sources = (await compile_own_contracts())["PythPriceFeeds"], self._price_sources()
        price_id = bytes.fromhex(sources.pyth_ids[symbol][2:])
        return await self._admin_call(f"set Pyth {symbol} to ${usd}", sources.pyth, pyth, "setPrice", price_id,
                                      _answer(usd), 0, -FEED_DECIMALS)  # fmt: skip

    async def _admin_call(self, action: str, to: str, artifact: Artifact, function: str, *args: object) -> int:
        admin = (await self.anvil_accounts())[ADMIN_ACCOUNT_INDEX]
        plan = await TxPlan.for_senders(self._rpc, [admin])
        _call(plan, action, admin, to, artifact, function, *args, gas=_TOKEN_GAS)
        return await self._run(plan)

    def _price_sources(self) -> PriceSourcesDevnet:
        if self.devnet.price_sources is None:
            raise ValueError("this devnet has no reserves priced by other oracles")
        return self.devnet.price_sources

    async def open_position(
        self, account: str, *, supply: Mapping[str, Amount], borrow: Mapping[str, Amount] | None = None
    ) -> int:
        """Mint, approve and supply each collateral, then borrow each debt at the variable rate."""
        position = Position(account=account, supply={s: _decimal(a) for s, a in supply.items()},
                            borrow={s: _decimal(a) for s, a in (borrow or {}).items()})  # fmt: skip
        return await self.open_positions([position])

    async def open_positions(self, positions: Sequence[Position]) -> int:
        """Open many positions in one burst of transactions (the benchmark's thousands of borrowers)."""
        plan = await TxPlan.for_senders(self._rpc, [p.account for p in positions])
        for position in positions:
            account = Web3.to_checksum_address(position.account)
            for symbol, amount in position.supply.items():
                self._plan_supply(plan, account, symbol, amount)
            for symbol, amount in position.borrow.items():
                self._plan_borrow(plan, account, symbol, amount)
        return await self._run(plan)

    async def supply(self, account: str, symbol: str, amount: Amount) -> int:
        """Mint, approve and supply `amount` more of `symbol` as collateral."""
        account = Web3.to_checksum_address(account)
        plan = await TxPlan.for_senders(self._rpc, [account])
        self._plan_supply(plan, account, symbol, _decimal(amount))
        return await self._run(plan)

    async def borrow(self, account: str, symbol: str, amount: Amount) -> int:
        """Borrow `amount` of `symbol` at the variable rate."""
        account = Web3.to_checksum_address(account)
        plan = await TxPlan.for_senders(self._rpc, [account])
        self._plan_borrow(plan, account, symbol, _decimal(amount))
        return await self._run(plan)

    async def repay(self, account: str, symbol: str, amount: Amount | None = None) -> int:
        """Repay `amount` of variable debt, or all of it when None; the tokens are minted to the account first."""
        account, asset = Web3.to_checksum_address(account), self._asset(symbol)
        if amount is None:
            to_mint, to_repay = int(await self._variable_debt(account, asset) * _REPAY_MARGIN) + 1, _MAX_UINT256
        else:
            to_mint = to_repay = self._units(symbol, _decimal(amount))
        plan = await TxPlan.for_senders(self._rpc, [account])
        erc20, pool = self._erc20, self._pool_art
        _call(plan, f"mint {symbol} to {account} to repay", account, asset, erc20, "mint(address,uint256)",
              account, to_mint, gas=_TOKEN_GAS)  # fmt: skip
        _call(plan, f"approve {symbol} by {account} to repay", account, asset, erc20, "approve",
              self._pool, to_mint, gas=_TOKEN_GAS)  # fmt: skip
        _call(plan, f"repay {symbol} by {account}", account, self._pool, pool, "repay",
              asset, to_repay, _VARIABLE_RATE, account, gas=_SUPPLY_GAS)  # fmt: skip
        return await self._run(plan)

    async def withdraw(self, account: str, symbol: str, amount: Amount | None = None) -> int:
        """Withdraw `amount` of supplied collateral, or all of it when None."""
        account = Web3.to_checksum_address(account)
        units = _MAX_UINT256 if amount is None else self._units(symbol, _decimal(amount))
        plan = await TxPlan.for_senders(self._rpc, [account])
        _call(plan, f"withdraw {symbol} by {account}", account, self._pool, self._pool_art, "withdraw",
              self._asset(symbol), units, account, gas=_BORROW_GAS)  # fmt: skip
        return await self._run(plan)

    async def fund_accounts(self, count: int, *, label: str = "borrower", eth: int = 100) -> list[ChecksumAddress]:
        """`count` accounts derived from `label`, each given `eth` ether and impersonated so it can send."""
        accounts = [derived_account(label, i) for i in range(count)]
        wei = hex(eth * 10**18)
        calls = [call for a in accounts for call in (("anvil_setBalance", [a, wei]), ("anvil_impersonateAccount", [a]))]
        for result in await self._rpc.batch(calls):
            if isinstance(result, RpcFailed):
                raise result
        return accounts

    async def advance_time(self, seconds: int) -> int:
        """Move the chain clock forward and mine a block (interest accrues with no event); the new block."""
        await self._rpc.call("evm_increaseTime", seconds)
        await self._rpc.call("evm_mine")
        return int(await self._rpc.call("eth_blockNumber"), 16)

    def _plan_supply(self, plan: TxPlan, account: ChecksumAddress, symbol: str, amount: Decimal) -> None:
        asset, units, erc20 = self._asset(symbol), self._units(symbol, amount), self._erc20
        _call(plan, f"mint {amount} {symbol} to {account}", account, asset, erc20, "mint(address,uint256)",
              account, units, gas=_TOKEN_GAS)  # fmt: skip
        _call(plan, f"approve {symbol} by {account}", account, asset, erc20, "approve", self._pool, units,
              gas=_TOKEN_GAS)  # fmt: skip
        _call(plan, f"supply {amount} {symbol} by {account}", account, self._pool, self._pool_art, "supply",
              asset, units, account, 0, gas=_SUPPLY_GAS)  # fmt: skip

    def _plan_borrow(self, plan: TxPlan, account: ChecksumAddress, symbol: str, amount: Decimal) -> None:
        units = self._units(symbol, amount)
        _call(plan, f"borrow {amount} {symbol} by {account}", account, self._pool, self._pool_art, "borrow",
              self._asset(symbol), units, _VARIABLE_RATE, 0, account, gas=_BORROW_GAS)  # fmt: skip

    async def _run(self, plan: TxPlan) -> int:
        try:
            receipts = await execute(self._rpc, plan.txs)
        except TxFailed as failure:
            raise TxFailed(failure.action, failure.tx_hash, _with_aave_error_name(failure.reason)) from failure
        return max(int(r["blockNumber"], 16) for r in receipts)

    async def _variable_debt(self, account: ChecksumAddress, asset: ChecksumAddress) -> int:
        data = aave_artifact(DATA_PROVIDER).calldata("getUserReserveData", asset, account)
        raw: str = await self._rpc.call("eth_call", {"to": self.devnet.aave_v3.data_provider, "data": data}, "latest")
        # getUserReserveData returns nine static words; the third is currentVariableDebt.
        return int(raw[2 + 2 * 64 : 2 + 3 * 64], 16)

    def _reserve(self, symbol: str) -> Reserve:
        others = self.devnet.price_sources.reserves if self.devnet.price_sources else {}
        return self.devnet.aave_v3.reserves[symbol] if symbol in self.devnet.aave_v3.reserves else others[symbol]

    def _asset(self, symbol: str) -> ChecksumAddress:
        return Web3.to_checksum_address(self._reserve(symbol).asset)

    def _units(self, symbol: str, amount: Decimal) -> int:
        scaled = amount * 10 ** self._reserve(symbol).decimals
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{amount} {symbol} has more decimals than the token")
        return int(scaled)


def derived_account(label: str, index: int) -> ChecksumAddress:
    """A deterministic address nobody holds a key for; usable on Anvil once impersonated."""
    return Web3.to_checksum_address(keccak(text=f"chainwatch-devnet:{label}:{index}")[-20:])


def _call(plan: TxPlan, action: str, sender: str, to: str, artifact: Artifact, function: str, *args: object,
          gas: int) -> None:  # fmt: skip
    plan.call(action, sender, to, artifact.calldata(function, *args), gas=gas)


def _with_aave_error_name(reason: str) -> str:
    """Aave reverts with bare numeric codes ("reverted: 34"); name the code from Errors.sol."""
    match = re.search(r"reverted: (\d+)$", reason)
    name = _aave_error_names().get(match.group(1)) if match else None
    return f"{reason} ({name})" if name else reason


@functools.cache
def _aave_error_names() -> dict[str, str]:
    source = (node_package("@aave/core-v3") / "contracts/protocol/libraries/helpers/Errors.sol").read_text()
    return {code: name for name, code in re.findall(r"string public constant (\w+) = '(\d+)';", source)}


def _answer(amount: Amount) -> int:
    """A price or ratio as the devnet's feeds hold it: 8 decimals."""
    return int((_decimal(amount) * 10**FEED_DECIMALS).to_integral_value())


def _decimal(amount: Amount) -> Decimal:
    # Through str: Decimal(0.1) would carry all 55 digits of the binary float.
    return amount if isinstance(amount, Decimal) else Decimal(str(amount))
