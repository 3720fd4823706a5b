"""Curvance: one health factor per account per market manager, at the manager's soft liquidation line.

Curvance has three lines per collateral token, from `MarketManager.collConfig(cToken) -> (collRatio, collReqSoft,
collReqHard)`: `statusOf(account) -> (collateral, maxDebt, debt)` (USD, 1e18, interest included) gives the borrow
limit as `maxDebt`, but liquidation starts only when debt exceeds `cSoft = sum(collateral value * unit /
collReqSoft)`, collateral valued at the oracle's lower price times the cToken's exchange rate. So health is
`cSoft / debt`, computed here from `statusOf`'s debt, each cToken's `getSnapshot(account)` (what the account
posts and owes, hence its exposure), `exchangeRate()` and the OracleManager's lower price; the requirements
are read at resolve time, their unit (BPS today, WAD in older versions) told apart by size. The same lower
price gives the liquidation price of a single-collateral position. Curvance's account events carry the account
in their data, not a topic, so logs are subscribed by emitter and decoded.

Exposure keys are `"<manager>:<asset>"` (lower-case addresses): the same asset in two managers is two keys.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import msgspec
import structlog
from eth_abi.exceptions import DecodingError
from eth_utils import to_checksum_address

from chainwatch import words
from chainwatch.abi import calldata, decode, event_topic
from chainwatch.chain import Log, LogFilter
from chainwatch.config import CurvanceConfig
from chainwatch.feeds import PriceSource, aggregator_call, emitter_of
from chainwatch.model import AssetLine, Discovered, PositionKey, Reading, Record, Side
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
from chainwatch.protocols.plans import PlanCache
from chainwatch.protocols.results import decoded, fixed, nonzero_address, token_symbol
from chainwatch.reader import Reader
from chainwatch.rpc import Rpc

log = structlog.get_logger(__name__)

_WAD = 10**18
_MAX_ADAPTORS = 2  # Curvance's OracleManager prices an asset from at most two adaptors
# The hot reads' shapes: getSnapshot (AccountSnapshot), statusOf, getPrice (price, error code), exchangeRate.
_SNAPSHOT = words.layout("address", "address", "uint8", "bool", "uint256", "uint256")
_STATUS = words.layout("uint256", "uint256", "uint256")
_PRICE = words.layout("uint256", "uint256")
_RATE = words.layout("uint256")
_BAD_SOURCE = 2  # an OracleManager error code at which Curvance refuses to price (and to liquidate)
# A stored requirement is `unit + premium`, the premium at most 234% (Curvance's MAX_COLLATERAL_REQUIREMENT):
# so its size tells the unit; a value in neither range is a configuration this module does not understand.
_REQUIREMENT_UNITS = (10**4, 10**18)  # BPS, WAD
_MAX_REQUIREMENT = 3.34  # of the unit
_CTOKEN_CALLS = 3  # per token in the hot plan: getSnapshot, lower price, exchange rate

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
    # `collConfig`'s soft requirement and its unit: collateral counts at `unit / soft_requirement` of its value
    # toward the soft liquidation line; 0 when the token is not collateral (collRatio 0), as Curvance skips it.
    soft_requirement: int = 0
    requirement_unit: int = 10**4

    def soft_weight(self) -> float:
        return self.requirement_unit / self.soft_requirement if self.soft_requirement else 0.0


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
        # cToken (checksummed) -> why it was left out at the last resolve: its positions are not read.
        self.quarantined: dict[str, str] = {}
        self._plans: PlanCache[tuple[CurvanceMarket, ...], tuple[Call, ...]] = PlanCache()

    async def resolve(self, reader: Reader, block: int) -> None:
        markets, feeds, adaptors = {}, {}, set()
        self.quarantined = {}
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
        listed_tokens = [to_checksum_address(t) for t in decoded(["address[]"], listed, "queryTokensListed")[0]]
        oracle = await _oracle_manager(reader, block, manager, oracle_result)
        asset_calls = [Call(target=t, data=calldata("asset()"), gas=30_000) for t in listed_tokens]
        c_tokens, assets = [], []
        for c_token, result in zip(listed_tokens, await reader.read(asset_calls, block)):
            try:
                assets.append(nonzero_address(result, "cToken.asset").lower())
                c_tokens.append(c_token)
            except ReadError as error:
                self._quarantine(manager, c_token, str(error))
        stride = 3 + _MAX_ADAPTORS
        per_token = await reader.read([call for c_token, asset in zip(c_tokens, assets) for call in (
            Call(target=asset, data=calldata("symbol()"), gas=50_000),
            Call(target=manager, data=calldata("collConfig(address)", c_token), gas=30_000),
            Call(target=oracle, data=calldata("getPrice(address,bool,bool)", asset, True, True), gas=80_000),
            *(Call(target=oracle, data=calldata("assetPriceFeeds(address,uint256)", asset, i), gas=30_000)
              for i in range(_MAX_ADAPTORS)),
        )], block)  # fmt: skip
        tokens, adaptor_of = [], []
        for i, (c_token, asset) in enumerate(zip(c_tokens, assets)):
            symbol_result, config_result, price_result, *feed_results = per_token[i * stride : (i + 1) * stride]
            try:
                soft_requirement, unit = _soft_requirement(config_result)
                if not price_result.success:
                    raise ReadError("OracleManager.getPrice reverted")
            except ReadError as error:
                self._quarantine(manager, c_token, str(error))
                continue
            tokens.append(ListedToken(c_token=c_token, asset=asset, symbol=token_symbol(symbol_result, asset),
                                      soft_requirement=soft_requirement, requirement_unit=unit))  # fmt: skip
            # The getter of a shorter array reverts: an asset's adaptors are the entries that exist.
            adaptor_of += [(asset, nonzero_address(r, "OracleManager.assetPriceFeeds")) for r in feed_results if r.success]
            if not any(r.success for r in feed_results):
                log.warning("curvance.feed_unknown", protocol=self.name, asset=asset, adaptor=None)
        market = CurvanceMarket(manager=manager, oracle_manager=oracle, tokens=tuple(tokens))
        return market, await self._feed_sources(reader, block, adaptor_of), {a.lower() for _, a in adaptor_of}

    def _quarantine(self, manager: str, c_token: str, reason: str) -> None:
        """Leaves one token out (its config or price cannot be read) so the rest of its market is still watched.
        A collateral left out only lowers the health read for the accounts posting it: alerts come early, not late.
        """
        self.quarantined[c_token] = reason
        log.error("curvance.token_quarantined", protocol=self.name, manager=manager, c_token=c_token, reason=reason)

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

    discovery_scope = None  # discovery reads no history

    async def discover(self, rpc: Rpc, reader: Reader, accounts: Sequence[str], block: int, *,
                       after: int | None = None) -> tuple[Discovered, ...]:  # fmt: skip
        """Nothing to find: every configured manager's cTokens are read for every account."""
        return ()

    def restore(self, found: Sequence[Discovered]) -> None:
        """Nothing is ever stored (see `discover`)."""

    async def resolve_found(self, reader: Reader, block: int) -> None:
        """Never asked: no event of this protocol names a market it has not resolved."""

    def log_filter(self) -> LogFilter:
        return LogFilter(
            addresses=(*self.markets, *self._key_of_token, *sorted(self.adaptors)),
            topic0s=(*_CTOKEN_EVENTS, *_MANAGER_EVENTS, *_ADAPTOR_EVENTS),
        )

    def price_feeds(self) -> dict[str, frozenset[str]]:
        return dict(self.feeds)

    def direct_prices(self) -> dict[PriceSource, frozenset[str]]:
        return {}  # its oracles scale or combine feeds: a price log is never screened, always read

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
        if log.topic0 == _POSITION_UPDATED:
            try:
                _, account, _ = decode(["address", "address", "bool"], log.data)
            except DecodingError:
                return MarketsTouched(keys=frozenset(market.key(token.asset) for token in market.tokens))
            return AccountsTouched(accounts=frozenset({to_checksum_address(account)}))
        if log.topic0 in (_TOKEN_LISTED, _TOKEN_CONFIG_UPDATED):
            # A new token, or new requirements (read at resolve time, they change only with this event): resolve
            # again, which also re-reads every account.
            return SourcesChanged()
        return None

    def plan(self, account: str, *, detailed: bool = False) -> ReadPlan:
        markets = tuple(self.markets.values())
        if detailed:
            calls = tuple(c for market in markets for c in (*_market_calls(account, market), *_detail_calls(market)))
        else:
            calls = self._plans.get(account, markets, _hot_calls)
        return ReadPlan(calls=calls,
                        decode=lambda results, block: self._decode(account, markets, results, block, detailed))  # fmt: skip

    def _decode(self, account: str, markets: tuple[CurvanceMarket, ...], results: Sequence[CallResult],
                block: int, detailed: bool) -> AccountReading:  # fmt: skip
        sizes = [(1 + _CTOKEN_CALLS * len(m.tokens), len(m.tokens) if detailed else 0) for m in markets]
        if len(results) != sum(base + extra for base, extra in sizes):
            raise ReadError(f"{len(results)} results do not fit the planned reads of {account}")
        readings, exposure, offset = [], set(), 0
        for market, (size, extra) in zip(markets, sizes):
            mine = results[offset : offset + size]
            positions = _positions(market, mine)
            reading = _market_reading(self.name, account, market, mine[0], positions, block)
            if detailed:
                higher_prices = results[offset + size : offset + size + extra]
                reading = msgspec.structs.replace(reading, assets=_lines(market, positions, higher_prices))
            offset += size + extra
            readings.append(reading)
            exposure |= {market.key(p.token.asset) for p in positions}
        return AccountReading(readings=tuple(readings), exposure=frozenset(exposure))


class TokenPosition(NamedTuple):
    """What an account posts and owes in one cToken (raw units), and the price and rate collateral is valued at."""

    token: ListedToken
    decimals: int
    posted: int  # shares
    owed: int  # underlying, interest included
    lower_price: CallResult  # OracleManager.getPrice(asset, inUSD, getLower=true)
    exchange_rate: int  # WAD per share, as `exchangeRate()` returns it

    def collateral_value(self) -> int:
        """The posted shares' USD value (WAD) at the lower price, as Curvance values collateral; the price must be
        usable (an error code below BAD_SOURCE), else health cannot be told."""
        if not self.posted:
            return 0
        price, error_code = fixed(_PRICE, self.lower_price, "OracleManager.getPrice")
        if error_code >= _BAD_SOURCE:
            raise ReadError(f"OracleManager cannot price {self.token.symbol} (error code {error_code})")
        return self.posted * price * self.exchange_rate // _WAD // 10**self.decimals


def _positions(market: CurvanceMarket, results: Sequence[CallResult]) -> list[TokenPosition]:
    """The tokens the account posts or owes in, from one market's hot-plan results (statusOf first)."""
    positions = []
    for i, token in enumerate(market.tokens):
        snapshot, lower_price, rate = results[1 + _CTOKEN_CALLS * i : 1 + _CTOKEN_CALLS * (i + 1)]
        _, _, decimals, _, posted, owed = fixed(_SNAPSHOT, snapshot, "cToken.getSnapshot")
        if posted or owed:
            exchange_rate = fixed(_RATE, rate, "cToken.exchangeRate")[0] if posted else _WAD
            positions.append(TokenPosition(token, decimals, posted, owed, lower_price, exchange_rate))
    return positions


def soft_line(positions: Sequence[TokenPosition]) -> int:
    """cSoft, in USD (WAD): each collateral's value times `unit / collReqSoft`, as Curvance sums it."""
    return sum(
        p.collateral_value() * p.token.requirement_unit // p.token.soft_requirement
        for p in positions
        if p.posted and p.token.soft_requirement
    )


def _market_reading(
    protocol: str, account: str, market: CurvanceMarket, status: CallResult, positions: Sequence[TokenPosition],
    block: int,
) -> Reading:  # fmt: skip
    collateral, _, debt = fixed(_STATUS, status, "MarketManager.statusOf")  # maxDebt: the borrow limit
    health = math.inf if debt == 0 else soft_line(positions) / debt
    collaterals = [p for p in positions if p.posted]
    liquidation_price, liquidation_asset = None, ""
    # One collateral, not also borrowed: its price alone moves health, by the same factor (health is linear in it).
    # At health 0 (a collateral that counts for nothing) no price restores it.
    if 0 < health < math.inf and len(collaterals) == 1 and not collaterals[0].owed:
        price = _usable_price(collaterals[0].lower_price)
        if price is not None:
            liquidation_price, liquidation_asset = price / _WAD / health, collaterals[0].token.symbol
    return Reading(
        key=PositionKey(protocol=protocol, account=account, market=market.manager),
        block=block,
        health_factor=health,
        collateral=collateral / _WAD,
        debt=debt / _WAD,
        liquidation_price=liquidation_price,
        liquidation_asset=liquidation_asset,
    )


def _hot_calls(account: str, markets: tuple[CurvanceMarket, ...]) -> tuple[Call, ...]:
    return tuple(call for market in markets for call in _market_calls(account, market))


def _market_calls(account: str, market: CurvanceMarket) -> list[Call]:
    # statusOf accrues interest (nonpayable, ~115k measured for 3 tokens before accrual): its debt is current.
    calls = [Call(target=market.manager, data=calldata("statusOf(address)", account),
                  gas=60_000 + 50_000 * len(market.tokens))]  # fmt: skip
    for token in market.tokens:
        calls += [Call(target=token.c_token, data=calldata("getSnapshot(address)", account), gas=40_000),
                  *_token_calls(market.oracle_manager, token.asset, token.c_token)]  # fmt: skip
    return calls


@lru_cache(maxsize=4096)
def _token_calls(oracle_manager: str, asset: str, c_token: str) -> tuple[Call, Call]:
    """The lower price and the exchange rate: the same for every account of the market."""
    return (Call(target=oracle_manager, data=calldata("getPrice(address,bool,bool)", asset, True, True), gas=80_000),
            Call(target=c_token, data=calldata("exchangeRate()"), gas=40_000))  # fmt: skip


def _detail_calls(market: CurvanceMarket) -> list[Call]:
    """Per token the higher price the manager values debt at."""
    return [Call(target=market.oracle_manager, data=calldata("getPrice(address,bool,bool)", token.asset, True, False),
                 gas=80_000) for token in market.tokens]  # fmt: skip


def _lines(
    market: CurvanceMarket, positions: Sequence[TokenPosition], higher_prices: Sequence[CallResult]
) -> tuple[AssetLine, ...]:
    """Lines valued as the soft line values them: collateral at the lower price weighed by `unit / collReqSoft`,
    debt at the higher price (one detail call per market token), so the lines imply the reading's health."""
    higher_of = {token.c_token: result for token, result in zip(market.tokens, higher_prices)}
    lines = []
    for position in positions:
        token, unit = position.token, 10**position.decimals
        if position.posted:
            lines.append(AssetLine(symbol=token.symbol, side=Side.COLLATERAL, amount=position.posted / unit,
                                   value=position.collateral_value() / _WAD, weight=token.soft_weight()))  # fmt: skip
        if position.owed:
            (higher, _) = decoded(["uint256", "uint256"], higher_of[token.c_token], "OracleManager.getPrice")
            lines.append(AssetLine(symbol=token.symbol, side=Side.DEBT, amount=position.owed / unit,
                                   value=position.owed * higher / unit / _WAD))  # fmt: skip
    return tuple(lines)


def _usable_price(result: CallResult) -> int | None:
    """The OracleManager's price when it reports no error at all; the liquidation price is left out otherwise."""
    if not result.success:
        return None
    try:
        price, error_code = words.decode(_PRICE, result.data)
    except ValueError:
        return None
    return price if error_code == 0 and price > 0 else None


def _soft_requirement(result: CallResult) -> tuple[int, int]:
    """`collConfig(cToken)`'s soft requirement and its unit; (0, BPS) for a token that is not collateral."""
    coll_ratio, soft, _ = decoded(["uint256"] * 3, result, "MarketManager.collConfig")
    if coll_ratio == 0:
        return 0, _REQUIREMENT_UNITS[0]
    for unit in _REQUIREMENT_UNITS:
        if unit <= soft <= unit * _MAX_REQUIREMENT:
            return soft, unit
    raise ReadError(f"MarketManager.collConfig's soft requirement {soft} is in no known unit")


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
