// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @notice The reads a ScaledFeed takes from the feed it wraps; SettableFeed implements them.
interface IScaledSource {
    function decimals() external view returns (uint8);
    function latestAnswer() external view returns (int256);
    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80);
}

/// @title ScaledFeed (chainwatch devnet)
/// @notice The chainwatch project's own contract, written for tests and the local devnet. It is the hardest case
/// of a feed that transforms its source's answer (a unit conversion, a multiplier, a rate cap): it has the
/// Chainlink proxy's interface (`aggregator()`, `phaseId()`) but returns the wrapped answer times
/// `numerator / denominator`, so the wrapped feed's `AnswerUpdated` is not the price a protocol reading it gets.
/// A watcher must still follow it to the wrapped feed, and must never treat that feed's answers as this price.
contract ScaledFeed {
    IScaledSource private immutable _source;
    int256 public immutable numerator;
    int256 public immutable denominator;
    uint16 public constant phaseId = 1;

    constructor(address source_, int256 numerator_, int256 denominator_) {
        require(denominator_ > 0, "denominator must be positive");
        _source = IScaledSource(source_);
        numerator = numerator_;
        denominator = denominator_;
    }

    function aggregator() external view returns (address) {
        return address(_source);
    }

    function decimals() external view returns (uint8) {
        return _source.decimals();
    }

    function latestAnswer() external view returns (int256) {
        return _source.latestAnswer() * numerator / denominator;
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        (uint80 round, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredIn) = _source.latestRoundData();
        return (round, answer * numerator / denominator, startedAt, updatedAt, answeredIn);
    }
}
