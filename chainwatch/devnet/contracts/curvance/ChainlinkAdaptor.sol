// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IChainlinkFeed, IOracleAdaptor, PricingResult} from "./Interfaces.sol";

/// @title ChainlinkAdaptor (chainwatch devnet)
/// @notice The chainwatch project's own contract reproducing Curvance's ChainlinkAdaptor interface for tests.
/// The feed behind an asset is public as in Curvance's adaptor: `assetConfig(asset, inUSD)` returns
/// `(isConfigured, aggregator, decimals, heartbeat, reportedMax, reportedMin, max, min)`, where `aggregator` is
/// the address given to `addAsset` (a Chainlink proxy or a bare aggregator); adding an asset emits
/// `ChainlinkAssetAdded(asset, config, isUpdate)`. Prices are the feed's latest answer scaled to 18 decimals.
/// There is deliberately no staleness (heartbeat) check: tests warp time by a year to accrue interest, and
/// the devnet's prices must stay usable across such a warp.
contract ChainlinkAdaptor is IOracleAdaptor {
    struct AssetConfig {
        bool isConfigured;
        address aggregator;
        uint256 decimals;
        uint256 heartbeat;
        uint256 reportedMax;
        uint256 reportedMin;
        uint256 max;
        uint256 min;
    }

    uint256 public constant DEFAULT_HEART_BEAT = 1 days;

    address public immutable admin;
    /// @notice Asset => inUSD => how the asset is priced.
    mapping(address => mapping(bool => AssetConfig)) public assetConfig;
    mapping(address => bool) public isSupportedAsset;

    event ChainlinkAssetAdded(address asset, AssetConfig assetConfig, bool isUpdate);

    error ChainlinkAdaptor__Unauthorized();
    error ChainlinkAdaptor__InvalidHeartbeat();

    constructor() {
        admin = msg.sender;
    }

    function addAsset(address asset, address aggregator, uint256 heartbeat, bool inUSD) external {
        if (msg.sender != admin) revert ChainlinkAdaptor__Unauthorized();
        if (heartbeat > DEFAULT_HEART_BEAT) revert ChainlinkAdaptor__InvalidHeartbeat();
        AssetConfig storage config = assetConfig[asset][inUSD];
        config.isConfigured = true;
        config.aggregator = aggregator;
        config.decimals = IChainlinkFeed(aggregator).decimals();
        config.heartbeat = heartbeat == 0 ? DEFAULT_HEART_BEAT : heartbeat;
        config.reportedMax = type(uint192).max;
        config.max = type(uint240).max;
        bool isUpdate = isSupportedAsset[asset];
        isSupportedAsset[asset] = true;
        emit ChainlinkAssetAdded(asset, config, isUpdate);
    }

    function adaptorType() external pure returns (uint256) {
        return 3;
    }

    function getPrice(address asset, bool inUSD, bool) external view returns (PricingResult memory result) {
        AssetConfig storage config = assetConfig[asset][inUSD];
        result.inUSD = inUSD;
        if (!config.isConfigured) {
            result.hadError = true;
            return result;
        }
        (, int256 answer,,,) = IChainlinkFeed(config.aggregator).latestRoundData();
        if (answer <= 0 || uint256(answer) >= config.reportedMax) {
            result.hadError = true;
            return result;
        }
        result.price = (uint256(answer) * 1e18) / 10 ** config.decimals;
    }
}
