// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IOracleAdaptor, IOracleManager, PricingResult} from "./Interfaces.sol";

/// @title OracleManager (chainwatch devnet)
/// @notice The chainwatch project's own contract reproducing Curvance's OracleManager interface for tests. Like
/// Curvance's, it prices an asset through up to two approved adaptors listed in `assetPriceFeeds(asset, i)`,
/// returns prices in 18 decimals with `getPrice(asset, inUSD, getLower) -> (price, errorCode)`, takes the lower
/// or the higher of two prices as asked, and reports error code 1 (caution: one of two feeds failed) or
/// 2 (no usable price). Divergence circuit breakers, cToken pricing and native-token conversion are not
/// modelled. Like Curvance's, it emits no event when an asset's feeds change.
contract OracleManager is IOracleManager {
    uint256 internal constant CAUTION = 1;
    uint256 internal constant BAD_SOURCE = 2;

    address public immutable admin;
    /// @notice Asset => the adaptors pricing it (at most two); the public getter is `assetPriceFeeds(asset, i)`.
    mapping(address => address[]) public assetPriceFeeds;

    error OracleManager__Unauthorized();
    error OracleManager__InvalidParameter();

    constructor() {
        admin = msg.sender;
    }

    function addAssetPriceFeed(address asset, address feed) external {
        if (msg.sender != admin) revert OracleManager__Unauthorized();
        if (assetPriceFeeds[asset].length >= 2) revert OracleManager__InvalidParameter();
        assetPriceFeeds[asset].push(feed);
    }

    function getPrice(address asset, bool inUSD, bool getLower)
        external
        view
        returns (uint256 price, uint256 errorCode)
    {
        address[] storage feeds = assetPriceFeeds[asset];
        uint256 priced;
        for (uint256 i = 0; i < feeds.length; ++i) {
            PricingResult memory result = IOracleAdaptor(feeds[i]).getPrice(asset, inUSD, getLower);
            if (result.hadError || result.inUSD != inUSD) {
                continue;
            }
            if (priced == 0 || (getLower ? result.price < price : result.price > price)) {
                price = result.price;
            }
            ++priced;
        }
        if (priced == 0) {
            return (0, BAD_SOURCE);
        }
        if (priced < feeds.length) {
            errorCode = CAUTION;
        }
    }
}
