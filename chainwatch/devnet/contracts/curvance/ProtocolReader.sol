// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IMarketManager} from "./Interfaces.sol";

/// @title ProtocolReader (chainwatch devnet)
/// @notice The chainwatch project's own contract reproducing, for tests, the one read of Curvance's
/// ProtocolReader that gives a position-health figure:
/// `getPositionHealth(mm, account, cToken, borrowableCToken, isDeposit, collateralAssets, isRepayment,
/// debtAssets, bufferTime) -> (positionHealth, errorCodeHit)`. Health is `cSoft * 1e18 / debt`, the soft
/// liquidation line over the debt, from the manager's `liquidationValuesOf` (`type(uint256).max` with no debt);
/// `errorCodeHit` is true when the manager cannot price the account. The auction buffer is not modelled. Hypothetical deposits, repayments and borrows are not modelled: they must be zero.
contract ProtocolReader {
    error ProtocolReader__HypotheticalNotModelled();

    function getPositionHealth(
        IMarketManager mm,
        address account,
        address cToken,
        address borrowableCToken,
        bool, /* isDeposit */
        uint256 collateralAssets,
        bool, /* isRepayment */
        uint256 debtAssets,
        uint256 /* bufferTime */
    ) external view returns (uint256 positionHealth, bool errorCodeHit) {
        if (cToken != address(0) || borrowableCToken != address(0) || collateralAssets != 0 || debtAssets != 0) {
            revert ProtocolReader__HypotheticalNotModelled();
        }
        try mm.liquidationValuesOf(account) returns (uint256 cSoft, uint256, uint256 debt) {
            positionHealth = debt == 0 ? type(uint256).max : (cSoft * 1e18) / debt;
        } catch {
            errorCodeHit = true;
        }
    }
}
