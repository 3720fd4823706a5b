// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @notice The Chainlink reads the aggregator needs from each part; SettableFeed and FeedProxy implement them.
interface IRatioPart {
    function decimals() external view returns (uint8);
    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80);
}

/// @title RatioOracleAggregator (chainwatch devnet)
/// @notice The chainwatch project's own contract, written for tests and the local devnet. It reproduces the kind
/// of composite feed Neverland prices liquid-staking tokens with: an exchange-rate feed (`ratioFeed`, e.g.
/// sMON/MON) times a base feed (`baseFeed`, e.g. MON/USD), read through the Chainlink interface AaveOracle calls
/// (latestAnswer, latestRoundData, decimals). It emits nothing itself: either part's update moves the price. The
/// getter names are this devnet's; it is not a copy of Neverland's source.
contract RatioOracleAggregator {
    IRatioPart public immutable ratioFeed;
    IRatioPart public immutable baseFeed;
    uint8 public immutable decimals;
    string public description;
    uint256 public constant version = 1;

    constructor(IRatioPart ratioFeed_, IRatioPart baseFeed_, string memory description_) {
        ratioFeed = ratioFeed_;
        baseFeed = baseFeed_;
        decimals = baseFeed_.decimals();
        description = description_;
    }

    function latestAnswer() public view returns (int256) {
        (, int256 ratio,,,) = ratioFeed.latestRoundData();
        (, int256 base,,,) = baseFeed.latestRoundData();
        return ratio * base / int256(10 ** ratioFeed.decimals());
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        (,,, uint256 ratioAt,) = ratioFeed.latestRoundData();
        (uint80 round,,, uint256 baseAt,) = baseFeed.latestRoundData();
        uint256 updatedAt = ratioAt < baseAt ? ratioAt : baseAt; // as fresh as its stalest part
        return (round, latestAnswer(), updatedAt, updatedAt, round);
    }
}
