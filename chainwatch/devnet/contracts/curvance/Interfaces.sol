// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title Curvance interfaces (chainwatch devnet)
/// @notice Part of the chainwatch project's own contracts reproducing Curvance's interface for tests: the types
/// and interfaces the project's MarketManager, BorrowableCToken, OracleManager, ChainlinkAdaptor and
/// ProtocolReader use to talk to each other. Public signatures follow Curvance's published ABIs
/// (curvance-web/contract-sdk); the hooks between cToken and manager (`updatePosition`, `requireHealthy`,
/// `isLiquidatable`, `liquidationValuesOf`) are the project's own simplification of Curvance's `can*` checks.

interface IERC20Like {
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
    function decimals() external view returns (uint8);
    function symbol() external view returns (string memory);
}

/// @notice The two reads the adaptor needs from a Chainlink aggregator or proxy.
interface IChainlinkFeed {
    function decimals() external view returns (uint8);
    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80);
}

/// @notice What an oracle adaptor returns for one asset, as Curvance's `IOracleAdaptor.PricingResult`.
struct PricingResult {
    uint256 price;
    bool inUSD;
    bool hadError;
}

interface IOracleAdaptor {
    function getPrice(address asset, bool inUSD, bool getLower) external view returns (PricingResult memory);
}

interface IOracleManager {
    function getPrice(address asset, bool inUSD, bool getLower) external view returns (uint256, uint256);
}

/// @notice One account's position in one cToken, in the layout of Curvance's `AccountSnapshot`.
struct AccountSnapshot {
    address asset;
    address underlying;
    uint8 decimals;
    bool isCollateral;
    uint256 collateralPosted;
    uint256 debtBalance;
}

interface ICToken {
    function asset() external view returns (address);
    function marketManager() external view returns (address);
    function decimals() external view returns (uint8);
    function collateralPosted(address account) external view returns (uint256);
    function debtBalance(address account) external view returns (uint256);
    function exchangeRate() external view returns (uint256);
    function accrueIfNeeded() external;
    function seize(uint256[] calldata liquidatedShares, address liquidator, address[] calldata accounts) external;
}

interface IMarketManager {
    function oracleManager() external view returns (IOracleManager);
    function isListed(address cToken) external view returns (bool);
    function statusOf(address account) external returns (uint256, uint256, uint256);
    function liquidationValuesOf(address account) external view returns (uint256, uint256, uint256);
    function isLiquidatable(address account) external view returns (bool);
    function requireHealthy(address account) external view;
    function updatePosition(address account) external;
}
