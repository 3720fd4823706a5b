"""Aave v3 and its forks (Neverland on Monad): one health factor per account per pool.

Reads `Pool.getUserAccountData` (the protocol's own health math, interest included) and
`getUserConfiguration` (which reserves the account uses, for the exposure index), both in one batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache

import msgspec
import structlog
from eth_utils import to_checksum_address

from chainwatch import words
from chainwatch.abi import calldata, event_topic
from chainwatch.chain import Log, LogFilter, topic_address
from chainwatch.feeds import ROUTE_EVENTS, PriceSource, follow_feeds, reroutes
from chainwatch.model import AssetLine, Discovered, PositionKey, Reading, Side
from chainwatch.multicall import Call, CallResult
from chainwatch.protocols.base import (
    AccountReading,
    AccountsTouched,
    MarketsTouched,
    PriceBasis,
    ReadError,
    ReadPlan,
    SourcesChanged,
    Touch,
)
from chainwatch.protocols.plans import shared
from chainwatch.protocols.results import decoded, fixed, nonzero_address, token_symbol
from chainwatch.reader import Reader
from chainwatch.rpc import Rpc

log = structlog.get_logger(__name__)

_NO_DEBT = 2**256 - 1
# The hot reads' shapes: getUserAccountData, getUserConfiguration, getAssetsPrices.
_ACCOUNT_DATA = words.layout(*["uint256"] * 6)
_WORD = words.layout("uint256")
_PRICES = words.layout("uint256[]")
_RESERVE_DATA = [
    "(uint256)", "uint128", "uint128", "uint128", "uint128", "uint128", "uint40", "uint16",
    "address", "address", "address", "address", "uint128", "uint128", "uint128",
]  # fmt: skip

# topic0 -> which topic names the account whose position the event changes.
_POOL_EVENTS = {
    event_topic("Supply(address,address,address,uint256,uint16)"): (2,),
    event_topic("Withdraw(address,address,address,uint256)"): (2,),
    event_topic("Borrow(address,address,address,uint256,uint8,uint256,uint16)"): (2,),
    event_topic("Repay(address,address,address,uint256,bool)"): (2,),
    event_topic("LiquidationCall(address,address,address,uint256,uint256,address,bool)"): (3,),
    event_topic("ReserveUsedAsCollateralEnabled(address,address)"): (2,),
    event_topic("ReserveUsedAsCollateralDisabled(address,address)"): (2,),
    event_topic("UserEModeSet(address,uint8)"): (1,),
}
# Rates and indexes of one reserve changed: every account using it drifts (the key is the reserve asset).
_RESERVE_DATA_UPDATED = event_topic("ReserveDataUpdated(address,uint256,uint256,uint256,uint256,uint256)")
_ATOKEN_TRANSFER = event_topic("BalanceTransfer(address,address,uint256,uint256)")
# Anything that changes where prices come from, or which reserves exist: resolve again and resubscribe.
_ORACLE_EVENTS = (
    event_topic("AssetSourceUpdated(address,address)"),
    event_topic("FallbackOracleUpdated(address)"),
)
_PROVIDER_EVENTS = (
    event_topic("PriceOracleUpdated(address,address)"),
    event_topic("PoolUpdated(address,address)"),
)
_RESERVES_CHANGED = (
    event_topic("ReserveInitialized(address,address,address,address,address)"),
    event_topic("ReserveDropped(address)"),
    # A new e-mode category may bring its own price oracle: screening must know before it trusts a feed's answer.
    event_topic("EModeCategoryAdded(uint8,uint256,uint256,uint256,address,string)"),
)
_EMODE_CATEGORIES = range(1, 256)  # category 0 is "no e-mode"; ids are uint8
_WAD = 10**18
# A reserve's liquidation threshold moved: every account using it has a new health factor, with no price log.
_COLLATERAL_CONFIGURATION_CHANGED = event_topic("CollateralConfigurationChanged(address,uint256,uint256,uint256)")


class AaveV3:
    """An Aave v3 market, found from its PoolAddressesProvider."""

    def __init__(self, name: str, pool_addresses_provider: str) -> None:
        self.name = name
        self._provider = pool_addresses_provider
        self.pool = ""
        self.oracle = ""
        self.configurator = ""
        self.base_unit = 10**8
        self.reserves: dict[str, int] = {}  # asset (lower-case) -> reserve id
        self.atokens: dict[str, str] = {}  # aToken (lower-case) -> asset
        self.balance_tokens: dict[str, tuple[str, str, str]] = {}  # asset -> (aToken, stable debt, variable debt)
        self.sources: dict[str, frozenset[PriceSource]] = {}  # asset -> the price sources that move it
        self.followed_proxies: frozenset[str] = frozenset()  # Chainlink proxies on the way to those sources
        self.symbols: dict[str, str] = {}  # asset -> ERC-20 symbol, for people
        self.direct: dict[PriceSource, frozenset[str]] = {}  # aggregators whose answer the oracle returns as is
        # No e-mode category has a price source of its own (then an account's prices are the oracle's, whatever
        # its e-mode): only then is a reading's health at a feed's new answer computable without a read.
        self.oracle_prices_only = False

    async def resolve(self, reader: Reader, block: int) -> None:
        provider_reads = await reader.read(
            [Call(target=self._provider, data=calldata("getPool()"), gas=30_000),
             Call(target=self._provider, data=calldata("getPriceOracle()"), gas=30_000),
             Call(target=self._provider, data=calldata("getPoolConfigurator()"), gas=30_000)],
            block,
        )  # fmt: skip
        self.pool, self.oracle, self.configurator = (nonzero_address(r, "PoolAddressesProvider") for r in provider_reads)
        (assets_result,) = await reader.read(
            [Call(target=self.pool, data=calldata("getReservesList()"), gas=500_000),
             ], block)  # fmt: skip
        assets = [asset.lower() for asset in decoded(["address[]"], assets_result, "Pool.getReservesList")[0]]
        per_asset = await reader.read(
            [call for asset in assets for call in (
                Call(target=self.pool, data=calldata("getReserveData(address)", asset), gas=60_000),
                Call(target=self.oracle, data=calldata("getSourceOfAsset(address)", asset), gas=30_000),
            )]
            + [Call(target=self.oracle, data=calldata("BASE_CURRENCY_UNIT()"), gas=30_000)],
            block,
        )  # fmt: skip
        (self.base_unit,) = decoded(["uint256"], per_asset[-1], "AaveOracle.BASE_CURRENCY_UNIT")
        feeds: dict[str, str] = {}  # asset -> the oracle's source for it
        # Rebuilt from scratch at every resolve: a dropped reserve's id is reused by the next one initialised, and
        # a bit of the user configuration must never still name the asset that held it before.
        reserves: dict[str, int] = {}
        atokens: dict[str, str] = {}
        balance_tokens: dict[str, tuple[str, str, str]] = {}
        for asset, reserve_result, source_result in zip(assets, per_asset[0:-1:2], per_asset[1:-1:2]):
            reserve = decoded(_RESERVE_DATA, reserve_result, "Pool.getReserveData")
            reserves[asset] = reserve[7]
            atokens[reserve[8].lower()] = asset
            balance_tokens[asset] = (reserve[8], reserve[9], reserve[10])
            try:
                feeds[asset] = nonzero_address(source_result, "AaveOracle.getSourceOfAsset").lower()
            except ReadError as error:  # that asset is seen by the refresh tiers only; the others still resolve
                log.warning("aave.source_unknown", protocol=self.name, asset=asset, error=str(error))
        self.reserves, self.atokens, self.balance_tokens = reserves, atokens, balance_tokens
        followed = await follow_feeds(reader, feeds.values(), block, protocol=self.name)
        self.sources = {asset: followed[feed].sources for asset, feed in feeds.items()}
        *categories, base_result = await reader.read(
            [Call(target=self.pool, data=calldata("getEModeCategoryData(uint8)", i), gas=40_000) for i in _EMODE_CATEGORIES]
            + [Call(target=self.oracle, data=calldata("BASE_CURRENCY()"), gas=30_000)],
            block,
        )  # fmt: skip
        # The oracle prices its base currency at BASE_CURRENCY_UNIT whatever its source says: never direct.
        base = _base_currency(base_result)
        self.oracle_prices_only = base is not None and all(_emode_without_oracle(result) for result in categories)
        direct: dict[PriceSource, set[str]] = {}
        for asset, feed in feeds.items():
            # The oracle's price is its source's `latestAnswer()` (while positive): the aggregator's own answer
            # when the source is that aggregator or a Chainlink proxy of it (as on Neverland and most markets).
            source = followed[feed].direct
            if source is not None and asset != base:
                direct.setdefault(source, set()).add(asset)
        self.direct = {source: frozenset(assets) for source, assets in direct.items()}
        self.followed_proxies = frozenset(proxy for outcome in followed.values() for proxy in outcome.proxies)
        symbols = await reader.read([Call(target=asset, data=calldata("symbol()"), gas=50_000) for asset in assets], block)
        self.symbols = {asset: token_symbol(result, asset) for asset, result in zip(assets, symbols)}

    discovery_scope = None  # discovery reads no history

    async def discover(self, rpc: Rpc, reader: Reader, accounts: Sequence[str], block: int, *,
                       after: int | None = None) -> tuple[Discovered, ...]:  # fmt: skip
        """Nothing to find: one read of `getUserConfiguration` tells every reserve an account uses."""
        return ()

    def restore(self, found: Sequence[Discovered]) -> None:
        """Nothing is ever stored (see `discover`)."""

    async def resolve_found(self, reader: Reader, block: int) -> None:
        """Never asked: no event of this protocol names a market it has not resolved."""

    def log_filter(self) -> LogFilter:
        return LogFilter(
            addresses=(self.pool.lower(), self.oracle.lower(), self._provider.lower(), self.configurator.lower(),
                       *self.atokens, *sorted(self.followed_proxies)),
            topic0s=(*_POOL_EVENTS, _RESERVE_DATA_UPDATED, _ATOKEN_TRANSFER, *_ORACLE_EVENTS, *_PROVIDER_EVENTS,
                     *_RESERVES_CHANGED, _COLLATERAL_CONFIGURATION_CHANGED, *ROUTE_EVENTS),
        )  # fmt: skip

    def price_feeds(self) -> dict[PriceSource, frozenset[str]]:
        feeds: dict[PriceSource, set[str]] = {}
        for asset, sources in self.sources.items():
            for source in sources:
                feeds.setdefault(source, set()).add(asset)
        return {feed: frozenset(assets) for feed, assets in feeds.items()}

    def direct_prices(self) -> dict[PriceSource, frozenset[str]]:
        return dict(self.direct) if self.oracle_prices_only else {}

    def touched_by(self, log: Log) -> Touch | None:
        if log.address == self.pool.lower() and log.topic0 in _POOL_EVENTS:
            positions = _POOL_EVENTS[log.topic0]
            return AccountsTouched(accounts=frozenset(_account(log.topics[i]) for i in positions))
        if log.address == self.pool.lower() and log.topic0 == _RESERVE_DATA_UPDATED:
            return MarketsTouched(keys=frozenset({topic_address(log.topics[1])}), drift=True)
        if log.address in self.atokens and log.topic0 == _ATOKEN_TRANSFER:
            return AccountsTouched(accounts=frozenset({_account(log.topics[1]), _account(log.topics[2])}))
        if log.address == self.configurator.lower() and log.topic0 == _COLLATERAL_CONFIGURATION_CHANGED:
            return MarketsTouched(keys=frozenset({topic_address(log.topics[1])}))
        if (
            (log.address == self.oracle.lower() and log.topic0 in _ORACLE_EVENTS)
            or (log.address == self._provider.lower() and log.topic0 in _PROVIDER_EVENTS)
            or (log.address == self.configurator.lower() and log.topic0 in _RESERVES_CHANGED)
            or reroutes(log, self.followed_proxies)
        ):
            return SourcesChanged()
        return None

    def plan(self, account: str, *, detailed: bool = False) -> ReadPlan:
        reserves = dict(self.reserves)  # as planned: a resolve before decoding must not shift the results
        # Built afresh: two words by hand (abi.calldata); kept per account they were ~40 MiB at 100,000 positions.
        calls = _hot_calls(account, (self.pool, self.oracle, shared(tuple(reserves))))
        if not detailed:
            return ReadPlan(calls=calls, decode=lambda results, block: self._decode(account, reserves, results, block))
        # Per reserve what Aave's GenericLogic sums: its configuration (LT, decimals) and the account's balances.
        tokens = {asset: self.balance_tokens[asset] for asset in reserves}
        details = tuple(call for asset, (a_token, stable, variable) in tokens.items() for call in (
            Call(target=self.pool, data=calldata("getConfiguration(address)", asset), gas=30_000),
            *(Call(target=token, data=calldata("balanceOf(address)", account), gas=40_000)
              for token in (a_token, stable, variable)),
        ))  # fmt: skip

        def decode(results: Sequence[CallResult], block: int) -> AccountReading:
            outcome = self._decode(account, reserves, results[: len(calls)], block)
            lines = self._lines(outcome, reserves, results[2], results[1], results[len(calls) :])
            (reading,) = outcome.readings
            return AccountReading(readings=(msgspec.structs.replace(reading, assets=lines),), exposure=outcome.exposure)

        return ReadPlan(calls=calls + details, decode=decode)

    def _lines(self, outcome: AccountReading, reserves: dict[str, int], prices_result: CallResult,
               bitmap_result: CallResult, details: Sequence[CallResult]) -> tuple[AssetLine, ...]:  # fmt: skip
        if len(details) != 4 * len(reserves):
            raise ReadError(f"expected {4 * len(reserves)} reserve details, got {len(details)}")
        (prices,) = decoded(["uint256[]"], prices_result, "AaveOracle.getAssetsPrices")
        (bitmap,) = decoded(["uint256"], bitmap_result, "Pool.getUserConfiguration")
        lines = []
        for i, (asset, rid) in enumerate(reserves.items()):
            configuration, supplied, stable, variable = (
                decoded(["uint256"], result, what)[0]
                for result, what in zip(details[4 * i : 4 * i + 4], ("getConfiguration", "aToken", "stable", "variable"))
            )
            # ReserveConfiguration: bits 16-31 liquidation threshold (bps), 48-55 decimals.
            threshold, unit = (configuration >> 16) & 0xFFFF, 10 ** ((configuration >> 48) & 0xFF)
            price, symbol = prices[i] / self.base_unit, self.symbols.get(asset, asset)
            if (bitmap >> (2 * rid + 1)) & 1 and supplied:
                amount = supplied / unit
                lines.append(AssetLine(symbol=symbol, side=Side.COLLATERAL, amount=amount, value=amount * price,
                                       weight=threshold / 10_000))  # fmt: skip
            if (bitmap >> (2 * rid)) & 1 and stable + variable:
                amount = (stable + variable) / unit
                lines.append(AssetLine(symbol=symbol, side=Side.DEBT, amount=amount, value=amount * price))
        return tuple(lines)

    def _decode(self, account: str, reserves: dict[str, int], results: Sequence[CallResult], block: int) -> AccountReading:
        if len(results) != 3:
            raise ReadError(f"expected 3 results for {account}, got {len(results)}")
        collateral, debt, _, threshold, _, health = fixed(_ACCOUNT_DATA, results[0], "Pool.getUserAccountData")
        (bitmap,) = fixed(_WORD, results[1], "Pool.getUserConfiguration")
        prices = _prices(results[2])
        # Bit 2*id: borrowing that reserve; bit 2*id+1: using it as collateral.
        borrowed = {asset for asset, rid in reserves.items() if (bitmap >> (2 * rid)) & 1}
        collaterals = [asset for asset, rid in reserves.items() if (bitmap >> (2 * rid + 1)) & 1]
        health_factor = math.inf if health == _NO_DEBT or debt == 0 else health / 1e18
        liquidation_price, liquidation_asset = None, ""
        if prices and len(collaterals) == 1 and collaterals[0] not in borrowed and health_factor not in (0, math.inf):
            # One collateral, priced against other assets: health scales with its price, so 1.0 is at price / HF.
            (asset,) = collaterals
            price = dict(zip(reserves, prices)).get(asset, 0) / self.base_unit
            liquidation_price, liquidation_asset = price / health_factor, self.symbols.get(asset, asset)
        reading = Reading(
            key=PositionKey(protocol=self.name, account=account),
            block=block,
            health_factor=health_factor,
            collateral=collateral / self.base_unit,
            debt=debt / self.base_unit,
            liquidation_price=liquidation_price,
            liquidation_asset=liquidation_asset,
        )
        basis = None
        if prices and len(prices) == len(reserves) and self.oracle_prices_only:
            basis = AaveBasis(block=block, collateral=collateral, threshold=threshold, debt=debt,
                              collateral_assets=shared(tuple(collaterals)), debt_assets=shared(tuple(sorted(borrowed))),
                              prices={a: p for a, p in zip(reserves, prices) if a in borrowed or a in collaterals})  # fmt: skip
        return AccountReading(readings=(reading,), exposure=frozenset({*borrowed, *collaterals}), basis=basis)


class AaveBasis(PriceBasis, frozen=True, kw_only=True):
    """`getUserAccountData`'s totals with the prices they were computed at.

    A side with one asset scales with its price. A side of several is known only as a sum, so a move is bounded
    as if all of that side were in the asset that moved worst: collateral at the lowest ratio new/old price (and
    Aave's averaged threshold at the highest, which only rounds), debt at the highest. Sound for every split of
    the sum, and as tight as the single-asset bound when one asset holds nearly all of the side."""

    collateral: int  # totalCollateralBase
    threshold: int  # currentLiquidationThreshold (bps): with one collateral, exactly its own
    debt: int  # totalDebtBase
    collateral_assets: tuple[str, ...]
    debt_assets: tuple[str, ...]
    prices: dict[str, int]  # asset -> the oracle's price at the read (base currency units)

    def health_at(self, prices: Mapping[str, int]) -> float | None:
        moved = {a: p for a, p in prices.items() if a in self.prices and p != self.prices[a]}
        if any(p <= 0 or self.prices[a] <= 0 for a, p in moved.items()):
            return None  # the oracle falls back to another source for a non-positive answer
        collateral_moves = [(moved[a], self.prices[a]) for a in self.collateral_assets if a in moved]
        debt_moves = [(moved[a], self.prices[a]) for a in self.debt_assets if a in moved]
        if len(self.collateral_assets) == 1 and collateral_moves:
            ((new, old),) = collateral_moves
            # GenericLogic: value = floor(balance x price / unit) = C, so balance / unit >= C / price.
            weighted = (self.collateral * new // old * self.threshold + 5_000) // 10_000
        elif collateral_moves:
            weighted = _weighted_bound(self.collateral, self.threshold, collateral_moves)
        else:
            weighted = (self.collateral * self.threshold + 5_000) // 10_000
        debt = self.debt
        if len(self.debt_assets) == 1 and debt_moves:
            ((new, old),) = debt_moves
            # D = floor(owed x price / unit), so owed / unit < (D + 1) / price: the new value is below that bound.
            debt = ((debt + 1) * new - 1) // old
        elif debt_moves:
            debt = _debt_bound(debt, debt_moves)
        if debt == 0:
            return math.inf
        # GenericLogic: healthFactor = (totalCollateral.percentMul(avgLiquidationThreshold)).wadDiv(totalDebt),
        # both rounding half up, so it never falls when collateral rises or debt falls: the bounds give a bound.
        return ((weighted * _WAD + debt // 2) // debt) / 1e18


_MAX_THRESHOLD = 2**16 - 1  # a reserve's liquidation threshold is 16 bits of its configuration


def _weighted_bound(collateral: int, threshold: int, moves: Sequence[tuple[int, int]]) -> int:
    """A lower bound on `percentMul(C', avgLT')` after the moves (new, old price) of several collateral assets.

    Per reserve v = floor(b x p / unit) and W = sum(v x LT) >= C x avgLT = X. A fall to ratio r keeps
    v' > r x v - 1, so W' > r_min x W - LT_max x (falls); a rise keeps v' < r x (v + 1), so
    C' < r_max x (C + rises); and C' x floor(W' / C') > W' - C'. Hence X' > r_min x X - LT_max x falls -
    r_max x (C + rises), each term rounded the safe way."""
    (low_new, low_old), (high_new, high_old) = (1, 1), (1, 1)  # ratios compared in integers: exact when close
    for new, old in moves:
        if new * low_old < low_new * old:
            low_new, low_old = new, old
        if new * high_old > high_new * old:
            high_new, high_old = new, old
    falls, rises = sum(new < old for new, old in moves), sum(new > old for new, old in moves)
    at_least = (
        collateral * threshold * low_new // low_old
        - _MAX_THRESHOLD * falls
        - -(-(collateral + rises) * high_new // high_old)
    )
    return max(0, (at_least + 5_000) // 10_000)


def _debt_bound(debt: int, moves: Sequence[tuple[int, int]]) -> int:
    """An upper bound on the total debt after the moves of several debt assets: a fall lowers its term; a rise
    to ratio r keeps each term d' < r x (d + 1), so D' < r_max x (D + rises)."""
    rises = [(new, old) for new, old in moves if new > old]
    if not rises:
        return debt
    new, old = rises[0]
    for n, o in rises[1:]:
        if n * old > new * o:
            new, old = n, o
    return -(-(debt + len(rises)) * new // old)


def _base_currency(result: CallResult) -> str | None:
    """AaveOracle.BASE_CURRENCY (lower-case; the zero address for USD); None when it cannot be told."""
    try:
        return str(decoded(["address"], result, "AaveOracle.BASE_CURRENCY")[0]).lower()
    except ReadError:
        return None


def _emode_without_oracle(result: CallResult) -> bool:
    """An e-mode category that prices its assets with the oracle's own prices (an unknown shape: assume not)."""
    try:
        (category,) = decoded(["(uint16,uint16,uint16,address,string)"], result, "Pool.getEModeCategoryData")
    except ReadError:
        return False
    return int(category[3], 16) == 0


def _account(topic: str) -> str:
    return to_checksum_address(topic_address(topic))


def _hot_calls(account: str, basis: tuple[str, str, tuple[str, ...]]) -> tuple[Call, ...]:
    pool, oracle, assets = basis
    # Gas grows with the reserves the view loops over; the estimate only sizes multicall chunks.
    return (
        Call(target=pool, data=calldata("getUserAccountData(address)", account), gas=40_000 + 25_000 * len(assets)),
        Call(target=pool, data=calldata("getUserConfiguration(address)", account), gas=30_000),
        _prices_call(oracle, assets),
    )


@lru_cache(maxsize=64)
def _prices_call(oracle: str, assets: tuple[str, ...]) -> Call:
    """The same for every account: one object, and the reader makes it once per pass."""
    data = calldata("getAssetsPrices(address[])", list(assets))
    return Call(target=oracle, data=data, gas=20_000 + 15_000 * len(assets))




def _prices(result: CallResult) -> list[int]:
    """The oracle's prices, or none: one broken feed must cost a liquidation-price line, never an alert."""
    try:
        (prices,) = fixed(_PRICES, result, "AaveOracle.getAssetsPrices")
    except ReadError:
        return []
    return list(prices)
