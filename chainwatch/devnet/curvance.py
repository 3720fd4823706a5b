"""A Curvance market on the devnet: the project's own Curvance-shaped contracts, deployed over the Aave devnet.

The contracts in `contracts/curvance/` reproduce Curvance's interface (MarketManager `statusOf` and `collConfig`,
with a borrow limit and soft and hard liquidation lines per token; cTokens with Curvance's events; an
OracleManager over a ChainlinkAdaptor; ProtocolReader `getPositionHealth`). They list the
Aave devnet's own WETH, WBTC and USDC and price them from the same feeds (USDC through its FeedProxy), so one
`DevnetActions.set_price` moves Aave and Curvance positions alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Final, NamedTuple

import msgspec
from eth_typing import ChecksumAddress
from web3 import Web3

from chainwatch.devnet.artifacts import Artifact
from chainwatch.devnet.common import (
    ADMIN_ACCOUNT_INDEX, ASSETS, ERC20, LIQUIDITY_ACCOUNT_INDEX, Address, aave_artifact,
)  # fmt: skip
from chainwatch.devnet.solc import CONTRACTS_DIR, compile_cached, sources_in
from chainwatch.devnet.transactions import Rpc, TxPlan, execute

if TYPE_CHECKING:  # deploy.py imports this module to fold it into the devnet
    from chainwatch.devnet.deploy import Devnet

CURVANCE_DIR: Final = CONTRACTS_DIR / "curvance"
CONTRACTS: Final = ("MarketManager", "BorrowableCToken", "OracleManager", "ChainlinkAdaptor", "ProtocolReader")
WAD: Final = 10**18
_YEAR: Final = 365 * 24 * 3600
# 10% a year on every debt, so a year's time warp with no transaction moves health visibly.
BORROW_RATE_PER_SECOND: Final = WAD // 10 // _YEAR


class CollateralLines(NamedTuple):
    """A token's three lines as `updateTokenConfig` takes them, in BPS: the borrow limit's share of collateral
    value, and the soft and hard liquidation requirements as premiums over 100% (2500 = 125%)."""

    coll_ratio: int
    soft_premium: int
    hard_premium: int


# Lines with exact soft weights (WETH 0.8, WBTC 1/1.4, USDC 0.8333), each borrow limit short of its soft line as
# Curvance requires, and WBTC's stricter, as a volatile collateral's would be.
COLLATERAL_LINES: Final = {
    "WETH": CollateralLines(coll_ratio=7500, soft_premium=2500, hard_premium=1000),
    "WBTC": CollateralLines(coll_ratio=6500, soft_premium=4000, hard_premium=2500),
    "USDC": CollateralLines(coll_ratio=8000, soft_premium=2000, hard_premium=1000),
}
# Measured use (deploys 0.2-1.9M, calls under 0.3M) with headroom; small limits let a wave hold more.
_DEPLOY_GAS: Final = 2_500_000
_CALL_GAS: Final = 400_000
_MAX_UINT256: Final = 2**256 - 1
_ARTIFACTS: Final = msgspec.json.Decoder(dict[str, Artifact])

Amount = Decimal | int | float


class _Base(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class CurvanceToken(_Base):
    c_token: Address
    asset: Address  # the Aave devnet's token of the same symbol
    decimals: int


class CurvanceDevnet(_Base):
    market_manager: Address
    oracle_manager: Address
    chainlink_adaptor: Address
    protocol_reader: Address
    tokens: dict[str, CurvanceToken]

    def __post_init__(self) -> None:
        addresses = [self.market_manager, self.oracle_manager, self.chainlink_adaptor, self.protocol_reader]
        for address in addresses + [a for t in self.tokens.values() for a in (t.c_token, t.asset)]:
            if not Web3.is_checksum_address(address):
                raise ValueError(f"address {address} is not checksummed")


async def compile_curvance_contracts() -> dict[str, Artifact]:
    """ABI and bytecode of each Curvance-shaped contract by name, cached under .cache/solc like the others.

    Artifact names are prefixed `curvance:` because artifacts.py caches function selectors by artifact name.
    """
    contracts = {name: f"curvance/{name}.sol" for name in CONTRACTS}
    return await compile_cached("curvance", sources_in(CURVANCE_DIR, "curvance/"), contracts, artifact_prefix="curvance:")


class _Plan(NamedTuple):
    """A TxPlan phrased as deploys of and calls to contracts named as in CONTRACTS (or "ERC20": Aave's token)."""

    plan: TxPlan
    art: dict[str, Artifact]

    @classmethod
    async def for_sender(cls, rpc: Rpc, sender: str) -> _Plan:
        art = {**await compile_curvance_contracts(), "ERC20": aave_artifact(ERC20)}
        return cls(await TxPlan.for_senders(rpc, [sender]), art)

    def deploy(self, sender: str, name: str, *args: object, what: str = "") -> ChecksumAddress:
        code = self.art[name].creation_code(*args)
        return self.plan.deploy(f"deploy Curvance {what or name}", sender, code, gas=_DEPLOY_GAS)

    def call(self, sender: str, to: str, name: str, function: str, *args: object, action: str) -> None:
        self.plan.call(action, sender, to, self.art[name].calldata(function, *args), gas=_CALL_GAS)


def token_config(c_token: str, lines: CollateralLines) -> tuple[object, ...]:
    """A `TokenConfig` tuple: only the cToken and its three lines take effect on the devnet's manager."""
    return (c_token, lines.coll_ratio, lines.soft_premium, lines.hard_premium, *([0] * 9))


async def deploy_curvance(http_url: str, devnet: Devnet) -> CurvanceDevnet:
    """Deploy the Curvance market over the Aave devnet at `http_url`: account 0 administers, account 9 lends."""
    rpc = Rpc(http_url)
    try:
        accounts = [Web3.to_checksum_address(a) for a in await rpc.call("eth_accounts")]
        admin, lender = accounts[ADMIN_ACCOUNT_INDEX], accounts[LIQUIDITY_ACCOUNT_INDEX]
        setup = await _Plan.for_sender(rpc, admin)
        oracle = setup.deploy(admin, "OracleManager")
        adaptor = setup.deploy(admin, "ChainlinkAdaptor")
        manager = setup.deploy(admin, "MarketManager", oracle)
        reader = setup.deploy(admin, "ProtocolReader")
        tokens = {}
        for spec in ASSETS:
            reserve = devnet.aave_v3.reserves[spec.symbol]
            c_token = setup.deploy(admin, "BorrowableCToken", reserve.asset, manager, BORROW_RATE_PER_SECOND,
                                   what=f"c{spec.symbol}")  # fmt: skip
            tokens[spec.symbol] = CurvanceToken(c_token=c_token, asset=reserve.asset, decimals=spec.decimals)
            # The oracle source (USDC's is a FeedProxy), as a Curvance adaptor is given a Chainlink proxy.
            setup.call(admin, adaptor, "ChainlinkAdaptor", "addAsset", reserve.asset, reserve.feed, 0, True,
                       action=f"price {spec.symbol} in the Curvance adaptor")  # fmt: skip
            setup.call(admin, oracle, "OracleManager", "addAssetPriceFeed", reserve.asset, adaptor,
                       action=f"approve the adaptor for {spec.symbol}")  # fmt: skip
            setup.call(admin, manager, "MarketManager", "listToken", c_token, action=f"list c{spec.symbol}")
            setup.call(admin, manager, "MarketManager", "updateTokenConfig",
                       token_config(c_token, COLLATERAL_LINES[spec.symbol]), action=f"configure c{spec.symbol}")  # fmt: skip
        await execute(rpc, setup.plan.txs)
        # After the admin's burst: the deposits need the cTokens mined.
        liquidity = await _Plan.for_sender(rpc, lender)
        for spec in ASSETS:
            token, units = tokens[spec.symbol], spec.liquidity * 10**spec.decimals
            _plan_deposit(liquidity, lender, spec.symbol, token, units, as_collateral=False)
        await execute(rpc, liquidity.plan.txs)
    finally:
        await rpc.aclose()
    return CurvanceDevnet(market_manager=manager, oracle_manager=oracle, chainlink_adaptor=adaptor,
                          protocol_reader=reader, tokens=tokens)  # fmt: skip


def _plan_deposit(
    plan: _Plan, account: str, symbol: str, token: CurvanceToken, units: int, *, as_collateral: bool
) -> None:
    plan.call(account, token.asset, "ERC20", "mint(address,uint256)", account, units,
              action=f"mint {symbol} to {account}")  # fmt: skip
    plan.call(account, token.asset, "ERC20", "approve", token.c_token, units, action=f"approve c{symbol} by {account}")
    function = "depositAsCollateral" if as_collateral else "deposit"
    plan.call(account, token.c_token, "BorrowableCToken", function, units, account,
              action=f"{function} {symbol} by {account}")  # fmt: skip


class CurvanceActions:
    """Transactions against the devnet's Curvance market; each returns the block of its last transaction.

    Prices and time are shared with Aave: use `DevnetActions.set_price` and `advance_time`.
    """

    def __init__(self, http_url: str, curvance: CurvanceDevnet) -> None:
        self.curvance = curvance
        self._rpc = Rpc(http_url)

    async def __aenter__(self) -> CurvanceActions:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._rpc.aclose()

    async def open_position(
        self, account: str, *, collateral: Mapping[str, Amount], borrow: Mapping[str, Amount] | None = None
    ) -> int:
        """Mint and deposit each collateral as collateral, then borrow each debt."""
        plan = await self._plan(account)
        for symbol, amount in collateral.items():
            _plan_deposit(plan, account, symbol, self._token(symbol), self._units(symbol, amount), as_collateral=True)
        for symbol, amount in (borrow or {}).items():
            self._plan_borrow(plan, account, symbol, amount)
        return await self._run(plan)

    async def borrow(self, account: str, symbol: str, amount: Amount) -> int:
        plan = await self._plan(account)
        self._plan_borrow(plan, account, symbol, amount)
        return await self._run(plan)

    async def repay(self, account: str, symbol: str, amount: Amount) -> int:
        """Mint `amount` of `symbol` to the account and repay that much of its debt (the cToken's `repay`)."""
        plan, token, units = await self._plan(account), self._token(symbol), self._units(symbol, amount)
        plan.call(account, token.asset, "ERC20", "mint(address,uint256)", account, units, action=f"mint {symbol} to repay")
        plan.call(account, token.asset, "ERC20", "approve", token.c_token, units, action=f"approve c{symbol} to repay")
        plan.call(account, token.c_token, "BorrowableCToken", "repay", units, action=f"repay {amount} {symbol} by {account}")
        return await self._run(plan)

    async def liquidate(self, liquidator: str, account: str, *, debt: str, collateral: str) -> int:
        """`liquidator` repays all of `account`'s `debt` (minted to it first) and seizes `collateral` shares."""
        plan, token = await self._plan(liquidator), self._token(debt)
        funds = self._units(debt, 1_000_000)
        plan.call(liquidator, token.asset, "ERC20", "mint(address,uint256)", liquidator, funds, action=f"mint {debt}")
        plan.call(liquidator, token.asset, "ERC20", "approve", token.c_token, _MAX_UINT256, action=f"approve c{debt}")
        plan.call(liquidator, token.c_token, "BorrowableCToken", "liquidate", [Web3.to_checksum_address(account)],
                  self._token(collateral).c_token, action=f"liquidate {account}")  # fmt: skip
        return await self._run(plan)

    async def set_collateral_lines(self, symbol: str, lines: CollateralLines) -> int:
        """Change a token's borrow limit and liquidation requirements through `updateTokenConfig` (emits
        `TokenConfigUpdated`)."""
        admin = Web3.to_checksum_address((await self._rpc.call("eth_accounts"))[ADMIN_ACCOUNT_INDEX])
        plan = await self._plan(admin)
        config = token_config(self._token(symbol).c_token, lines)
        plan.call(admin, self.curvance.market_manager, "MarketManager", "updateTokenConfig", config,
                  action=f"set c{symbol}'s lines to {lines}")  # fmt: skip
        return await self._run(plan)

    def _plan_borrow(self, plan: _Plan, account: str, symbol: str, amount: Amount) -> None:
        plan.call(account, self._token(symbol).c_token, "BorrowableCToken", "borrow", self._units(symbol, amount),
                  account, action=f"borrow {amount} {symbol} by {account}")  # fmt: skip

    async def _plan(self, account: str) -> _Plan:
        return await _Plan.for_sender(self._rpc, account)

    async def _run(self, plan: _Plan) -> int:
        receipts = await execute(self._rpc, plan.plan.txs)
        return max(int(r["blockNumber"], 16) for r in receipts)

    def _token(self, symbol: str) -> CurvanceToken:
        return self.curvance.tokens[symbol]

    def _units(self, symbol: str, amount: Amount) -> int:
        scaled = Decimal(str(amount)) * 10 ** self._token(symbol).decimals
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{amount} {symbol} has more decimals than the token")
        return int(scaled)
