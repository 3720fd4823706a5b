"""Euler v2 (EVK vaults over the Ethereum Vault Connector): health per borrowing sub-account and controller vault.

Health is the controller vault's own `accountLiquidityFull(account, true)`: each collateral's value already weighted
by its liquidation LTV, and the debt with interest to the block, both in the vault's unit of account. A watched
address stands for the 256 EVC sub-accounts sharing its first 19 bytes; those whose controller is a configured vault
are found at start from the EVC's past `ControllerStatus` events (then one `getControllers` per sub-account that
ever had such a controller, not 256 per owner) and from its live events afterwards, and are reported under the watched address with the market "<vault>#<sub-account id>".

Exposure keys are "<controller vault>:<priced vault>" (lower-case): the controller prices each collateral vault (and,
keyed by itself, its own debt) through its oracle router, down to the Chainlink feed of the underlying asset.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import NamedTuple

import msgspec
import structlog
from eth_utils import to_checksum_address

from chainwatch import words
from chainwatch.abi import calldata, event_topic
from chainwatch.chain import Log, LogFilter, topic_address
from chainwatch.config import EulerV2Config
from chainwatch.feeds import ROUTE_EVENTS, PriceSource, follow_feeds, reroutes
from chainwatch.model import AssetLine, Discovered, PositionKey, Reading, Side
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
from chainwatch.protocols.log_scan import first_block, scan_logs
from chainwatch.protocols.plans import PlanCache
from chainwatch.protocols.results import decoded, fixed, nonzero_address, token_symbol
from chainwatch.reader import Reader
from chainwatch.rpc import Rpc

log = structlog.get_logger(__name__)

_ISO_4217 = {840: "USD", 978: "EUR", 826: "GBP", 392: "JPY", 756: "CHF"}  # Euler's fiat units: address(code)
_NON_TOKEN_DECIMALS = 18  # what Euler's adapters assume for an asset without `decimals()` (USD's address 840)

CONTROLLER_STATUS = event_topic("ControllerStatus(address,address,bool)")
_EVC_EVENTS = (CONTROLLER_STATUS, event_topic("CollateralStatus(address,address,bool)"),
               event_topic("AccountStatusCheck(address,address)"))  # fmt: skip  (topic1: the account)
# Vault events -> the topics naming accounts whose position the event changes.
_VAULT_EVENTS = {
    event_topic("Transfer(address,address,uint256)"): (1, 2),
    event_topic("Deposit(address,address,uint256,uint256)"): (2,),
    event_topic("Withdraw(address,address,address,uint256,uint256)"): (3,),
    event_topic("Borrow(address,uint256)"): (1,),
    event_topic("Repay(address,uint256)"): (1,),
    event_topic("InterestAccrued(address,uint256)"): (1,),
    event_topic("PullDebt(address,address,uint256)"): (1, 2),
    event_topic("Liquidate(address,address,address,uint256,uint256)"): (1, 2),
}
# Rates, totals and the interest accumulator of one vault changed: every position on it drifts a little.
VAULT_STATUS = event_topic("VaultStatus(uint256,uint256,uint256,uint256,uint256,uint256,uint256)")
DEBT_SOCIALIZED = event_topic("DebtSocialized(address,uint256)")  # the vault's share price falls for every holder
GOV_SET_LTV = event_topic("GovSetLTV(address,uint16,uint16,uint16,uint48,uint32)")
_ROUTER_EVENTS = (event_topic("ConfigSet(address,address,address)"), event_topic("ResolvedVaultSet(address,address)"),
                  event_topic("FallbackOracleSet(address)"))  # fmt: skip
_VAULT_GETTERS = ("oracle()", "unitOfAccount()", "asset()", "LTVList()")
# The hot reads' shapes: getControllers, accountLiquidityFull (collaterals, their weighted values, liability), getQuote.
_CONTROLLERS = words.layout("address[]")
_LIQUIDITY = words.layout("address[]", "uint256[]", "uint256")
_QUOTE = words.layout("uint256")


class Priced(NamedTuple):
    """What a collateral vault (or a controller's debt) is priced as: the token its router ends at, and its feed."""

    asset: str  # lower-case
    symbol: str
    unit: int  # 10 ** decimals of `asset`
    sources: frozenset[PriceSource]  # what moves its price; empty when the adapter cannot be followed


class Vault(NamedTuple):
    """A configured controller vault, resolved on chain."""

    address: str  # checksummed
    asset: str  # lower-case
    oracle: str  # checksummed router
    unit_of_account: str  # checksummed
    unit: int  # 10 ** decimals of the unit of account
    currency: str
    collaterals: tuple[str, ...]  # lower-case, from LTVList()
    priced: dict[str, Priced]  # collateral vault, or the vault itself for its debt (lower-case) -> its pricing


class _Group(NamedTuple):
    """One (sub-account, controller) pair of a plan: getControllers, accountLiquidityFull, then one quote each."""

    sub: str  # checksummed
    vault: str  # lower-case
    quoted: tuple[str, ...]  # collateral vaults whose underlying's price is asked, for the liquidation price


class _Planned(NamedTuple):
    """What one group's hot calls are made from: the pair, its controller's address and router, and the quotes
    (unit, base, quote) the router is asked for."""

    group: _Group
    vault: str
    oracle: str
    quotes: tuple[tuple[int, str, str], ...]


class EulerV2:
    """The EVC and the controller vaults of one Euler v2 deployment."""

    def __init__(self, config: EulerV2Config, *, log_range: int = 100) -> None:
        self.name = config.name
        self.evc = to_checksum_address(config.evc)
        self._configured = tuple(to_checksum_address(vault) for vault in config.vaults)
        self.vaults: dict[str, Vault] = {}  # lower-case address -> resolved vault
        self._emitters: frozenset[str] = frozenset()  # the vaults and their collateral vaults (lower-case)
        self._followed_proxies: frozenset[str] = frozenset()  # Chainlink proxies behind the routers' adapters
        self._watched: dict[str, set[str]] = {}  # 19-byte prefix -> watched addresses (checksummed)
        self._positions: dict[str, dict[str, set[str]]] = {}  # watched -> sub-account -> controller vaults
        self._plans: PlanCache[tuple[str, tuple[_Planned, ...]], tuple[Call, ...]] = PlanCache()
        # 19-byte prefix -> sub-accounts that ever had a configured controller (from past events or the store)
        self._candidates: dict[str, set[str]] = {}
        self._from_block = config.discovery_from_block
        self._log_range = log_range  # eth_getLogs range per request ([chain] max_log_range)
        # A stored scan covers the EVC's events naming these controllers: another vault list needs a new scan.
        self.discovery_scope: str | None = ",".join([self.evc.lower(), *sorted(v.lower() for v in self._configured)])

    async def resolve(self, reader: Reader, block: int) -> None:
        basics = await reader.read([Call(target=vault, data=calldata(getter), gas=200_000)
                                    for vault in self._configured for getter in _VAULT_GETTERS], block)  # fmt: skip
        found = []
        for i, vault in enumerate(self._configured):
            results = basics[len(_VAULT_GETTERS) * i :]
            oracle, uoa, asset = (nonzero_address(results[k], f"{_VAULT_GETTERS[k]} of vault {vault}") for k in range(3))
            (collaterals,) = decoded(["address[]"], results[3], f"LTVList() of vault {vault}")
            found.append((vault, oracle, uoa, asset.lower(), tuple(c.lower() for c in collaterals)))
        units = await reader.read([Call(target=uoa, data=calldata(getter), gas=50_000)
                                   for _, _, uoa, _, _ in found for getter in ("decimals()", "symbol()")],
                                  block)  # fmt: skip
        # Each vault prices its debt asset (keyed by the vault itself) and each collateral vault through its router.
        wanted = [(v, oracle, uoa, key, base) for v, oracle, uoa, asset, cs in found for key, base in
                  ((v.lower(), asset), *((c, c) for c in cs))]  # fmt: skip
        priced = await self._pricing(reader, block, wanted)
        self.vaults = {
            vault.lower(): Vault(address=vault, asset=asset, oracle=oracle, unit_of_account=uoa,
                                 unit=10 ** _decimals(units[2 * i]), currency=_currency(uoa, units[2 * i + 1]),
                                 collaterals=collaterals, priced=priced.get(vault, {}))
            for i, (vault, oracle, uoa, asset, collaterals) in enumerate(found)
        }  # fmt: skip
        self._emitters = frozenset(a for v in self.vaults.values() for a in (v.address.lower(), *v.collaterals))

    async def _pricing(self, reader: Reader, block: int, wanted: list[tuple[str, ...]]) -> dict[str, dict[str, Priced]]:
        """vault -> key -> Priced: router.resolveOracle -> the adapter, followed (feeds.py) to its price sources."""
        resolve = "resolveOracle(uint256,address,address)"
        resolved = await reader.read([Call(target=oracle, data=calldata(resolve, 1, base, uoa), gas=200_000)
                                      for _, oracle, uoa, _, base in wanted], block)  # fmt: skip
        routes = []  # (vault, key, the token the router prices, adapter)
        for (vault, _, _, key, base), result in zip(wanted, resolved):
            try:
                _, end, _, adapter = decoded(["uint256", "address", "address", "address"], result, "resolveOracle")
                routes.append((vault, key, end.lower(), adapter))
            except ReadError:  # the vault cannot value it either: an account holding it fails its own read, loudly
                log.warning("euler.unpriced", protocol=self.name, vault=vault, asset=base)
        details = await reader.read([call for _, _, base, _ in routes for call in (
            Call(target=base, data=calldata("symbol()"), gas=50_000),
            Call(target=base, data=calldata("decimals()"), gas=30_000))], block)  # fmt: skip
        # An adapter of another kind (RedStone Core is pull-based) is quarantined there: only the refresh sees it.
        adapters = {adapter.lower() for _, _, _, adapter in routes if int(adapter, 16) != 0}
        followed = await follow_feeds(reader, adapters, block, protocol=self.name)
        self._followed_proxies = frozenset(proxy for outcome in followed.values() for proxy in outcome.proxies)
        priced: dict[str, dict[str, Priced]] = {}
        for (vault, key, base, adapter), symbol, decimals in zip(routes, details[0::2], details[1::2]):
            outcome = followed.get(adapter.lower())
            priced.setdefault(vault, {})[key] = Priced(asset=base, symbol=token_symbol(symbol, base), unit=10 ** _decimals(
                decimals), sources=outcome.sources if outcome else frozenset())  # fmt: skip
        return priced

    async def discover(self, rpc: Rpc, reader: Reader, accounts: Sequence[str], block: int, *,
                       after: int | None = None) -> list[Discovered]:  # fmt: skip
        """Finds the borrowing sub-accounts of each watched address from the EVC's past `ControllerStatus` events
        naming a configured vault (only those above `after` when an earlier scan covered the rest), then asks
        `getControllers` of those sub-accounts alone; returns each (sub-account, controller) enabled, at its block."""
        for account in accounts:
            self._watched.setdefault(_prefix(account), set()).add(to_checksum_address(account))
        prefixes = {_prefix(account) for account in accounts}
        if not prefixes:
            return []
        controllers: list[object] = [_address_topic(vault) for vault in self._configured]
        found: dict[tuple[str, str], int] = {}
        first = first_block(self._from_block, after)
        scan = scan_logs(rpc, self.evc, [[CONTROLLER_STATUS, None, controllers]], first, block, self._log_range,
                         protocol=self.name)  # fmt: skip
        async for _, logs in scan:
            for event in logs:
                sub = to_checksum_address(topic_address(event.topics[1]))
                # Every controller a sub-account ever had began with an enabling event; a later disabling one
                # is settled by getControllers below.
                if _prefix(sub) in prefixes and len(event.topics) > 2 and event.data[-1:] == b"\x01":
                    self._candidates.setdefault(_prefix(sub), set()).add(sub)
                    found.setdefault((sub, to_checksum_address(topic_address(event.topics[2]))), event.block_number)
        candidates = sorted(sub for prefix in prefixes for sub in self._candidates.get(prefix, ()))
        calls = [Call(target=self.evc, data=calldata("getControllers(address)", c), gas=30_000) for c in candidates]
        for candidate, result in zip(candidates, await reader.read(calls, block) if calls else []):
            for controller in decoded(["address[]"], result, "EVC.getControllers")[0]:
                self._learn(candidate, controller)
        kept = []
        for (sub, vault), at in sorted(found.items()):
            owner = self._owner_of(sub)
            if owner is not None:
                kept.append(Discovered(account=owner, market=_market(vault, owner, sub), block=at))
        return kept

    def restore(self, found: Sequence[Discovered]) -> None:
        """Sub-accounts found before are asked again at the next `discover` (their controller may have changed)."""
        for item in found:
            _, _, sub_id = item.market.partition("#")
            sub = to_checksum_address(f"0x{int(item.account, 16) ^ int(sub_id or 0):040x}")
            self._candidates.setdefault(_prefix(sub), set()).add(sub)

    async def resolve_found(self, reader: Reader, block: int) -> None:
        """Never asked: a controller enabled after start is learned from its own event (see `touched_by`)."""

    def log_filter(self) -> LogFilter:
        routers = {vault.oracle.lower() for vault in self.vaults.values()}
        return LogFilter(
            addresses=(self.evc.lower(), *sorted(self._emitters | routers | self._followed_proxies)),
            topic0s=(*_EVC_EVENTS, *_VAULT_EVENTS, VAULT_STATUS, DEBT_SOCIALIZED, GOV_SET_LTV, *_ROUTER_EVENTS,
                     *ROUTE_EVENTS),
        )

    def price_feeds(self) -> dict[PriceSource, frozenset[str]]:
        feeds: dict[PriceSource, set[str]] = {}
        for vault in self.vaults.values():
            for key, priced in vault.priced.items():
                for source in priced.sources:
                    feeds.setdefault(source, set()).add(exposure_key(vault.address, key))
        return {feed: frozenset(keys) for feed, keys in feeds.items()}

    def direct_prices(self) -> dict[PriceSource, frozenset[str]]:
        return {}  # its oracles scale or combine feeds: a price log is never screened, always read

    def touched_by(self, log: Log) -> Touch | None:
        if log.topic0 == VAULT_STATUS and log.address in self._emitters:
            keys = frozenset(
                exposure_key(vault.address, key)
                for vault in self.vaults.values()
                for key in vault.priced
                if log.address in (vault.address.lower(), key.lower())
            )
            return MarketsTouched(keys=keys, drift=True) if keys else None
        if len(log.topics) < 2:
            return None
        if log.address == self.evc.lower() and log.topic0 in _EVC_EVENTS:
            account = topic_address(log.topics[1])
            if log.topic0 == CONTROLLER_STATUS and len(log.topics) > 2 and log.data[-1:] == b"\x01":  # enabled
                self._learn(account, topic_address(log.topics[2]))
            return self._touching([account])
        if log.address in self._emitters:
            if log.topic0 == GOV_SET_LTV and log.address in self.vaults:
                return SourcesChanged()  # new LTVs at once, and perhaps a new collateral to price
            if log.topic0 == DEBT_SOCIALIZED:
                holders = [v.address for v in self.vaults.values() if log.address in v.collaterals]
                keys = frozenset(exposure_key(holder, log.address) for holder in holders)
                return MarketsTouched(keys=keys) if keys else None
            positions = _VAULT_EVENTS.get(log.topic0 or "", ())
            return self._touching(topic_address(log.topics[i]) for i in positions if i < len(log.topics))
        if log.topic0 in _ROUTER_EVENTS and log.address in {vault.oracle.lower() for vault in self.vaults.values()}:
            return SourcesChanged()
        if reroutes(log, self._followed_proxies):
            return SourcesChanged()
        return None

    def plan(self, account: str, *, detailed: bool = False) -> ReadPlan:
        groups = tuple(
            _Group(sub=sub, vault=v, quoted=tuple(c for c in self.vaults[v].collaterals if c in self.vaults[v].priced))
            for sub, vaults in sorted(self._positions.get(account, {}).items()) for v in sorted(vaults))  # fmt: skip
        planned = tuple(self._planned(group) for group in groups)
        if detailed:
            calls = tuple(call for entry in planned for call in (
                *_group_calls(self.evc, entry), *_detail_calls(self.vaults[entry.group.vault], entry.group)))  # fmt: skip
        else:
            calls = self._plans.get(account, (self.evc, planned), _hot_calls)
        return ReadPlan(calls=calls,
                        decode=lambda results, block: self._decode(account, groups, results, block, detailed))  # fmt: skip

    def _planned(self, group: _Group) -> _Planned:
        vault = self.vaults[group.vault]
        quotes = tuple((vault.priced[c].unit, vault.priced[c].asset, vault.unit_of_account) for c in group.quoted)
        return _Planned(group=group, vault=vault.address, oracle=vault.oracle, quotes=quotes)

    def _decode(self, account: str, groups: tuple[_Group, ...], results: Sequence[CallResult], block: int,
                detailed: bool) -> AccountReading:  # fmt: skip
        if len(results) != sum(_size(group, detailed) for group in groups):
            raise ReadError(f"{len(results)} results do not fit the planned reads of {account}")
        readings: list[Reading] = []
        exposure: set[str] = set()
        closed, learned, offset = [], [], 0
        for group in groups:
            mine, offset = results[offset : offset + _size(group, detailed)], offset + _size(group, detailed)
            (controllers,) = fixed(_CONTROLLERS, mine[0], "EVC.getControllers")
            if len(controllers) > 1:
                raise ReadError(f"sub-account {group.sub} has {len(controllers)} controllers")
            vault = self.vaults[group.vault]
            key = PositionKey(protocol=self.name, account=account, market=_market(vault.address, account, group.sub))
            actual = controllers[0].lower() if controllers else None
            if actual == group.vault:
                reading, collaterals = _reading(key, vault, group, mine, block)
                if detailed:
                    reading = msgspec.structs.replace(reading, assets=_lines(vault, group, mine))
                readings.append(reading)
                exposure |= {exposure_key(vault.address, k) for k in (group.vault, *collaterals)}
                continue
            # The vault released the sub-account (it owes nothing there now): say so once, then forget the pair.
            readings.append(Reading(key=key, block=block, health_factor=math.inf, collateral=0.0, debt=0.0,
                                    currency=vault.currency))  # fmt: skip
            closed.append(group)
            if actual in self.vaults and actual not in self._positions[account][group.sub]:
                learned.append((group.sub, actual))
        for sub, controller in learned:  # a controller enabled without its event reaching us: read it next
            self._learn(sub, controller)
        for group in closed:
            self._positions[account][group.sub].discard(group.vault)
        return AccountReading(readings=tuple(readings), exposure=frozenset(exposure), read_again=bool(learned))

    def _owner_of(self, address: str) -> str | None:
        """The watched address reporting `address`: itself if watched, else the watched one of its prefix with the
        lowest last byte, so that no sub-account is reported twice."""
        watched = self._watched.get(_prefix(address))
        if not watched:
            return None
        exact = to_checksum_address(address)
        return exact if exact in watched else min(watched, key=lambda w: w[-2:].lower())

    def _learn(self, sub: str, controller: str) -> None:
        owner = self._owner_of(sub)
        if owner is not None and controller.lower() in self.vaults:
            self._positions.setdefault(owner, {}).setdefault(to_checksum_address(sub), set()).add(controller.lower())

    def _touching(self, accounts: Iterable[str]) -> AccountsTouched | None:
        owners = {owner for owner in map(self._owner_of, accounts) if owner is not None}
        return AccountsTouched(accounts=frozenset(owners)) if owners else None


def _reading(
    key: PositionKey, vault: Vault, group: _Group, results: Sequence[CallResult], block: int
) -> tuple[Reading, tuple[str, ...]]:
    """One position from accountLiquidityFull (and the quotes after it); also the sub-account's collaterals."""
    what = f"accountLiquidityFull of {group.sub} on {vault.address}"
    collaterals, values, liability = fixed(_LIQUIDITY, results[1], what)
    collaterals = tuple(c.lower() for c in collaterals)
    health_factor = math.inf if liability == 0 else sum(values) / liability
    if liability and sum(values) <= liability:
        # EVK liquidates at collateral <= liability; a float ratio can round a few-wei shortfall (or equality)
        # up to exactly 1.0, which would read as not liquidatable.
        health_factor = min(health_factor, math.nextafter(1.0, 0.0))
    price, asset = None, ""
    valued = [c for c, value in zip(collaterals, values) if value > 0]
    if len(valued) == 1 and valued[0] in group.quoted and 0 < health_factor < math.inf:
        priced = vault.priced[valued[0]]
        if priced.asset != vault.asset:  # one collateral against another asset: health scales with its price
            (quote,) = fixed(_QUOTE, results[2 + group.quoted.index(valued[0])], "router getQuote")
            price, asset = quote / vault.unit / health_factor, priced.symbol
    reading = Reading(key=key, block=block, health_factor=health_factor, collateral=sum(values) / vault.unit,
                      debt=liability / vault.unit, currency=vault.currency, liquidation_price=price,
                      liquidation_asset=asset)  # fmt: skip
    return reading, collaterals


def _hot_calls(account: str, basis: tuple[str, tuple[_Planned, ...]]) -> tuple[Call, ...]:
    evc, planned = basis
    return tuple(call for entry in planned for call in _group_calls(evc, entry))


def _group_calls(evc: str, entry: _Planned) -> tuple[Call, ...]:
    sub = entry.group.sub
    return (
        Call(target=evc, data=calldata("getControllers(address)", sub), gas=30_000),
        # ~0.1M measured; real vaults with many collaterals cost more.
        Call(target=entry.vault, data=calldata("accountLiquidityFull(address,bool)", sub, True), gas=400_000),
        *(_quote_call(entry.oracle, quote) for quote in entry.quotes),
    )


@lru_cache(maxsize=4096)
def _quote_call(oracle: str, quote: tuple[int, str, str]) -> Call:
    """The same for every account of the pass: one object, and the reader makes each identical call once."""
    return Call(target=oracle, data=calldata("getQuote(uint256,address,address)", *quote), gas=300_000)


def _size(group: _Group, detailed: bool) -> int:
    """Results per group: getControllers, accountLiquidityFull, the quotes; detailed, debtOf and three per collateral."""
    return 2 + len(group.quoted) + (1 + 3 * len(group.quoted) if detailed else 0)


def _detail_calls(vault: Vault, group: _Group) -> list[Call]:
    """What splits accountLiquidityFull's weighted values into amounts and weights, and names the debt."""
    calls = [Call(target=vault.address, data=calldata("debtOf(address)", group.sub), gas=30_000)]
    for c in group.quoted:
        calls += [Call(target=vault.address, data=calldata("LTVLiquidation(address)", c), gas=30_000),
                  Call(target=c, data=calldata("balanceOf(address)", group.sub), gas=30_000),
                  # Shares per whole token: EVK vault shares have their asset's decimals.
                  Call(target=c, data=calldata("convertToAssets(uint256)", vault.priced[c].unit), gas=60_000)]  # fmt: skip
    return calls


def _lines(vault: Vault, group: _Group, results: Sequence[CallResult]) -> tuple[AssetLine, ...]:
    """Per collateral: value is the vault's own weighted value over its liquidation LTV; debt at the vault's liability."""
    what = f"accountLiquidityFull of {group.sub} on {vault.address}"
    collaterals, values, liability = decoded(["address[]", "uint256[]", "uint256"], results[1], what)
    weighted = {c.lower(): value for c, value in zip(collaterals, values)}
    quotes, details = results[2 : 2 + len(group.quoted)], results[2 + len(group.quoted) :]
    lines = []
    for k, c in enumerate(group.quoted):
        ltv, shares, rate = (decoded(["uint256"], r, f"{name} of {c}")[0] for r, name in
                             zip(details[1 + 3 * k : 4 + 3 * k], ("LTVLiquidation", "balanceOf", "convertToAssets")))  # fmt: skip
        if c not in weighted or not shares:
            continue
        priced = vault.priced[c]
        amount = shares * rate / priced.unit / priced.unit
        if ltv:
            value = weighted[c] * 10_000 / ltv / vault.unit
        else:  # counts for nothing: valued at the router's quote only to show it
            value = amount * decoded(["uint256"], quotes[k], "router getQuote")[0] / vault.unit
        lines.append(AssetLine(symbol=priced.symbol, side=Side.COLLATERAL, amount=amount, value=value,
                               weight=ltv / 10_000))  # fmt: skip
    (debt,) = decoded(["uint256"], details[0], f"debtOf {group.sub}")
    if debt:
        own = vault.priced.get(vault.address.lower())
        symbol, unit = (own.symbol, own.unit) if own else (vault.currency, vault.unit)
        lines.append(AssetLine(symbol=symbol, side=Side.DEBT, amount=debt / unit, value=liability / vault.unit))
    return tuple(lines)


def exposure_key(controller: str, priced: str) -> str:
    """The exposure key of `priced` (a collateral vault, or the controller itself for its debt) under `controller`."""
    return f"{controller.lower()}:{priced.lower()}"


def _address_topic(address: str) -> str:
    return "0x" + "0" * 24 + address.lower().removeprefix("0x")


def _prefix(address: str) -> str:
    return address[:40].lower()  # "0x" and the 19 bytes an owner's 256 sub-accounts share


def _market(vault: str, owner: str, sub: str) -> str:
    sub_id = int(sub, 16) ^ int(owner, 16)
    return vault if sub_id == 0 else f"{vault}#{sub_id}"




def _decimals(result: CallResult) -> int:
    word = int.from_bytes(result.data, "big") if result.success and len(result.data) == 32 else 256
    return word if word < 256 else _NON_TOKEN_DECIMALS



def _currency(unit_of_account: str, symbol: CallResult) -> str:
    return _ISO_4217.get(int(unit_of_account, 16)) or token_symbol(symbol, unit_of_account)
