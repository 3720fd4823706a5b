// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @notice The reads a FeedProxy forwards; SettableFeed implements all of them.
interface IForwardedFeed {
    function decimals() external view returns (uint8);
    function description() external view returns (string memory);
    function version() external view returns (uint256);
    function latestAnswer() external view returns (int256);
    function latestRound() external view returns (uint256);
    function latestTimestamp() external view returns (uint256);
    function getAnswer(uint256 roundId) external view returns (int256);
    function getTimestamp(uint256 roundId) external view returns (uint256);
    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80);
    function getRoundData(uint80 roundId) external view returns (uint80, int256, uint256, uint256, uint80);
}

/// @title FeedProxy (chainwatch devnet)
/// @notice The chainwatch project's own contract, written for tests and the local devnet. It reproduces the
/// shape of a Chainlink `EACAggregatorProxy`: `aggregator()` names the underlying feed and the Chainlink reads
/// are forwarded to it. Like the real proxy it emits nothing when the price changes, so a watcher that
/// listens to the oracle source directly misses every update unless it follows `aggregator()`. Phases are
/// modelled as far as the watcher looks (`phaseId()` and `phaseAggregators()`, the proxy's current aggregator
/// counting one phase per confirmation); round ids are the aggregator's own, without the phase in their top bits.
contract FeedProxy {
    event AggregatorConfirmed(address indexed previous, address indexed latest);

    address public immutable owner;
    IForwardedFeed private _aggregator;
    uint16 public phaseId;
    mapping(uint16 => address) public phaseAggregators;

    constructor(address aggregator_) {
        owner = msg.sender;
        _setAggregator(aggregator_);
    }

    function _setAggregator(address aggregator_) private {
        _aggregator = IForwardedFeed(aggregator_);
        phaseId += 1;
        phaseAggregators[phaseId] = aggregator_;
    }

    function aggregator() external view returns (address) {
        return address(_aggregator);
    }

    /// @notice Swaps the underlying feed, as the real proxy's owner does (there after a proposal), announcing it
    /// with the real proxy's `AggregatorConfirmed` so a watcher can follow the new aggregator.
    function confirmAggregator(address aggregator_) external {
        require(msg.sender == owner, "Only callable by owner");
        address previous = address(_aggregator);
        _setAggregator(aggregator_);
        emit AggregatorConfirmed(previous, aggregator_);
    }

    function decimals() external view returns (uint8) {
        return _aggregator.decimals();
    }

    function description() external view returns (string memory) {
        return _aggregator.description();
    }

    function version() external view returns (uint256) {
        return _aggregator.version();
    }

    function latestAnswer() external view returns (int256) {
        return _aggregator.latestAnswer();
    }

    function latestRound() external view returns (uint256) {
        return _aggregator.latestRound();
    }

    function latestTimestamp() external view returns (uint256) {
        return _aggregator.latestTimestamp();
    }

    function getAnswer(uint256 roundId) external view returns (int256) {
        return _aggregator.getAnswer(roundId);
    }

    function getTimestamp(uint256 roundId) external view returns (uint256) {
        return _aggregator.getTimestamp(roundId);
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        return _aggregator.latestRoundData();
    }

    function getRoundData(uint80 roundId) external view returns (uint80, int256, uint256, uint256, uint80) {
        return _aggregator.getRoundData(roundId);
    }
}
