// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

import {IIrm} from "@morpho-org/morpho-blue/src/interfaces/IIrm.sol";
import {MarketParams, Market} from "@morpho-org/morpho-blue/src/interfaces/IMorpho.sol";

/// @title FixedRateIrm (chainwatch devnet)
/// @notice The chainwatch project's own contract, written for tests and the local devnet. It implements Morpho
/// Blue's `IIrm` (borrowRate, borrowRateView: a per-second rate scaled by 1e18) with one constant rate whatever
/// the market's utilisation. Morpho's IrmMock charges a rate equal to utilisation, which on the devnet's deep
/// liquidity is close to zero; a fixed rate makes interest accrue at a known pace, so tests can predict how far
/// a year of accrual moves a borrower's health with no transaction at all.
contract FixedRateIrm is IIrm {
    uint256 public immutable RATE_PER_SECOND;

    constructor(uint256 ratePerSecond) {
        RATE_PER_SECOND = ratePerSecond;
    }

    function borrowRate(MarketParams memory, Market memory) external view returns (uint256) {
        return RATE_PER_SECOND;
    }

    function borrowRateView(MarketParams memory, Market memory) external view returns (uint256) {
        return RATE_PER_SECOND;
    }
}
