// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title RedstoneMultiFeedAdapter (chainwatch devnet)
/// @notice The chainwatch project's own contract, written for tests and the local devnet. It reproduces what a
/// watcher sees of RedStone's shared `MultiFeedAdapterWithoutRounds`: one contract holding many data feeds, each
/// update announced by `ValueUpdate(uint256 value, bytes32 dataFeedId, uint256 updatedAt)` with nothing indexed,
/// and the read `getValueForDataFeedAndLastBlockTimestamp`. RedStone's signed-payload update is replaced by a plain
/// setter (anyone may call it: it is a test contract).
contract RedstoneMultiFeedAdapter {
    event ValueUpdate(uint256 value, bytes32 dataFeedId, uint256 updatedAt);

    struct DataFeed {
        uint256 value;
        uint256 updatedAt;
        uint256 blockTimestamp;
    }

    mapping(bytes32 => DataFeed) private _feeds;

    function setValue(bytes32 dataFeedId, uint256 value) external {
        _feeds[dataFeedId] = DataFeed({value: value, updatedAt: block.timestamp, blockTimestamp: block.timestamp});
        emit ValueUpdate(value, dataFeedId, block.timestamp);
    }

    function getValueForDataFeed(bytes32 dataFeedId) public view returns (uint256) {
        require(_feeds[dataFeedId].blockTimestamp > 0, "DataFeedValueCannotBeZero");
        return _feeds[dataFeedId].value;
    }

    function getValueForDataFeedAndLastBlockTimestamp(bytes32 dataFeedId)
        external
        view
        returns (uint256 value, uint256 dataTimestamp, uint128 blockTimestamp)
    {
        DataFeed storage feed = _feeds[dataFeedId];
        return (getValueForDataFeed(dataFeedId), feed.updatedAt, uint128(feed.blockTimestamp));
    }
}
