// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @notice The chainwatch project's own interfaces for its Euler v2 test contracts (EVC, EVault, EulerRouter,
/// Chainlink adapter). Only the functions these contracts call on each other; each name and signature is the one
/// the real contract uses, so the test contracts talk to each other exactly as the real ones do.

interface IERC20Min {
    function decimals() external view returns (uint8);
    function balanceOf(address account) external view returns (uint256);
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

interface IERC4626Min {
    function asset() external view returns (address);
    function convertToAssets(uint256 shares) external view returns (uint256);
}

/// @notice Euler's IPriceOracle: how much `quote` is worth `inAmount` of `base` (getQuotes: bid and ask).
interface IPriceOracle {
    function getQuote(uint256 inAmount, address base, address quote) external view returns (uint256);
    function getQuotes(uint256 inAmount, address base, address quote) external view returns (uint256, uint256);
}

/// @notice The part of the Ethereum Vault Connector a vault uses.
interface IEVCMin {
    function getControllers(address account) external view returns (address[] memory);
    function getCollaterals(address account) external view returns (address[] memory);
    function isControllerEnabled(address account, address vault) external view returns (bool);
    function isCollateralEnabled(address account, address vault) external view returns (bool);
    function getCurrentOnBehalfOfAccount(address controllerToCheck) external view returns (address, bool);
    function disableController(address account) external payable;
    function requireAccountStatusCheck(address account) external payable;
    function controlCollateral(address targetCollateral, address onBehalfOfAccount, uint256 value, bytes calldata data)
        external
        payable
        returns (bytes memory);
}

/// @notice The EVC's view of a controller vault (ethereum-vault-connector `IVault`).
interface IControllerVault {
    function checkAccountStatus(address account, address[] calldata collaterals) external returns (bytes4);
}

interface IChainlinkFeed {
    function decimals() external view returns (uint8);
    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80);
}
