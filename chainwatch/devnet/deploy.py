"""Deploy the devnet onto a running Anvil: Multicall3 at its canonical address, a real Aave v3 market, and
Morpho Blue, Euler v2 and Curvance markets over the same tokens and price feeds.

The Aave market is the unmodified `@aave/core-v3` bytecode with three reserves (WETH, WBTC, USDC) priced by the
project's own settable Chainlink-style feeds; USDC's oracle source is a proxy in front of its feed, as on
mainnet, so the watcher has to follow `aggregator()` to see price events (`DevnetActions.reprice_through` puts any
reserve behind a new FeedProxy, or behind a ScaledFeed that transforms the answer). One price move hits every
protocol.
Four more Aave reserves (`price_sources`) are priced the other ways real oracles work: sWETH by a ratio
aggregator (exchange-rate feed x WETH feed), LINK and UNI through one RedStone multi-feed adapter, SOL through Pyth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, NamedTuple

import msgspec
from eth_typing import ChecksumAddress
from web3 import Web3

from chainwatch.devnet.artifacts import Artifact, link_bytecode
from chainwatch.devnet.common import (  # re-exported: tests, actions and the benchmark import them from here
    ACL_MANAGER, ADMIN_ACCOUNT_INDEX, ASSETS, ATOKEN, CONFIGURATOR, DATA_PROVIDER, ERC20, FEED_DECIMALS,
    LIQUIDITY_ACCOUNT_INDEX, MULTICALL3_ADDRESS, ORACLE, POOL, PROVIDER, RATE_STRATEGY, STABLE_DEBT, VARIABLE_DEBT,
    Address, aave_artifact,
)  # fmt: skip
from chainwatch.devnet.curvance import CurvanceDevnet, deploy_curvance
from chainwatch.devnet.euler import EulerV2Devnet, deploy_euler_v2
from chainwatch.devnet.morpho import MorphoBlueDevnet, deploy_morpho_blue
from chainwatch.devnet.solc import compile_own_contracts
from chainwatch.devnet.transactions import CALL_GAS, Rpc, TxPlan, execute

_RAY: Final = 10**27
_MAX_UINT256: Final = 2**256 - 1


class _Base(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class Reserve(_Base):
    asset: Address
    feed: Address  # the oracle's source for the asset (a FeedProxy for USDC)
    aggregator: Address  # the SettableFeed behind it, the contract that emits AnswerUpdated
    decimals: int


class AaveV3(_Base):
    pool_addresses_provider: Address
    pool: Address
    oracle: Address
    data_provider: Address
    pool_configurator: Address
    reserves: dict[str, Reserve]


class PriceSourcesDevnet(_Base):
    """Aave reserves priced by oracles other than a plain Chainlink feed, and the contracts that move them.

    sWETH: a RatioOracleAggregator of `ratio_feed` (sWETH/WETH, a SettableFeed) times WETH's feed. LINK and UNI:
    RedStone per-feed contracts over one shared `redstone_adapter` (ids in `redstone_ids`). SOL: a PythAggregator
    over `pyth` (ids in `pyth_ids`).
    """

    reserves: dict[str, Reserve]  # `feed` and `aggregator` are both the oracle source here
    ratio_feed: Address
    redstone_adapter: Address
    redstone_ids: dict[str, str]  # symbol -> dataFeedId, 0x hex
    pyth: Address
    pyth_ids: dict[str, str]  # symbol -> price id, 0x hex


class Devnet(_Base):
    chain_id: int
    multicall3: Address
    aave_v3: AaveV3
    price_sources: PriceSourcesDevnet | None = None
    morpho_blue: MorphoBlueDevnet | None = None
    euler_v2: EulerV2Devnet | None = None
    curvance: CurvanceDevnet | None = None

    def __post_init__(self) -> None:
        # Runs on decode too: a hand-edited file with a mistyped address fails to load rather than misleads.
        aave = self.aave_v3
        addresses = [self.multicall3, aave.pool_addresses_provider, aave.pool, aave.oracle, aave.data_provider,
                     aave.pool_configurator]  # fmt: skip
        addresses += [a for r in aave.reserves.values() for a in (r.asset, r.feed, r.aggregator)]
        for address in addresses:
            if not Web3.is_checksum_address(address):
                raise ValueError(f"address {address} is not checksummed")


def devnet_to_json(devnet: Devnet) -> bytes:
    """The devnet file's content: indented JSON, one object, trailing newline."""
    return msgspec.json.format(msgspec.json.encode(devnet), indent=2) + b"\n"


def load_devnet(path: Path) -> Devnet:
    """Read a devnet file; raises msgspec.ValidationError naming the field that is missing or wrong."""
    return msgspec.json.decode(path.read_bytes(), type=Devnet)


# Rates in ray. The base rate is non-zero because the devnet's deep liquidity keeps utilisation near zero,
# and interest must still accrue so health drifts between events as it does on a live market.
_RATES: Final = (
    _RAY * 80 // 100,  # optimal usage ratio
    _RAY * 2 // 100,  # base variable borrow rate
    _RAY * 4 // 100,  # variable slope 1
    _RAY * 75 // 100,  # variable slope 2
    _RAY * 1 // 100,  # stable slope 1
    _RAY * 75 // 100,  # stable slope 2
    _RAY * 2 // 100,  # base stable rate offset
    _RAY * 5 // 100,  # stable rate excess offset
    _RAY * 20 // 100,  # optimal stable to total debt ratio
)
_RESERVE_FACTOR_BPS: Final = 1000
_INIT_RESERVES_GAS: Final = 10_000_000  # 6.9M measured for three reserves
_ZERO: Final = "0x0000000000000000000000000000000000000000"


class _Core(NamedTuple):
    provider: ChecksumAddress
    oracle: ChecksumAddress
    data_provider: ChecksumAddress
    rate_strategy: ChecksumAddress
    tokens: dict[str, ChecksumAddress]
    feeds: dict[str, ChecksumAddress]  # the oracle sources
    aggregators: dict[str, ChecksumAddress]


class _Sender:
    """One account's part of a plan, phrased as deploys of and calls to artifacts."""

    def __init__(self, plan: TxPlan, account: ChecksumAddress) -> None:
        self.plan, self.account = plan, account

    def deploy(self, artifact: Artifact, *args: object, linked: str | None = None, what: str = "") -> ChecksumAddress:
        code = artifact.creation_code(*args, linked=linked)
        return self.plan.deploy(f"deploy {what or artifact.name}", self.account, code)

    def call(self, action: str, to: str, artifact: Artifact, function: str, *args: object, gas: int = CALL_GAS) -> None:
        self.plan.call(action, self.account, to, artifact.calldata(function, *args), gas=gas)


async def deploy_devnet(http_url: str) -> Devnet:
    """Deploy Multicall3 and all four protocols onto the Anvil at `http_url`; account 0 is the admin."""
    own = await compile_own_contracts()
    rpc = Rpc(http_url)
    try:
        chain_id = int(await rpc.call("eth_chainId"), 16)
        accounts = [Web3.to_checksum_address(a) for a in await rpc.call("eth_accounts")]
        admin, liquidity = accounts[ADMIN_ACCOUNT_INDEX], accounts[LIQUIDITY_ACCOUNT_INDEX]
        await rpc.call("anvil_setCode", MULTICALL3_ADDRESS, own["Multicall3"].deployed_bytecode)
        core = await _deploy_core(rpc, admin, own)
        pool = await _read_address(rpc, core.provider, "getPool")
        configurator = await _read_address(rpc, core.provider, "getPoolConfigurator")
        await _list_reserves(rpc, admin, core, pool, configurator)
        await _supply_liquidity(rpc, liquidity, core.tokens, pool)
        price_sources = await _list_reserves_priced_by_other_oracles(rpc, admin, own, core, pool, configurator)
    finally:
        await rpc.aclose()
    reserves = {
        spec.symbol: Reserve(asset=core.tokens[spec.symbol], feed=core.feeds[spec.symbol],
                             aggregator=core.aggregators[spec.symbol], decimals=spec.decimals)
        for spec in ASSETS
    }  # fmt: skip
    aave = AaveV3(pool_addresses_provider=core.provider, pool=pool, oracle=core.oracle,
                  data_provider=core.data_provider, pool_configurator=configurator, reserves=reserves)  # fmt: skip
    devnet = Devnet(chain_id=chain_id, multicall3=MULTICALL3_ADDRESS, aave_v3=aave, price_sources=price_sources)
    return msgspec.structs.replace(
        devnet,
        morpho_blue=await deploy_morpho_blue(http_url, reserves),
        euler_v2=await deploy_euler_v2(http_url, devnet),
        curvance=await deploy_curvance(http_url, devnet),
    )


async def _deploy_core(rpc: Rpc, admin_account: ChecksumAddress, own: dict[str, Artifact]) -> _Core:
    """Everything up to the oracle: libraries, provider, ACL, pool and configurator, tokens and feeds.

    One burst in the order PROTOCOLS.md records; addresses come from the admin's nonces, so later
    transactions can name contracts that are not mined yet.
    """
    admin = _Sender(await TxPlan.for_senders(rpc, [admin_account]), admin_account)
    libraries = _plan_libraries(admin, [POOL, CONFIGURATOR])
    registry, acl_art = aave_artifact(PROVIDER), aave_artifact(ACL_MANAGER)
    provider = admin.deploy(registry, "chainwatch-devnet", admin.account)
    admin.call("set ACL admin", provider, registry, "setACLAdmin", admin.account)
    acl = admin.deploy(acl_art, provider)  # its constructor reads the ACL admin set just above
    admin.call("set ACL manager", provider, registry, "setACLManager", acl)
    admin.call("add pool admin", acl, acl_art, "addPoolAdmin", admin.account)
    for qualified, setter, args in ((POOL, "setPoolImpl", (provider,)), (CONFIGURATOR, "setPoolConfiguratorImpl", ())):
        artifact = aave_artifact(qualified)
        impl = admin.deploy(artifact, *args, linked=link_bytecode(artifact, libraries), what=f"{artifact.name} impl")
        admin.call(f"initialize {artifact.name} impl", impl, artifact, "initialize", provider)
        admin.call(f"{setter} (creates the proxy)", provider, registry, setter, impl)
    data_provider = admin.deploy(aave_artifact(DATA_PROVIDER), provider)
    admin.call("set pool data provider", provider, registry, "setPoolDataProvider", data_provider)
    tokens: dict[str, ChecksumAddress] = {}
    feeds: dict[str, ChecksumAddress] = {}
    aggregators: dict[str, ChecksumAddress] = {}
    for spec in ASSETS:
        token_args = (spec.name, spec.symbol, spec.decimals)
        tokens[spec.symbol] = admin.deploy(aave_artifact(ERC20), *token_args, what=spec.symbol)
        answer = int(spec.price_usd * 10**FEED_DECIMALS)
        aggregators[spec.symbol] = feeds[spec.symbol] = admin.deploy(
            own["SettableFeed"], FEED_DECIMALS, f"{spec.symbol} / USD", answer, what=f"{spec.symbol} feed"
        )
        if spec.behind_proxy:
            feeds[spec.symbol] = admin.deploy(own["FeedProxy"], aggregators[spec.symbol], what=f"{spec.symbol} proxy")
    oracle_art = aave_artifact(ORACLE)
    oracle = admin.deploy(oracle_art, provider, [*tokens.values()], [*feeds.values()], _ZERO, _ZERO, 10**FEED_DECIMALS)
    admin.call("set price oracle", provider, registry, "setPriceOracle", oracle)
    strategy = admin.deploy(aave_artifact(RATE_STRATEGY), provider, *_RATES)
    await execute(rpc, admin.plan.txs)
    return _Core(provider, oracle, data_provider, strategy, tokens, feeds, aggregators)


def _plan_libraries(admin: _Sender, contracts: list[str]) -> dict[str, str]:
    """Deploy every library the contracts link, dependencies first; addresses by `path:Name`."""
    addresses: dict[str, str] = {}

    def visit(qualified: str) -> None:
        for library in aave_artifact(qualified).libraries():
            if library not in addresses:
                visit(library)  # FlashLoanLogic itself links BorrowLogic
                artifact = aave_artifact(library)
                addresses[library] = admin.deploy(artifact, linked=link_bytecode(artifact, addresses))

    for contract in contracts:
        visit(contract)
    return addresses


async def _list_reserves(
    rpc: Rpc, admin_account: ChecksumAddress, core: _Core, pool: ChecksumAddress, configurator: ChecksumAddress
) -> None:
    """Token implementations, then initReserves and the risk parameters of each reserve."""
    admin = _Sender(await TxPlan.for_senders(rpc, [admin_account]), admin_account)
    a_token = admin.deploy(aave_artifact(ATOKEN), pool, what="AToken impl")
    stable_debt = admin.deploy(aave_artifact(STABLE_DEBT), pool, what="StableDebtToken impl")
    variable_debt = admin.deploy(aave_artifact(VARIABLE_DEBT), pool, what="VariableDebtToken impl")
    inputs = [
        (a_token, stable_debt, variable_debt, spec.decimals, core.rate_strategy, core.tokens[spec.symbol],
         admin.account, _ZERO, f"Aave Devnet {spec.symbol}", f"a{spec.symbol}",
         f"Aave Devnet Variable Debt {spec.symbol}", f"variableDebt{spec.symbol}",
         f"Aave Devnet Stable Debt {spec.symbol}", f"stableDebt{spec.symbol}", b"")
        for spec in ASSETS
    ]  # fmt: skip
    settings = aave_artifact(CONFIGURATOR)
    admin.call("initReserves", configurator, settings, "initReserves", inputs, gas=_INIT_RESERVES_GAS)
    for spec in ASSETS:
        asset = core.tokens[spec.symbol]
        admin.call(f"configure {spec.symbol} as collateral", configurator, settings, "configureReserveAsCollateral",
                   asset, spec.ltv_bps, spec.liquidation_threshold_bps, spec.liquidation_bonus_bps)  # fmt: skip
        admin.call(f"enable {spec.symbol} borrowing", configurator, settings, "setReserveBorrowing", asset, True)
        admin.call(f"set {spec.symbol} reserve factor", configurator, settings, "setReserveFactor",
                   asset, _RESERVE_FACTOR_BPS)  # fmt: skip
    await execute(rpc, admin.plan.txs)


async def _supply_liquidity(
    rpc: Rpc, account: ChecksumAddress, tokens: dict[str, ChecksumAddress], pool: ChecksumAddress
) -> None:
    lender = _Sender(await TxPlan.for_senders(rpc, [account]), account)
    erc20, pool_art = aave_artifact(ERC20), aave_artifact(POOL)
    for spec in ASSETS:
        amount, token = spec.liquidity * 10**spec.decimals, tokens[spec.symbol]
        lender.call(f"mint {spec.symbol} liquidity", token, erc20, "mint(address,uint256)", account, amount)
        lender.call(f"approve {spec.symbol} liquidity", token, erc20, "approve", pool, _MAX_UINT256)
        lender.call(f"supply {spec.symbol} liquidity", pool, pool_art, "supply", token, amount, account, 0)
    await execute(rpc, lender.plan.txs)


async def _read_address(rpc: Rpc, provider: str, getter: str) -> ChecksumAddress:
    call = {"to": provider, "data": aave_artifact(PROVIDER).calldata(getter)}
    result: str = await rpc.call("eth_call", call, "latest")
    return Web3.to_checksum_address("0x" + result[-40:])


class _OtherOracleAsset(NamedTuple):
    symbol: str
    price_usd: int


# Kept out of ASSETS so the other protocols' devnets (which iterate ASSETS) stay as they are.
_RATIO_ASSET: Final = _OtherOracleAsset("sWETH", 2200)  # 1.1 WETH per sWETH at $2,000
_RATIO: Final = 110_000_000  # sWETH/WETH with 8 decimals
_REDSTONE_ASSETS: Final = (_OtherOracleAsset("LINK", 15), _OtherOracleAsset("UNI", 8))
_PYTH_ASSETS: Final = (_OtherOracleAsset("SOL", 150),)
_PYTH_EXPONENT: Final = -8
_OTHER_RISK: Final = (7000, 7500, 11000)  # LTV, liquidation threshold, bonus (bps)


def feed_id(symbol: str) -> str:
    """A RedStone data feed id or a devnet Pyth price id: the symbol's bytes, right-padded to 32 (as RedStone's are)."""
    return "0x" + symbol.encode().hex().ljust(64, "0")


async def _list_reserves_priced_by_other_oracles(
    rpc: Rpc, admin_account: ChecksumAddress, own: dict[str, Artifact], core: _Core, pool: ChecksumAddress,
    configurator: ChecksumAddress,
) -> PriceSourcesDevnet:  # fmt: skip
    """Tokens, their composite, RedStone and Pyth oracles, and their Aave reserves (18 decimals each)."""
    admin = _Sender(await TxPlan.for_senders(rpc, [admin_account]), admin_account)
    ratio_feed = admin.deploy(own["SettableFeed"], FEED_DECIMALS, "sWETH / WETH exchange rate", _RATIO, what="ratio feed")
    redstone = admin.deploy(own["RedstoneMultiFeedAdapter"], what="RedStone adapter")
    pyth = admin.deploy(own["PythPriceFeeds"], what="Pyth")
    sources = {_RATIO_ASSET.symbol: admin.deploy(own["RatioOracleAggregator"], ratio_feed, core.aggregators["WETH"],
                                                 "sWETH / USD", what="sWETH ratio aggregator")}  # fmt: skip
    for spec in _REDSTONE_ASSETS:
        admin.call(f"RedStone {spec.symbol} value", redstone, own["RedstoneMultiFeedAdapter"], "setValue",
                   bytes.fromhex(feed_id(spec.symbol)[2:]), spec.price_usd * 10**FEED_DECIMALS)  # fmt: skip
        sources[spec.symbol] = admin.deploy(own["RedstonePriceFeed"], redstone, bytes.fromhex(feed_id(spec.symbol)[2:]),
                                            f"{spec.symbol} / USD", what=f"RedStone {spec.symbol} feed")  # fmt: skip
    for spec in _PYTH_ASSETS:
        admin.call(f"Pyth {spec.symbol} price", pyth, own["PythPriceFeeds"], "setPrice",
                   bytes.fromhex(feed_id(spec.symbol)[2:]), spec.price_usd * 10**-_PYTH_EXPONENT, 0, _PYTH_EXPONENT)  # fmt: skip
        sources[spec.symbol] = admin.deploy(own["PythAggregator"], pyth, bytes.fromhex(feed_id(spec.symbol)[2:]),
                                            what=f"Pyth {spec.symbol} adapter")  # fmt: skip
    tokens = {symbol: admin.deploy(aave_artifact(ERC20), f"Devnet {symbol}", symbol, 18, what=symbol) for symbol in sources}
    a_token = admin.deploy(aave_artifact(ATOKEN), pool, what="AToken impl")
    stable_debt = admin.deploy(aave_artifact(STABLE_DEBT), pool, what="StableDebtToken impl")
    variable_debt = admin.deploy(aave_artifact(VARIABLE_DEBT), pool, what="VariableDebtToken impl")
    oracle_art, settings = aave_artifact(ORACLE), aave_artifact(CONFIGURATOR)
    admin.call("set sources of the other-oracle assets", core.oracle, oracle_art, "setAssetSources",
               [*tokens.values()], [sources[symbol] for symbol in tokens])  # fmt: skip
    inputs = [
        (a_token, stable_debt, variable_debt, 18, core.rate_strategy, token, admin.account, _ZERO,
         f"Aave Devnet {symbol}", f"a{symbol}", f"Aave Devnet Variable Debt {symbol}", f"variableDebt{symbol}",
         f"Aave Devnet Stable Debt {symbol}", f"stableDebt{symbol}", b"")
        for symbol, token in tokens.items()
    ]  # fmt: skip
    admin.call("initReserves (other oracles)", configurator, settings, "initReserves", inputs, gas=14_000_000)
    for symbol, token in tokens.items():
        admin.call(f"configure {symbol} as collateral", configurator, settings, "configureReserveAsCollateral",
                   token, *_OTHER_RISK)  # fmt: skip
    await execute(rpc, admin.plan.txs)
    reserves = {symbol: Reserve(asset=tokens[symbol], feed=sources[symbol], aggregator=sources[symbol], decimals=18)
                for symbol in tokens}  # fmt: skip
    return PriceSourcesDevnet(
        reserves=reserves, ratio_feed=ratio_feed, redstone_adapter=redstone,
        redstone_ids={spec.symbol: feed_id(spec.symbol) for spec in _REDSTONE_ASSETS}, pyth=pyth,
        pyth_ids={spec.symbol: feed_id(spec.symbol) for spec in _PYTH_ASSETS},
    )  # fmt: skip
