"""Morpho Blue on the devnet: the real `Morpho` singleton on top of an Aave devnet, and its users' actions.

Deploys the unmodified Morpho Blue (npm `@morpho-org/morpho-blue`, compiled here) with two USDC-loan markets,
WETH at 86% LLTV and WBTC at 77%, reusing the Aave devnet's tokens and price feeds so that one price move hits
every protocol. Each market's oracle has the shape of MorphoChainlinkOracleV2 over those feeds (collateral feed
as base, the USDC proxy as quote); the IRM charges a fixed 10% a year so interest visibly accrues.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Final, NamedTuple

import msgspec
from eth_abi import encode
from eth_utils import keccak
from web3 import Web3

from chainwatch.abi import calldata, decode
from chainwatch.devnet.artifacts import Artifact
from chainwatch.devnet.morpho_compile import compile_morpho
from chainwatch.devnet.transactions import Rpc, TxPlan, execute

if TYPE_CHECKING:  # deploy.py will import this module to fold Morpho into deploy_devnet
    from chainwatch.devnet.deploy import Reserve

# The same Anvil accounts as deploy.py: 0 administers, 9 lends.
ADMIN_ACCOUNT_INDEX: Final = 0
LIQUIDITY_ACCOUNT_INDEX: Final = 9
WAD: Final = 10**18
# 10% a year, per second, as Morpho's IRMs return it: a year of accrual multiplies debt by about 1.105.
RATE_PER_SECOND: Final = WAD // 10 // (365 * 24 * 3600)
_LIQUIDITY: Final = 1_000_000  # whole loan tokens supplied to each market
_ZERO: Final = "0x0000000000000000000000000000000000000000"
_GAS: Final = 400_000  # each Morpho action: borrow 133k, liquidate 139k measured (both call the oracle and IRM)

Address = Annotated[str, msgspec.Meta(pattern="^0x[0-9a-fA-F]{40}$")]
MarketId = Annotated[str, msgspec.Meta(pattern="^0x[0-9a-f]{64}$")]
Amount = Decimal | int | float


class MarketSpec(NamedTuple):
    collateral: str
    loan: str
    lltv: int


MARKETS: Final = (MarketSpec("WETH", "USDC", 86 * WAD // 100), MarketSpec("WBTC", "USDC", 77 * WAD // 100))


class _Base(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class MorphoMarket(_Base):
    id: MarketId  # keccak256(abi.encode(params)), lower-case hex as logs carry it
    loan_token: Address
    collateral_token: Address
    oracle: Address
    irm: Address
    lltv: int
    loan_symbol: str
    collateral_symbol: str
    loan_decimals: int
    collateral_decimals: int

    @property
    def params(self) -> tuple[str, str, str, str, int]:
        """The `MarketParams` tuple Morpho's functions take."""
        return (self.loan_token, self.collateral_token, self.oracle, self.irm, self.lltv)


class MorphoBlueDevnet(_Base):
    """The devnet's Morpho Blue; `markets` by name, e.g. "WETH/USDC"."""

    morpho: Address
    irm: Address
    markets: dict[str, MorphoMarket]

    def __post_init__(self) -> None:
        # Runs on decode too, so a hand-edited devnet file with a mistyped address fails to load.
        addresses = [self.morpho, self.irm]
        addresses += [a for m in self.markets.values() for a in (m.loan_token, m.collateral_token, m.oracle, m.irm)]
        for address in addresses:
            if not Web3.is_checksum_address(address):
                raise ValueError(f"address {address} is not checksummed")
        for name, market in self.markets.items():
            if market.id != market_id(market.params):
                raise ValueError(f"market {name}: id {market.id} does not match its parameters")


def market_id(params: tuple[str, str, str, str, int]) -> str:
    """Morpho's `MarketParamsLib.id`: keccak256 of the five ABI-encoded words."""
    return "0x" + keccak(encode(["address", "address", "address", "address", "uint256"], list(params))).hex()


async def deploy_morpho_blue(http_url: str, reserves: Mapping[str, Reserve]) -> MorphoBlueDevnet:
    """Deploy Morpho Blue, its oracles and IRM, create the markets and supply liquidity; `reserves` are the Aave
    devnet's (`devnet.aave_v3.reserves`: MintableERC20 tokens and their feeds)."""
    compiled = await compile_morpho()
    rpc = Rpc(http_url)
    try:
        accounts = [Web3.to_checksum_address(a) for a in await rpc.call("eth_accounts")]
        admin, lender = accounts[ADMIN_ACCOUNT_INDEX], accounts[LIQUIDITY_ACCOUNT_INDEX]
        plan = await TxPlan.for_senders(rpc, [admin])
        morpho_art, oracle_art = compiled["Morpho"], compiled["DevnetChainlinkOracle"]
        morpho = plan.deploy("deploy Morpho", admin, morpho_art.creation_code(admin))
        irm = plan.deploy("deploy FixedRateIrm", admin, compiled["FixedRateIrm"].creation_code(RATE_PER_SECOND))
        plan.call("enable the IRM", admin, morpho, morpho_art.calldata("enableIrm", irm))
        markets: dict[str, MorphoMarket] = {}
        for spec in MARKETS:
            base, quote = reserves[spec.collateral], reserves[spec.loan]
            # The oracle reads the Aave oracle's sources (USDC's is a proxy), as a mainnet oracle reads proxies.
            oracle = plan.deploy(f"deploy {spec.collateral}/{spec.loan} oracle", admin, oracle_art.creation_code(
                _ZERO, 1, base.feed, _ZERO, base.decimals, _ZERO, 1, quote.feed, _ZERO, quote.decimals))  # fmt: skip
            loan, collateral = Web3.to_checksum_address(quote.asset), Web3.to_checksum_address(base.asset)
            params = (loan, collateral, oracle, irm, spec.lltv)
            markets[f"{spec.collateral}/{spec.loan}"] = MorphoMarket(
                id=market_id(params), loan_token=params[0], collateral_token=params[1], oracle=oracle, irm=irm,
                lltv=spec.lltv, loan_symbol=spec.loan, collateral_symbol=spec.collateral,
                loan_decimals=quote.decimals, collateral_decimals=base.decimals,
            )  # fmt: skip
        for lltv in sorted({spec.lltv for spec in MARKETS}):
            plan.call(f"enable LLTV {lltv}", admin, morpho, morpho_art.calldata("enableLltv", lltv))
        for name, market in markets.items():
            plan.call(f"create market {name}", admin, morpho, morpho_art.calldata("createMarket", market.params))
        await execute(rpc, plan.txs)  # the lender's part below needs the markets mined first
        plan = await TxPlan.for_senders(rpc, [lender])
        for name, market in markets.items():
            units = _LIQUIDITY * 10**market.loan_decimals
            _erc20(plan, f"mint {name} liquidity", lender, market.loan_token, "mint(address,uint256)", lender, units)
            _erc20(plan, f"approve {name} liquidity", lender, market.loan_token, "approve(address,uint256)",
                   morpho, units)  # fmt: skip
            plan.call(f"supply {name} liquidity", lender, morpho,
                      morpho_art.calldata("supply", market.params, units, 0, lender, b""), gas=_GAS)  # fmt: skip
        await execute(rpc, plan.txs)
    finally:
        await rpc.aclose()
    return MorphoBlueDevnet(morpho=morpho, irm=irm, markets=markets)


class MorphoActions:
    """Morpho Blue users' transactions on the devnet; each returns the block of its last transaction.

    Use as `async with MorphoActions(url, devnet.morpho_blue) as morpho:`; prices move with
    `DevnetActions.set_price`, whose feeds these markets share. Calls on one node must not overlap.
    """

    def __init__(self, http_url: str, devnet: MorphoBlueDevnet) -> None:
        self.devnet = devnet
        self._rpc = Rpc(http_url)
        self._morpho: Artifact | None = None

    async def __aenter__(self) -> MorphoActions:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._rpc.aclose()

    async def open_position(self, account: str, market: str, *, collateral: Amount, borrow: Amount) -> int:
        """Mint and supply `collateral` (whole collateral tokens), then borrow `borrow` (whole loan tokens)."""
        plan = await TxPlan.for_senders(self._rpc, [account])
        await self._plan_supply_collateral(plan, account, market, collateral)
        await self._plan_borrow(plan, account, market, borrow)
        return await self._run(plan)

    async def supply_collateral(self, account: str, market: str, amount: Amount) -> int:
        plan = await TxPlan.for_senders(self._rpc, [account])
        await self._plan_supply_collateral(plan, account, market, amount)
        return await self._run(plan)

    async def borrow(self, account: str, market: str, amount: Amount) -> int:
        plan = await TxPlan.for_senders(self._rpc, [account])
        await self._plan_borrow(plan, account, market, amount)
        return await self._run(plan)

    async def repay(self, account: str, market: str, amount: Amount | None = None) -> int:
        """Repay `amount` whole loan tokens, or every borrow share when None (the tokens are minted first)."""
        m = self.devnet.markets[market]
        if amount is None:
            assets, (_, shares, _) = 0, await self.position(market, account)
            to_mint = await self._assets_for(m, shares)
        else:
            assets, shares = _units(amount, m.loan_decimals), 0
            to_mint = assets
        plan = await TxPlan.for_senders(self._rpc, [account])
        self._plan_loan_tokens(plan, account, m, to_mint, f"repay on {market}")
        plan.call(f"repay on {market} by {account}", account, self.devnet.morpho,
                  await self._call("repay", m.params, assets, shares, account, b""), gas=_GAS)  # fmt: skip
        return await self._run(plan)

    async def liquidate(self, liquidator: str, borrower: str, market: str, *, share: Decimal = Decimal("0.5")) -> int:
        """`liquidator` repays `share` of `borrower`'s borrow shares and seizes collateral; reverts with Morpho's
        "position is healthy" (as TxFailed) when the position is healthy."""
        m = self.devnet.markets[market]
        _, borrow_shares, _ = await self.position(market, borrower)
        repaid = int(borrow_shares * share)
        plan = await TxPlan.for_senders(self._rpc, [liquidator])
        self._plan_loan_tokens(plan, liquidator, m, await self._assets_for(m, repaid), f"liquidate on {market}")
        plan.call(f"liquidate {borrower} on {market}", liquidator, self.devnet.morpho,
                  await self._call("liquidate", m.params, borrower, 0, repaid, b""), gas=_GAS)  # fmt: skip
        return await self._run(plan)

    async def hand_market(self, sender: str, on_behalf: str, params: tuple[str, str, str, str, int], units: int) -> int:
        """What anyone may do to anyone: create a market with `params` (an enabled IRM and LLTV) and supply `units`
        of its collateral token (minted by `sender`, which must allow it) on behalf of `on_behalf`."""
        plan = await TxPlan.for_senders(self._rpc, [sender])
        plan.call(f"create a market for {on_behalf}", sender, self.devnet.morpho, await self._call("createMarket", params))
        _erc20(plan, "mint collateral", sender, params[1], "mint(address,uint256)", sender, units)
        _erc20(plan, "approve collateral", sender, params[1], "approve(address,uint256)", self.devnet.morpho, units)
        plan.call(f"supply collateral on behalf of {on_behalf}", sender, self.devnet.morpho,
                  await self._call("supplyCollateral", params, units, on_behalf, b""), gas=_GAS)  # fmt: skip
        return await self._run(plan)

    async def position(self, market: str, account: str, block: int | str = "latest") -> tuple[int, int, int]:
        """Morpho's `position(id, account)`: (supplyShares, borrowShares, collateral)."""
        m = self.devnet.markets[market]
        raw = await self._view(calldata("position(bytes32,address)", bytes.fromhex(m.id[2:]), account), block)
        return decode(["uint256", "uint128", "uint128"], raw)  # type: ignore[return-value]

    async def _assets_for(self, m: MorphoMarket, shares: int) -> int:
        # Totals are as of the last accrual, which may be long ago (a time warp): twice the figure covers a year
        # of interest at any sane rate; the unused tokens simply stay with the account.
        raw = await self._view(calldata("market(bytes32)", bytes.fromhex(m.id[2:])), "latest")
        _, _, total_assets, total_shares, _, _ = decode(["uint128"] * 6, raw)
        return 2 * (shares * (total_assets + 1) // (total_shares + 10**6) + 1)

    async def _view(self, data: bytes, block: int | str) -> bytes:
        tag = hex(block) if isinstance(block, int) else block
        result: str = await self._rpc.call("eth_call", {"to": self.devnet.morpho, "data": "0x" + data.hex()}, tag)
        return bytes.fromhex(result.removeprefix("0x"))

    async def _plan_supply_collateral(self, plan: TxPlan, account: str, market: str, amount: Amount) -> None:
        m = self.devnet.markets[market]
        units = _units(amount, m.collateral_decimals)
        _erc20(plan, f"mint {m.collateral_symbol} to {account}", account, m.collateral_token,
               "mint(address,uint256)", account, units)  # fmt: skip
        _erc20(plan, f"approve {m.collateral_symbol} by {account}", account, m.collateral_token,
               "approve(address,uint256)", self.devnet.morpho, units)  # fmt: skip
        supply = await self._call("supplyCollateral", m.params, units, account, b"")
        plan.call(f"supply {amount} {m.collateral_symbol} collateral on {market} by {account}", account,
                  self.devnet.morpho, supply, gas=_GAS)  # fmt: skip

    async def _plan_borrow(self, plan: TxPlan, account: str, market: str, amount: Amount) -> None:
        m = self.devnet.markets[market]
        units = _units(amount, m.loan_decimals)
        plan.call(f"borrow {amount} {m.loan_symbol} on {market} by {account}", account, self.devnet.morpho,
                  await self._call("borrow", m.params, units, 0, account, account), gas=_GAS)  # fmt: skip

    def _plan_loan_tokens(self, plan: TxPlan, account: str, m: MorphoMarket, units: int, why: str) -> None:
        _erc20(plan, f"mint {m.loan_symbol} to {account} to {why}", account, m.loan_token, "mint(address,uint256)",
               account, units)  # fmt: skip
        _erc20(plan, f"approve {m.loan_symbol} by {account} to {why}", account, m.loan_token,
               "approve(address,uint256)", self.devnet.morpho, units)  # fmt: skip

    async def _call(self, function: str, *args: object) -> str:
        if self._morpho is None:
            self._morpho = (await compile_morpho())["Morpho"]  # from the cache: deploying compiled it
        return self._morpho.calldata(function, *args)

    async def _run(self, plan: TxPlan) -> int:
        receipts = await execute(self._rpc, plan.txs)
        return max(int(r["blockNumber"], 16) for r in receipts)


def _erc20(plan: TxPlan, action: str, sender: str, token: str, signature: str, *args: object) -> None:
    plan.call(action, sender, token, "0x" + calldata(signature, *args).hex(), gas=150_000)


def _units(amount: Amount, decimals: int) -> int:
    scaled = (amount if isinstance(amount, Decimal) else Decimal(str(amount))) * 10**decimals
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} has more than {decimals} decimals")
    return int(scaled)

