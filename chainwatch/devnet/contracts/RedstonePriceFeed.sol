// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

interface IRedstoneAdapter {
    function getValueForDataFeedAndLastBlockTimestamp(bytes32 dataFeedId)
        external
        view
        returns (uint256 value, uint256 dataTimestamp, uint128 blockTimestamp);
}

/// @title RedstonePriceFeed (chainwatch devnet)
/// @notice The chainwatch project's own contract, written for tests and the local devnet. It reproduces RedStone's
/// per-feed `PriceFeedWithoutRounds` as protocols see it: the Chainlink reads (decimals, description,
/// latestAnswer, latestRoundData) served from the shared adapter, and `getPriceFeedAdapter()` / `getDataFeedId()`
/// naming where its updates are announced. Like the real one it emits nothing.
contract RedstonePriceFeed {
    IRedstoneAdapter private immutable _adapter;
    bytes32 private immutable _dataFeedId;
    uint8 public constant decimals = 8;
    string public description;
    uint256 public constant version = 1;

    constructor(IRedstoneAdapter adapter_, bytes32 dataFeedId_, string memory description_) {
        _adapter = adapter_;
        _dataFeedId = dataFeedId_;
        description = description_;
    }

    function getPriceFeedAdapter() external view returns (IRedstoneAdapter) {
        return _adapter;
    }

    function getDataFeedId() external view returns (bytes32) {
        return _dataFeedId;
    }

    function latestAnswer() public view returns (int256) {
        (uint256 value,,) = _adapter.getValueForDataFeedAndLastBlockTimestamp(_dataFeedId);
        return int256(value);
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        (uint256 value, uint256 at,) = _adapter.getValueForDataFeedAndLastBlockTimestamp(_dataFeedId);
        return (1, int256(value), at, at, 1); // without rounds: RedStone's feeds answer round 1
    }
}
