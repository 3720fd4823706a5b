"""What every devnet module shares: the Anvil accounts' roles, the assets and their prices, Aave's artifacts.

Kept apart from deploy.py so that each protocol's devnet module can build on the Aave market while deploy.py
folds them all into one devnet without an import cycle.
"""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Annotated, Final, NamedTuple

import msgspec
from web3 import Web3

from chainwatch.devnet.artifacts import Artifact, load_hardhat_artifact
from chainwatch.devnet.solc import node_package

MULTICALL3_ADDRESS: Final = Web3.to_checksum_address("0xcA11bde05977b3631167028862bE2a173976CA11")
ADMIN_ACCOUNT_INDEX: Final = 0
LIQUIDITY_ACCOUNT_INDEX: Final = 9
FEED_DECIMALS: Final = 8

Address = Annotated[str, msgspec.Meta(pattern="^0x[0-9a-fA-F]{40}$")]


class AssetSpec(NamedTuple):
    symbol: str
    name: str
    decimals: int
    price_usd: Decimal
    ltv_bps: int
    liquidation_threshold_bps: int
    liquidation_bonus_bps: int
    liquidity: int  # whole tokens the liquidity account supplies
    behind_proxy: bool


ASSETS: Final = (
    AssetSpec("WETH", "Wrapped Ether", 18, Decimal(2000), 8000, 8500, 10500, 100_000, False),
    AssetSpec("WBTC", "Wrapped BTC", 8, Decimal(60000), 7000, 7500, 11000, 5_000, False),
    AssetSpec("USDC", "USD Coin", 6, Decimal(1), 8000, 8500, 10500, 200_000_000, True),
)


@functools.cache
def aave_artifact(qualified_name: str) -> Artifact:
    """An `@aave/core-v3` artifact by `contracts/...sol:Name`, the form its linkReferences use."""
    source, name = qualified_name.split(":")
    return load_hardhat_artifact(node_package("@aave/core-v3") / "artifacts" / source / f"{name}.json")


PROVIDER: Final = "contracts/protocol/configuration/PoolAddressesProvider.sol:PoolAddressesProvider"
ACL_MANAGER: Final = "contracts/protocol/configuration/ACLManager.sol:ACLManager"
POOL: Final = "contracts/protocol/pool/Pool.sol:Pool"
CONFIGURATOR: Final = "contracts/protocol/pool/PoolConfigurator.sol:PoolConfigurator"
DATA_PROVIDER: Final = "contracts/misc/AaveProtocolDataProvider.sol:AaveProtocolDataProvider"
ORACLE: Final = "contracts/misc/AaveOracle.sol:AaveOracle"
ERC20: Final = "contracts/mocks/tokens/MintableERC20.sol:MintableERC20"
ATOKEN: Final = "contracts/protocol/tokenization/AToken.sol:AToken"
STABLE_DEBT: Final = "contracts/protocol/tokenization/StableDebtToken.sol:StableDebtToken"
VARIABLE_DEBT: Final = "contracts/protocol/tokenization/VariableDebtToken.sol:VariableDebtToken"
RATE_STRATEGY: Final = (
    "contracts/protocol/pool/DefaultReserveInterestRateStrategy.sol:DefaultReserveInterestRateStrategy"
)
