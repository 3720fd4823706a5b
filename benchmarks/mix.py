"""The mixed market (`--mix`): N borrowers spread over the devnet's four protocols, a known fraction on each exposed
to WETH, and every position opened in a few large transaction bursts.

Account i is on protocol `i % 4` (Aave v3, Morpho Blue, Euler v2, Curvance: each gets N/4, interleaved), and within
each protocol `round(n * fraction)` of its n accounts, spread evenly, are exposed. Every protocol's positions are
the same two shapes, priced by the same feeds, so the same WETH move alerts exactly the exposed ones, one WARN each:

| protocol | exposed: 1 WETH, 1,000 USDC borrowed | steady: 0.05 WBTC, 1,000 USDC borrowed |
|---|---|---|
| Aave v3 (liquidation threshold 85% / 75%) | 1.70 -> 1.36 | 2.25 |
| Morpho Blue (markets WETH/USDC LLTV 86%, WBTC/USDC 77%) | 1.72 -> 1.376 | 2.31 |
| Euler v2 (USDC vault; liquidation LTV 85% / 75%) | 1.70 -> 1.36 | 2.25 |
| Curvance (collRatio 85% / 75%) | 1.70 -> 1.36 | 2.25 |

The devnet's own Actions classes open Morpho, Euler and Curvance positions one account (and one `execute`, so one
mined block at least) at a time; here every account's transactions are planned with the same calls those classes
plan, into one `TxPlan` per few thousand accounts of all four protocols, and sent with `execute` in block-sized
waves. Morpho's markets hold 1,000,000 USDC each: the lender (Anvil account 9) first supplies what the benchmark's
borrowers take, so N=10,000 fits.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Final, NamedTuple

from web3 import Web3

from benchmarks.market import AAVE, Market, exposed_indices
from chainwatch.devnet.actions import DevnetActions
from chainwatch.devnet.anvil import AnvilNode
from chainwatch.devnet.artifacts import Artifact
from chainwatch.devnet.common import ERC20, LIQUIDITY_ACCOUNT_INDEX, POOL, aave_artifact
from chainwatch.devnet.curvance import compile_curvance_contracts
from chainwatch.devnet.deploy import Devnet, deploy_devnet
from chainwatch.devnet.euler import compile_euler_contracts
from chainwatch.devnet.morpho_compile import compile_morpho
from chainwatch.devnet.transactions import Rpc, TxPlan, execute

MORPHO: Final = "morpho"
EULER: Final = "euler"
CURVANCE: Final = "curvance"
# `[[protocols]]` name -> kind, in the order accounts are dealt to them.
KINDS: Final = {AAVE: "aave_v3", MORPHO: "morpho_blue", EULER: "euler_v2", CURVANCE: "curvance"}
BORROW_USDC: Final = 1000
_EXPOSED: Final = ("WETH", Decimal(1))
_STEADY: Final = ("WBTC", Decimal("0.05"))
_OPEN_BATCH: Final = 2_000  # accounts per plan: bounds the plan held in memory at once
_MAX_UINT256: Final = 2**256 - 1
# Gas limits as each protocol's Actions class gives them (about twice the use measured on the devnet).
_TOKEN_GAS: Final = 150_000
_AAVE_SUPPLY_GAS: Final = 500_000
_AAVE_BORROW_GAS: Final = 800_000
_MORPHO_GAS: Final = 400_000
_EULER_CALL_GAS: Final = 300_000
_EULER_ACTION_GAS: Final = 600_000
_CURVANCE_GAS: Final = 400_000
_VARIABLE_RATE: Final = 2


class _Artifacts(NamedTuple):
    erc20: Artifact
    pool: Artifact
    morpho: Artifact
    evault: Artifact
    evc: Artifact
    c_token: Artifact


class Opening(NamedTuple):
    account: str
    protocol: str
    exposed: bool


def deal(count: int, fraction: float) -> list[Opening]:
    """Account slots 0..count-1: which protocol each is on and whether it is exposed (accounts filled in later)."""
    names = list(KINDS)
    per_protocol = {name: len(range(p, count, len(names))) for p, name in enumerate(names)}
    exposed = {name: exposed_indices(n, fraction) for name, n in per_protocol.items()}
    return [Opening(account="", protocol=names[i % len(names)], exposed=i // len(names) in exposed[names[i % len(names)]])
            for i in range(count)]  # fmt: skip


async def build_mixed_market(node: AnvilNode, count: int, fraction: float) -> Market:
    """Deploys the devnet (all four protocols), funds `count` borrowers and opens one position each."""
    started = time.monotonic()
    devnet = await deploy_devnet(node.http_url)
    slots = deal(count, fraction)
    async with DevnetActions(node.http_url, devnet) as actions:
        accounts = [str(a) for a in await actions.fund_accounts(count, label="benchmark")]
    openings = [slot._replace(account=account) for slot, account in zip(slots, accounts, strict=True)]
    art = _Artifacts(
        erc20=aave_artifact(ERC20), pool=aave_artifact(POOL), morpho=(await compile_morpho())["Morpho"],
        evault=(await compile_euler_contracts())["EVault"],
        evc=(await compile_euler_contracts())["EthereumVaultConnector"],
        c_token=(await compile_curvance_contracts())["BorrowableCToken"],
    )  # fmt: skip
    rpc = Rpc(node.http_url)
    try:
        await _top_up_morpho(rpc, devnet, art, openings)
        for start in range(0, count, _OPEN_BATCH):
            batch = openings[start : start + _OPEN_BATCH]
            plan = await TxPlan.for_senders(rpc, [o.account for o in batch])
            for opening in batch:
                _PLANNERS[opening.protocol](plan, devnet, art, opening)
            await execute(rpc, plan.txs)
    finally:
        await rpc.aclose()
    return Market(devnet=devnet, accounts=accounts, exposed=frozenset(i for i, o in enumerate(openings) if o.exposed),
                  setup_seconds=time.monotonic() - started, protocols=tuple(o.protocol for o in openings))  # fmt: skip


def morpho_market_of(exposed: bool) -> str:
    return f"{_collateral(exposed)[0]}/USDC"


def _collateral(exposed: bool) -> tuple[str, Decimal]:
    return _EXPOSED if exposed else _STEADY


def _units(devnet: Devnet, symbol: str, amount: Decimal | int) -> int:
    return int(Decimal(amount) * 10 ** devnet.aave_v3.reserves[symbol].decimals)


def _mint_and_approve(plan: TxPlan, art: _Artifacts, account: str, token: str, spender: str, units: int) -> None:
    plan.call(f"mint to {account}", account, token, art.erc20.calldata("mint(address,uint256)", account, units),
              gas=_TOKEN_GAS)  # fmt: skip
    plan.call(f"approve by {account}", account, token, art.erc20.calldata("approve", spender, units), gas=_TOKEN_GAS)


def _plan_aave(plan: TxPlan, devnet: Devnet, art: _Artifacts, o: Opening) -> None:
    """DevnetActions.open_positions' transactions: mint, approve, supply the collateral; borrow USDC variable."""
    symbol, amount = _collateral(o.exposed)
    pool, asset, units = devnet.aave_v3.pool, devnet.aave_v3.reserves[symbol].asset, _units(devnet, symbol, amount)
    _mint_and_approve(plan, art, o.account, asset, pool, units)
    plan.call(f"Aave supply by {o.account}", o.account, pool, art.pool.calldata("supply", asset, units, o.account, 0),
              gas=_AAVE_SUPPLY_GAS)  # fmt: skip
    usdc = devnet.aave_v3.reserves["USDC"].asset
    plan.call(f"Aave borrow by {o.account}", o.account, pool, art.pool.calldata(
        "borrow", usdc, _units(devnet, "USDC", BORROW_USDC), _VARIABLE_RATE, 0, o.account), gas=_AAVE_BORROW_GAS)  # fmt: skip


def _plan_morpho(plan: TxPlan, devnet: Devnet, art: _Artifacts, o: Opening) -> None:
    """MorphoActions.open_position's transactions: mint, approve, supplyCollateral, borrow."""
    assert devnet.morpho_blue is not None
    morpho, market = devnet.morpho_blue.morpho, devnet.morpho_blue.markets[morpho_market_of(o.exposed)]
    symbol, amount = _collateral(o.exposed)
    units = _units(devnet, symbol, amount)
    _mint_and_approve(plan, art, o.account, market.collateral_token, morpho, units)
    plan.call(f"Morpho supplyCollateral by {o.account}", o.account, morpho,
              art.morpho.calldata("supplyCollateral", market.params, units, o.account, b""), gas=_MORPHO_GAS)  # fmt: skip
    borrow = art.morpho.calldata("borrow", market.params, _units(devnet, "USDC", BORROW_USDC), 0, o.account, o.account)
    plan.call(f"Morpho borrow by {o.account}", o.account, morpho, borrow, gas=_MORPHO_GAS)


def _plan_euler(plan: TxPlan, devnet: Devnet, art: _Artifacts, o: Opening) -> None:
    """EulerActions.open_position's transactions (sub-account 0, the owner itself): mint, approve, deposit, enable
    the collateral and the controller, borrow."""
    assert devnet.euler_v2 is not None
    euler, account = devnet.euler_v2, Web3.to_checksum_address(o.account)
    symbol, amount = _collateral(o.exposed)
    vault, units = euler.vaults[symbol], _units(devnet, symbol, amount)
    _mint_and_approve(plan, art, account, devnet.aave_v3.reserves[symbol].asset, vault, units)
    plan.call(f"Euler deposit by {account}", account, vault, art.evault.calldata("deposit", units, account),
              gas=_EULER_ACTION_GAS)  # fmt: skip
    plan.call(f"Euler enableCollateral by {account}", account, euler.evc,
              art.evc.calldata("enableCollateral", account, vault), gas=_EULER_CALL_GAS)  # fmt: skip
    plan.call(f"Euler enableController by {account}", account, euler.evc,
              art.evc.calldata("enableController", account, euler.borrow_vault), gas=_EULER_CALL_GAS)  # fmt: skip
    plan.call(f"Euler borrow by {account}", account, euler.borrow_vault,
              art.evault.calldata("borrow", _units(devnet, "USDC", BORROW_USDC), account), gas=_EULER_ACTION_GAS)  # fmt: skip


def _plan_curvance(plan: TxPlan, devnet: Devnet, art: _Artifacts, o: Opening) -> None:
    """CurvanceActions.open_position's transactions: mint, approve, depositAsCollateral, borrow."""
    assert devnet.curvance is not None
    symbol, amount = _collateral(o.exposed)
    token, units = devnet.curvance.tokens[symbol], _units(devnet, symbol, amount)
    _mint_and_approve(plan, art, o.account, token.asset, token.c_token, units)
    plan.call(f"Curvance depositAsCollateral by {o.account}", o.account, token.c_token,
              art.c_token.calldata("depositAsCollateral", units, o.account), gas=_CURVANCE_GAS)  # fmt: skip
    plan.call(f"Curvance borrow by {o.account}", o.account, devnet.curvance.tokens["USDC"].c_token,
              art.c_token.calldata("borrow", _units(devnet, "USDC", BORROW_USDC), o.account), gas=_CURVANCE_GAS)  # fmt: skip


_PLANNERS: Final = {AAVE: _plan_aave, MORPHO: _plan_morpho, EULER: _plan_euler, CURVANCE: _plan_curvance}


async def _top_up_morpho(rpc: Rpc, devnet: Devnet, art: _Artifacts, openings: list[Opening]) -> None:
    """The lender supplies each Morpho market as much USDC as the benchmark's borrowers will take from it."""
    assert devnet.morpho_blue is not None
    wanted: dict[str, int] = {}
    for o in openings:
        if o.protocol == MORPHO:
            name = morpho_market_of(o.exposed)
            wanted[name] = wanted.get(name, 0) + _units(devnet, "USDC", BORROW_USDC)
    if not wanted:
        return
    lender = Web3.to_checksum_address((await rpc.call("eth_accounts"))[LIQUIDITY_ACCOUNT_INDEX])
    plan = await TxPlan.for_senders(rpc, [lender])
    morpho = devnet.morpho_blue.morpho
    for name, units in wanted.items():
        market = devnet.morpho_blue.markets[name]
        _mint_and_approve(plan, art, lender, market.loan_token, morpho, units)
        plan.call(f"supply {name} liquidity", lender, morpho,
                  art.morpho.calldata("supply", market.params, units, 0, lender, b""), gas=_MORPHO_GAS)  # fmt: skip
    await execute(rpc, plan.txs)
