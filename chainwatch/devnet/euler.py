"""Euler v2 on the devnet: the project's own EVC, EVaults, EulerRouter and Chainlink adapters, deployed on top of
the Aave devnet so that its tokens and settable feeds move every protocol at once.

One USDC vault lends (the controller) against WETH and WBTC vaults (collateral), priced in USD (ISO 4217 code 840
as an address, Euler's convention) through a router whose adapters read the same feeds as Aave's oracle. The
contracts are compiled from `contracts/euler/` with the pinned solc-js and cached like the other own contracts.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Final

import msgspec
from eth_abi import decode
from eth_typing import ChecksumAddress
from web3 import Web3

from chainwatch.devnet.artifacts import Artifact
from chainwatch.devnet.common import ADMIN_ACCOUNT_INDEX, ERC20, LIQUIDITY_ACCOUNT_INDEX, aave_artifact
from chainwatch.devnet.solc import CONTRACTS_DIR, compile_cached, sources_in
from chainwatch.devnet.transactions import Rpc, TxPlan, execute

if TYPE_CHECKING:  # deploy.py imports this module to fold it into the devnet
    from chainwatch.devnet.deploy import Devnet

CONTRACTS: Final = ("EthereumVaultConnector", "EVault", "EulerRouter", "EulerChainlinkOracle")
SOURCES_DIR: Final = CONTRACTS_DIR / "euler"
USD: Final = Web3.to_checksum_address(f"0x{840:040x}")
BORROW_SYMBOL: Final = "USDC"
COLLATERALS: Final = {"WETH": (8000, 8500), "WBTC": (7000, 7500)}  # symbol -> (borrow LTV, liquidation LTV), 1e4
# 10% a year as a constant per-second rate in ray: a year's time warp raises every debt by a tenth.
BORROW_RATE_PER_SECOND: Final = 10**27 // 10 // (365 * 24 * 3600)
LIQUIDATION_DISCOUNT: Final = 1500  # 15%, 1e4 scale
LIQUIDITY_USDC: Final = 10_000_000
_MAX_UINT256: Final = 2**256 - 1
# Measured on the devnet (EVault ~2.6M, the others below 1M); smaller limits let more transactions share a block.
_GAS: Final = {"EthereumVaultConnector": 1_500_000, "EVault": 4_000_000, "EulerRouter": 1_500_000,
               "EulerChainlinkOracle": 800_000}  # fmt: skip
_CALL_GAS: Final = 300_000
_ACTION_GAS: Final = 600_000
_ARTIFACTS: Final = msgspec.json.Decoder(dict[str, Artifact])

Address = Annotated[str, msgspec.Meta(pattern="^0x[0-9a-fA-F]{40}$")]
Amount = Decimal | int | float


class EulerV2Devnet(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The deployed Euler v2 contracts; vaults and adapters by their underlying's symbol."""

    evc: Address
    router: Address
    unit_of_account: Address
    borrow_vault: Address  # the USDC vault: the controller accepting the other vaults as collateral
    vaults: dict[str, Address]
    adapters: dict[str, Address]

    def __post_init__(self) -> None:
        addresses = [self.evc, self.router, self.unit_of_account, self.borrow_vault, *self.vaults.values(),
                     *self.adapters.values()]  # fmt: skip
        for address in addresses:
            if not Web3.is_checksum_address(address):
                raise ValueError(f"address {address} is not checksummed")


async def compile_euler_contracts() -> dict[str, Artifact]:
    """ABI and bytecode of each contract in `contracts/euler/`, from the solc cache when the sources are unchanged."""
    return await compile_cached("euler", sources_in(SOURCES_DIR, "euler/"), {name: f"euler/{name}.sol" for name in CONTRACTS})


async def deploy_euler_v2(http_url: str, devnet: Devnet) -> EulerV2Devnet:
    """Deploy Euler v2 onto the Anvil at `http_url`, over the already deployed Aave `devnet`, in one burst.

    Account 0 governs (router, LTVs); account 9 supplies the USDC the vault lends.
    """
    art = await compile_euler_contracts()
    rpc = Rpc(http_url)
    try:
        accounts = [Web3.to_checksum_address(a) for a in await rpc.call("eth_accounts")]
        admin, lender = accounts[ADMIN_ACCOUNT_INDEX], accounts[LIQUIDITY_ACCOUNT_INDEX]
        plan = await TxPlan.for_senders(rpc, [admin, lender])

        def deploy(name: str, *args: object, what: str) -> ChecksumAddress:
            return plan.deploy(f"deploy {what}", admin, art[name].creation_code(*args), gas=_GAS[name])

        def call(action: str, sender: str, to: str, artifact: Artifact, function: str, *args: object) -> None:
            plan.call(action, sender, to, artifact.calldata(function, *args), gas=_CALL_GAS)

        evc = deploy("EthereumVaultConnector", what="EVC")
        router = deploy("EulerRouter", admin, what="EulerRouter")
        vaults: dict[str, ChecksumAddress] = {}
        adapters: dict[str, ChecksumAddress] = {}
        for symbol in (BORROW_SYMBOL, *COLLATERALS):
            reserve = devnet.aave_v3.reserves[symbol]
            # The adapter reads the oracle source Aave uses (USDC's is a proxy), so the watcher must follow it.
            adapters[symbol] = deploy("EulerChainlinkOracle", reserve.asset, USD, reserve.feed, 0,
                                      what=f"{symbol} adapter")  # fmt: skip
            call(f"route {symbol}/USD", admin, router, art["EulerRouter"], "govSetConfig", reserve.asset, USD,
                 adapters[symbol])  # fmt: skip
            rate = BORROW_RATE_PER_SECOND if symbol == BORROW_SYMBOL else 0
            vaults[symbol] = deploy("EVault", evc, reserve.asset, router, USD, f"EVK Vault e{symbol}-1", f"e{symbol}-1",
                                    rate, LIQUIDATION_DISCOUNT, what=f"e{symbol} vault")  # fmt: skip
            call(f"resolve e{symbol} shares", admin, router, art["EulerRouter"], "govSetResolvedVault",
                 vaults[symbol], True)  # fmt: skip
        borrow_vault = vaults[BORROW_SYMBOL]
        for symbol, (borrow_ltv, liquidation_ltv) in COLLATERALS.items():
            call(f"set LTV of e{symbol}", admin, borrow_vault, art["EVault"], "setLTV", vaults[symbol], borrow_ltv,
                 liquidation_ltv, 0)  # fmt: skip
        usdc, erc20 = devnet.aave_v3.reserves[BORROW_SYMBOL], aave_artifact(ERC20)
        units = LIQUIDITY_USDC * 10**usdc.decimals
        call("mint USDC liquidity", lender, usdc.asset, erc20, "mint(address,uint256)", lender, units)
        call("approve USDC liquidity", lender, usdc.asset, erc20, "approve", borrow_vault, units)
        call("deposit USDC liquidity", lender, borrow_vault, art["EVault"], "deposit", units, lender)
        await execute(rpc, plan.txs)
    finally:
        await rpc.aclose()
    return EulerV2Devnet(evc=evc, router=router, unit_of_account=USD, borrow_vault=borrow_vault, vaults=vaults,
                         adapters=adapters)  # fmt: skip


def sub_account(owner: str, sub_id: int) -> ChecksumAddress:
    """The EVC sub-account `sub_id` (0-255) of `owner`: the owner's address with its last byte XOR-ed by the id."""
    if not 0 <= sub_id < 256:
        raise ValueError(f"sub-account id {sub_id} is not in 0..255")
    return Web3.to_checksum_address(f"0x{int(owner, 16) ^ sub_id:040x}")


class EulerActions:
    """Users' transactions on the devnet's Euler v2; each returns the block of its last transaction."""

    def __init__(self, http_url: str, devnet: Devnet, euler: EulerV2Devnet) -> None:
        self.devnet, self.euler = devnet, euler
        self._rpc = Rpc(http_url)

    async def aclose(self) -> None:
        await self._rpc.aclose()

    async def open_position(self, owner: str, *, collateral: Mapping[str, Amount], borrow: Amount,
                            sub_id: int = 0) -> int:  # fmt: skip
        """The owner mints and deposits each collateral into sub-account `sub_id`, enables the vaults, borrows USDC."""
        art = await compile_euler_contracts()
        owner = Web3.to_checksum_address(owner)
        plan = await TxPlan.for_senders(self._rpc, [owner])
        self._plan_collateral(plan, art, owner, sub_account(owner, sub_id), collateral)
        self._plan_borrow(plan, art, owner, sub_id, borrow)
        return await self._run(plan)

    async def liquidate(self, liquidator: str, violator: str, *, seize: str, deposit: Mapping[str, Amount]) -> int:
        """The liquidator backs itself with `deposit`, takes over all of the violator's debt and seizes `seize`."""
        art = await compile_euler_contracts()
        liquidator = Web3.to_checksum_address(liquidator)
        plan = await TxPlan.for_senders(self._rpc, [liquidator])
        self._plan_collateral(plan, art, liquidator, liquidator, deposit)
        data = art["EVault"].calldata("liquidate", Web3.to_checksum_address(violator), self.euler.vaults[seize],
                                      _MAX_UINT256, 0)  # fmt: skip
        plan.call(f"liquidate {violator}", liquidator, self.euler.borrow_vault, data, gas=_ACTION_GAS)
        return await self._run(plan)

    def _plan_collateral(self, plan: TxPlan, art: dict[str, Artifact], owner: str, account: str,
                         collateral: Mapping[str, Amount]) -> None:  # fmt: skip
        """Deposits from the owner's wallet into `account`, enabled as collateral; the borrow vault as controller."""
        erc20, evc = aave_artifact(ERC20), art["EthereumVaultConnector"]
        for symbol, amount in collateral.items():
            token, vault = self.devnet.aave_v3.reserves[symbol].asset, self.euler.vaults[symbol]
            units = self._units(symbol, amount)
            plan.call(f"mint {symbol}", owner, token, erc20.calldata("mint(address,uint256)", owner, units),
                      gas=_CALL_GAS)  # fmt: skip
            plan.call(f"approve {symbol}", owner, token, erc20.calldata("approve", vault, units), gas=_CALL_GAS)
            plan.call(f"deposit {symbol} for {account}", owner, vault,
                      art["EVault"].calldata("deposit", units, account), gas=_ACTION_GAS)  # fmt: skip
            plan.call(f"enable e{symbol} as collateral of {account}", owner, self.euler.evc,
                      evc.calldata("enableCollateral", account, vault), gas=_CALL_GAS)  # fmt: skip
        plan.call(f"enable controller of {account}", owner, self.euler.evc,
                  evc.calldata("enableController", account, self.euler.borrow_vault), gas=_CALL_GAS)  # fmt: skip

    async def borrow(self, owner: str, amount: Amount, *, sub_id: int = 0) -> int:
        """Borrow more USDC into the owner's wallet, against sub-account `sub_id`."""
        art = await compile_euler_contracts()
        owner = Web3.to_checksum_address(owner)
        plan = await TxPlan.for_senders(self._rpc, [owner])
        self._plan_borrow(plan, art, owner, sub_id, amount)
        return await self._run(plan)

    async def repay(self, owner: str, amount: Amount, *, sub_id: int = 0) -> int:
        """The owner mints `amount` USDC and repays it on sub-account `sub_id`'s debt (the vault's own `repay`)."""
        art = await compile_euler_contracts()
        owner = Web3.to_checksum_address(owner)
        vault, token = self.euler.borrow_vault, self.devnet.aave_v3.reserves[BORROW_SYMBOL].asset
        units, erc20 = self._units(BORROW_SYMBOL, amount), aave_artifact(ERC20)
        plan = await TxPlan.for_senders(self._rpc, [owner])
        plan.call("mint USDC to repay", owner, token, erc20.calldata("mint(address,uint256)", owner, units), gas=_CALL_GAS)
        plan.call("approve USDC to repay", owner, token, erc20.calldata("approve", vault, units), gas=_CALL_GAS)
        # The payer is the owner's wallet; the debt repaid is the sub-account's (the `receiver` argument).
        plan.call(f"repay {amount} USDC", owner, vault,
                  art["EVault"].calldata("repay", units, sub_account(owner, sub_id)), gas=_ACTION_GAS)  # fmt: skip
        return await self._run(plan)

    async def account_liquidity(self, account: str, block: int | str = "latest") -> tuple[int, int]:
        """The borrow vault's own `accountLiquidity(account, true)`: (collateral value, liability value), 1e18 USD."""
        art = await compile_euler_contracts()
        data = art["EVault"].calldata("accountLiquidity", Web3.to_checksum_address(account), True)
        tag = block if isinstance(block, str) else hex(block)
        raw: str = await self._rpc.call("eth_call", {"to": self.euler.borrow_vault, "data": data}, tag)
        collateral, liability = decode(["uint256", "uint256"], bytes.fromhex(raw.removeprefix("0x")))
        return collateral, liability

    def _plan_borrow(self, plan: TxPlan, art: dict[str, Artifact], owner: str, sub_id: int, amount: Amount) -> None:
        vault, units = self.euler.borrow_vault, self._units(BORROW_SYMBOL, amount)
        borrow = art["EVault"].calldata("borrow", units, owner)
        if sub_id == 0:
            plan.call(f"borrow {amount} USDC", owner, vault, borrow, gas=_ACTION_GAS)
            return
        # A sub-account has no key: its owner acts for it through the EVC, as Euler's own front end does.
        account = sub_account(owner, sub_id)
        call = art["EthereumVaultConnector"].calldata("call", vault, account, 0, bytes.fromhex(borrow[2:]))
        plan.call(f"borrow {amount} USDC for {account}", owner, self.euler.evc, call, gas=_ACTION_GAS)

    async def _run(self, plan: TxPlan) -> int:
        receipts = await execute(self._rpc, plan.txs)
        return max(int(r["blockNumber"], 16) for r in receipts)

    def _units(self, symbol: str, amount: Amount) -> int:
        scaled = Decimal(str(amount)) * 10 ** self.devnet.aave_v3.reserves[symbol].decimals
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{amount} {symbol} has more decimals than the token")
        return int(scaled)
