"""From a `[[protocols]]` config entry to the module that knows that protocol."""

from __future__ import annotations

from chainwatch.config import AaveV3Config, CurvanceConfig, EulerV2Config, MorphoBlueConfig, ProtocolConfig
from chainwatch.protocols.base import LendingProtocol


def protocol_from_config(config: ProtocolConfig, *, log_range: int = 100) -> LendingProtocol:
    """`log_range`: blocks per eth_getLogs request of a discovery scan ([chain] max_log_range)."""
    # Each module is imported only when configured: a deployment watching one protocol loads one.
    match config:
        case AaveV3Config():
            from chainwatch.protocols.aave_v3 import AaveV3

            return AaveV3(config.name, config.pool_addresses_provider)
        case MorphoBlueConfig():
            from chainwatch.protocols.morpho_blue import MorphoBlue

            return MorphoBlue(config, log_range=log_range)
        case EulerV2Config():
            from chainwatch.protocols.euler_v2 import EulerV2

            return EulerV2(config, log_range=log_range)
        case CurvanceConfig():
            from chainwatch.protocols.curvance import Curvance

            return Curvance(config)
    raise AssertionError(f"no module for protocol kind {type(config).__name__}")  # config decoding rejects others
