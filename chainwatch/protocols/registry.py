"""From a `[[protocols]]` config entry to the module that knows that protocol."""

from __future__ import annotations

from chainwatch.config import AaveV3Config, ProtocolConfig
from chainwatch.protocols.aave_v3 import AaveV3
from chainwatch.protocols.base import LendingProtocol


def protocol_from_config(config: ProtocolConfig) -> LendingProtocol:
    match config:
        case AaveV3Config():
            return AaveV3(config.name, config.pool_addresses_provider)
    raise AssertionError(f"no module for protocol kind {type(config).__name__}")  # config decoding rejects others
