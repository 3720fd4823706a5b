"""Curvance: one health factor per account per market manager, from the manager's own `statusOf`.

`statusOf(account) -> (collateral, maxDebt, debt)` (USD, 1e18, interest included) gives health
`maxDebt / debt`; each cToken's `getSnapshot(account)` tells which assets the account holds (its exposure) and,
with the OracleManager's price, the liquidation price of a single-collateral position. Curvance's account
events carry the account in their data, not a topic, so logs are subscribed by emitter and decoded.

Exposure keys are `"<manager>:<asset>"` (lower-case addresses): the same asset in two managers is two keys.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec
import structlog
from eth_abi.exceptions import DecodingError
from eth_utils import to_checksum_address

from chainwatch.abi import calldata, decode, event_topic
from chainwatch.chain import Log, LogFilter
from chainwatch.config import CurvanceConfig
from chainwatch.feeds import aggregator_call, emitter_of
from chainwatch.model import AssetLine, PositionKey, Reading, Record, Side
from chainwatch.multicall import Call, CallResult
from chainwatch.protocols.base import (
    AccountReading,
    AccountsTouched,
    MarketsTouched,
    ReadError,
    ReadPlan,
    SourcesChanged,
    Touch,
)
from chainwatch.protocols.results import decoded, nonzero_address, token_symbol
from chainwatch.reader import Reader
from chainwatch.rpc import Rpc

log = structlog.get_logger(__name__)

_WAD = 10**18
_MAX_ADAPTORS = 2  # Curvance's OracleManager prices an asset from at most two adaptors
_SNAPSHOT = ["address", "address", "uint8", "bool", "uint256", "uint256"]  # AccountSnapshot

# cToken event topic0 -> (data types, position of the account among them).
_CTOKEN_EVENTS = {
    event_topic("Borrow(uint256,address)"): (["uint256", "address"], 1),
    event_topic("Repay(uint256,address,address)"): (["uint256", "address", "address"], 2),
    event_topic("CollateralUpdated(uint256,bool,address)"): (["uint256", "bool", "address"], 2),
    event_topic("Liquidated(uint256,address,address)"): (["uint256", "address", "address"], 2),
    # The shapes PROTOCOLS.md records, with the debt owed: no public Curvance source or ABI has them, but a
    # deployment that emits them must still be heard.
    event_topic("Borrow(uint256,uint256,address)"): (["uint256", "uint256", "address"], 2),
    event_topic("Repay(uint256,uint256,address,address)"): (["uint256", "uint256", "address", "address"], 3),
}
_POSITION_UPDATED = event_topic("PositionUpdated(address,address,bool)")
_TOKEN_LISTED = event_topic("TokenListed(address)")
_TOKEN_CONFIG_UPDATED = event_topic("TokenConfigUpdated((address" + ",uint256" * 12 + "))")
_MANAGER_EVENTS = (_POSITION_UPDATED, _TOKEN_LISTED, _TOKEN_CONFIG_UPDATED)
# ChainlinkAdaptor: the feed behind an asset was set or dropped.
_ADAPTOR_EVENTS = (
    event_topic("ChainlinkAssetAdded(address,(bool,address,uint256,uint256,uint256,uint256,uint256,uint256),bool)"),
    event_topic("ChainlinkAssetRemoved(address)"),
)


class ListedToken(Record, frozen=True, kw_only=True):
    c_token: str  # checksummed
    asset: str  # lower-case, as exposure keys hold it
    symbol: str


class CurvanceMarket(Record, frozen=True, kw_only=True):
    manager: str  # checksummed, as configured
    oracle_manager: str
    tokens: tuple[ListedToken, ...]

    def key(self, asset: str) -> str:
        return f"{self.manager.lower()}:{asset}"


class Curvance:
    """Curvance market managers, each resolved to its cTokens, their assets and the feeds that price them."""

    def __init__(self, config: CurvanceConfig) -> None:
        self.name = config.name
        self._managers = tuple(str(manager) for manager in config.market_managers)
        self.markets: dict[str, CurvanceMarket] = {}  # manager (lower-case) -> market
        self._key_of_token: dict[str, str] = {}  # cToken (lower-case) -> exposure key
        self.adaptors: frozenset[str] = frozenset()  # lower-case
        self.feeds: dict[str, frozenset[str]] = {}  # emitting feed (lower-case) -> exposure keys

    async def resolve(self, reader: Reader, block: int) -> None:
        markets, feeds, adaptors = {}, {}, set()
        for manager in self._managers:
            market, sources, market_adaptors = await self._resolve_market(reader, block, manager)
            markets[manager.lower()] = market
            adaptors |= market_adaptors
            for asset, asset_feeds in sources.items():
                for feed in asset_feeds:
                    feeds.setdefault(feed, set()).add(market.key(asset))
        self.markets = markets
        self._key_of_token = {t.c_token.lower(): m.key(t.asset) for m in markets.values() for t in m.tokens}
        self.adaptors = frozenset(adaptors)
        self.feeds = {feed: frozenset(keys) for feed, keys in feeds.items()}

    async def _resolve_market(
        self, reader: Reader, block: int, manager: str
    ) -> tuple[CurvanceMarket, dict[str, set[str]], set[str]]:
        """One manager's cTokens and assets, and for each asset (lower-case) the feeds that announce its price."""
        listed, oracle_result = await reader.read(
            [Call(target=manager, data=calldata("queryTokensListed()"), gas=200_000),
             Call(target=manager, data=calldata("oracleManager()"), gas=30_000)], block)  # fmt: skip
        c_tokens = [to_checksum_address(t) for t in decoded(["address[]"], listed, "queryTokensListed")[0]]
        oracle = await _oracle_manager(reader, block, manager, oracle_result)
        asset_calls = [Call(target=t, data=calldata("asset()"), gas=30_000) for t in c_tokens]
        asset_results = await reader.read(asset_calls, block)
        assets = [nonzero_address(result, "cToken.asset").lower() for result in asset_results]
        per_asset = await reader.read([call for asset in assets for call in (
            Call(target=asset, data=calldata("symbol()"), gas=50_000),
            *(Call(target=oracle, data=calldata("assetPriceFeeds(address,uint256)", asset, i), gas=30_000)
              for i in range(_MAX_ADAPTORS)),
        )], block)  # fmt: skip
        stride = 1 + _MAX_ADAPTORS
        tokens, adaptor_of = [], []
        for i, (c_token, asset) in enumerate(zip(c_tokens, assets)):
            symbol_result, *feed_results = per_asset[i * stride : (i + 1) * stride]
            tokens.append(ListedToken(c_token=c_token, asset=asset, symbol=token_symbol(symbol_result, asset)))
            # The getter of a shorter array reverts: an asset's adaptors are the entries that exist.
            adaptor_of += [(asset, nonzero_address(r, "OracleManager.assetPriceFeeds")) for r in feed_results if r.success]
            if not any(r.success for r in feed_results):
                log.warning("curvance.feed_unknown", protocol=self.name, asset=asset, adaptor=None)
        market = CurvanceMarket(manager=manager, oracle_manager=oracle, tokens=tuple(tokens))
        return market, await self._feed_sources(reader, block, adaptor_of), {a.lower() for _, a in adaptor_of}

    async def _feed_sources(self, reader: Reader, block: int, adaptor_of: list[tuple[str, str]]) -> dict[str, set[str]]:
        """Asset -> the contracts whose logs announce its price moves, found through each of its adaptors.

        Curvance's ChainlinkAdaptor names the feed in `assetConfig(asset, inUSD)`: (isConfigured, aggregator, ...).
        An adaptor of another kind cannot be followed: its asset's price moves then reach health only through
        the periodic full refresh, which is logged here.
        """
        configs = await reader.read([
            Call(target=adaptor, data=calldata("assetConfig(address,bool)", asset, in_usd), gas=40_000)
            for asset, adaptor in adaptor_of for in_usd in (True, False)], block)  # fmt: skip
        found: list[tuple[str, str]] = []
        for (asset, adaptor), usd, native in zip(adaptor_of, configs[0::2], configs[1::2]):
            configured = [feed for result in (usd, native) if (feed := _configured_feed(result))]
            if not configured:
                log.warning("curvance.feed_unknown", protocol=self.name, asset=asset, adaptor=adaptor)
            found += [(asset, source) for source in configured]
        aggregators = await reader.read([aggregator_call(source) for _, source in found], block)
        sources: dict[str, set[str]] = {}
        for (asset, source), aggregator in zip(found, aggregators):
            sources.setdefault(asset, set()).add(emitter_of(source, aggregator))
        return sources

    async def discover(self, rpc: Rpc, reader: Reader, accounts: Sequence[str], block: int) -> None:
        """Nothing to find: every configured manager's cTokens are read for every account."""

    def log_filter(self) -> LogFilter:
        return LogFilter(
            addresses=(*self.markets, *self._key_of_token, *sorted(self.adaptors)),
            topic0s=(*_CTOKEN_EVENTS, *_MANAGER_EVENTS, *_ADAPTOR_EVENTS),
        )

    def price_feeds(self) -> dict[str, frozenset[str]]:
        return dict(self.feeds)

    def touched_by(self, log: Log) -> Touch | None:
        if log.address in self._key_of_token and log.topic0 in _CTOKEN_EVENTS:
            types, position = _CTOKEN_EVENTS[log.topic0]
            try:
                account = decode(types, log.data)[position]
            except DecodingError:
                # The account is unknown, so re-read everyone holding this token rather than guess.
                return MarketsTouched(keys=frozenset({self._key_of_token[log.address]}))
            return AccountsTouched(accounts=frozenset({to_checksum_address(account)}))
        if log.address in self.markets:
            return self._manager_touch(log)
        if log.address in self.adaptors and log.topic0 in _ADAPTOR_EVENTS:
            return SourcesChanged()
        return None

    def _manager_touch(self, log: Log) -> Touch | None:
        market = self.markets[log.address]
        try:
            if log.topic0 == _POSITION_UPDATED:
                _, account, _ = decode(["address", "address", "bool"], log.data)
                return AccountsTouched(accounts=frozenset({to_checksum_address(account)}))
            if log.topic0 == _TOKEN_CONFIG_UPDATED:
                (c_token,) = decode(["address"], log.data[:32])
                key = self._key_of_token.get(c_token.lower())
                # A token this watcher has not resolved yet: resolving again finds it.
                return SourcesChanged() if key is None else MarketsTouched(keys=frozenset({key}))
        except DecodingError:
            return MarketsTouched(keys=frozenset(market.key(token.asset) for token in market.tokens))
        if log.topic0 == _TOKEN_LISTED:
            return SourcesChanged()
        return None

    def plan(self, account: str, *, detailed: bool = False) -> ReadPlan:
        markets = tuple(self.markets.values())
        calls = []
        for market in markets:
            calls.append(Call(target=market.manager, data=calldata("statusOf(address)", account),
                              gas=60_000 + 40_000 * len(market.tokens)))  # fmt: skip  (~115k measured for 3 tokens)
            for token in market.tokens:
                calls.append(Call(target=token.c_token, data=calldata("getSnapshot(address)", account), gas=40_000))
                calls.append(Call(target=market.oracle_manager, gas=80_000,
                                  data=calldata("getPrice(address,bool,bool)", token.asset, True, True)))  # fmt: skip
            if detailed:
                calls += _detail_calls(market)
        return ReadPlan(calls=tuple(calls),
                        decode=lambda results, block: self._decode(account, markets, results, block, detailed))  # fmt: skip

    def _decode(self, account: str, markets: tuple[CurvanceMarket, ...], results: Sequence[CallResult],
                block: int, detailed: bool) -> AccountReading:  # fmt: skip
        sizes = [(1 + 2 * len(m.tokens), 2 * len(m.tokens) if detailed else 0) for m in markets]
        if len(results) != sum(base + extra for base, extra in sizes):
            raise ReadError(f"{len(results)} results do not fit the planned reads of {account}")
        readings, exposure, offset = [], set(), 0
        for market, (size, extra) in zip(markets, sizes):
            mine = results[offset : offset + size]
            reading, held = _market_reading(self.name, account, market, mine, block)
            if detailed:
                reading = msgspec.structs.replace(reading, assets=_lines(market, mine, results[offset + size : offset + size + extra]))
            offset += size + extra
            readings.append(reading)
            exposure |= held
        return AccountReading(readings=tuple(readings), exposure=frozenset(exposure))


def _market_reading(
    protocol: str, account: str, market: CurvanceMarket, results: Sequence[CallResult], block: int
) -> tuple[Reading, set[str]]:
    collateral, max_debt, debt = decoded(["uint256"] * 3, results[0], "MarketManager.statusOf")
    health = math.inf if debt == 0 else max_debt / debt
    collateral_tokens, debt_assets, held = [], set(), set()
    for token, snapshot, price in zip(market.tokens, results[1::2], results[2::2]):
        posted, owed = decoded(_SNAPSHOT, snapshot, "cToken.getSnapshot")[4:]
        if posted:
            collateral_tokens.append((token, price))
        if owed:
            debt_assets.add(token.asset)
        if posted or owed:
            held.add(market.key(token.asset))
    liquidation_price, liquidation_asset = None, ""
    # One collateral, not also borrowed: its price alone moves health, by the same factor (health is linear in it).
    # At health 0 (a collateral that counts for nothing) no price restores it.
    if 0 < health < math.inf and len(collateral_tokens) == 1 and collateral_tokens[0][0].asset not in debt_assets:
        token, price_result = collateral_tokens[0]
        price = _usable_price(price_result)
        if price is not None:
            liquidation_price, liquidation_asset = price / _WAD / health, token.symbol
    reading = Reading(
        key=PositionKey(protocol=protocol, account=account, market=market.manager),
        block=block,
        health_factor=health,
        collateral=collateral / _WAD,
        debt=debt / _WAD,
        liquidation_price=liquidation_price,
        liquidation_asset=liquidation_asset,
    )
    return reading, held


def _detail_calls(market: CurvanceMarket) -> list[Call]:
    """Per token the ratio the manager weighs collateral by, and the higher price it values debt at."""
    return [call for token in market.tokens for call in (
        Call(target=market.manager, data=calldata("collateralizationRatio(address)", token.c_token), gas=30_000),
        Call(target=market.oracle_manager, data=calldata("getPrice(address,bool,bool)", token.asset, True, False),
             gas=80_000),
    )]  # fmt: skip


def _lines(market: CurvanceMarket, results: Sequence[CallResult], details: Sequence[CallResult]) -> tuple[AssetLine, ...]:
    """Lines valued as `statusOf` values them: collateral at the lower price times its ratio, debt at the higher."""
    lines = []
    for i, token in enumerate(market.tokens):
        _, _, decimals, _, posted, owed = decoded(_SNAPSHOT, results[1 + 2 * i], "cToken.getSnapshot")
        unit = 10**decimals
        if posted:
            (lower, _) = decoded(["uint256", "uint256"], results[2 + 2 * i], "OracleManager.getPrice")
            (ratio,) = decoded(["uint256"], details[2 * i], "MarketManager.collateralizationRatio")
            lines.append(AssetLine(symbol=token.symbol, side=Side.COLLATERAL, amount=posted / unit,
                                   value=posted * lower / unit / _WAD, weight=ratio / _WAD))  # fmt: skip
        if owed:
            (higher, _) = decoded(["uint256", "uint256"], details[2 * i + 1], "OracleManager.getPrice")
            lines.append(AssetLine(symbol=token.symbol, side=Side.DEBT, amount=owed / unit, value=owed * higher / unit / _WAD))
    return tuple(lines)


def _usable_price(result: CallResult) -> int | None:
    """The OracleManager's price when it reports no error; the liquidation price is left out otherwise (health,
    from `statusOf`, does not depend on this call)."""
    if not result.success:
        return None
    try:
        price, error_code = decode(["uint256", "uint256"], result.data)
    except DecodingError:
        return None
    return price if error_code == 0 and price > 0 else None


async def _oracle_manager(reader: Reader, block: int, manager: str, result: CallResult) -> str:
    """The manager's `oracleManager()`; failing that, its CentralRegistry's, where Curvance's deployments name it."""
    if result.success:
        return nonzero_address(result, "MarketManager.oracleManager")
    (registry,) = await reader.read([Call(target=manager, data=calldata("centralRegistry()"), gas=30_000)], block)
    registry_address = nonzero_address(registry, f"MarketManager {manager} has neither oracleManager() nor centralRegistry()")
    oracle_call = Call(target=registry_address, data=calldata("oracleManager()"), gas=30_000)
    (oracle,) = await reader.read([oracle_call], block)
    return nonzero_address(oracle, "CentralRegistry.oracleManager")


def _configured_feed(result: CallResult) -> str | None:
    """The aggregator in an `assetConfig` answer that starts (isConfigured, aggregator); None from any other."""
    if not result.success or len(result.data) < 64:
        return None
    try:
        is_configured, aggregator = decode(["bool", "address"], result.data[:64])
    except DecodingError:
        return None
    return aggregator if is_configured and int(aggregator, 16) != 0 else None
