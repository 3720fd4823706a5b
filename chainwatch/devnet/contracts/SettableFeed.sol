// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title SettableFeed (chainwatch devnet)
/// @notice The chainwatch project's own contract, written for tests and the local devnet. It reproduces a
/// Chainlink aggregator as AaveOracle and the watcher see it: `AggregatorV3Interface` (decimals, description,
/// version, latestRoundData, getRoundData), the legacy `AggregatorInterface` reads that AaveOracle actually
/// calls (latestAnswer, latestRound, latestTimestamp, getAnswer, getTimestamp), and Chainlink's
/// `AnswerUpdated` / `NewRound` events. Chainlink's own MockV3Aggregator emits no event, which is why the
/// project needs this one. Anyone may update the answer: it is a test contract.
contract SettableFeed {
    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);
    event NewRound(uint256 indexed roundId, address indexed startedBy, uint256 startedAt);

    struct Round {
        int256 answer;
        uint256 startedAt;
        uint256 updatedAt;
    }

    uint8 public immutable decimals;
    string public description;
    uint256 public constant version = 4;

    uint80 private _latestRound;
    mapping(uint256 => Round) private _rounds;

    constructor(uint8 decimals_, string memory description_, int256 initialAnswer) {
        decimals = decimals_;
        description = description_;
        updateAnswer(initialAnswer);
    }

    /// @notice Starts and completes a new round in one step, emitting both events a Chainlink aggregator emits.
    function updateAnswer(int256 answer) public returns (uint80 roundId) {
        roundId = _latestRound + 1;
        _latestRound = roundId;
        _rounds[roundId] = Round({answer: answer, startedAt: block.timestamp, updatedAt: block.timestamp});
        emit NewRound(roundId, msg.sender, block.timestamp);
        emit AnswerUpdated(answer, roundId, block.timestamp);
    }

    function latestAnswer() external view returns (int256) {
        return _rounds[_latestRound].answer;
    }

    function latestRound() external view returns (uint256) {
        return _latestRound;
    }

    function latestTimestamp() external view returns (uint256) {
        return _rounds[_latestRound].updatedAt;
    }

    function getAnswer(uint256 roundId) external view returns (int256) {
        return _rounds[roundId].answer;
    }

    function getTimestamp(uint256 roundId) external view returns (uint256) {
        return _rounds[roundId].updatedAt;
    }

    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        return _roundData(_latestRound);
    }

    function getRoundData(uint80 roundId)
        external
        view
        returns (uint80, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        return _roundData(roundId);
    }

    function _roundData(uint80 roundId) private view returns (uint80, int256, uint256, uint256, uint80) {
        Round storage round = _rounds[roundId];
        // Chainlink reverts for unknown rounds rather than returning zeros; consumers rely on that.
        require(round.updatedAt > 0, "No data present");
        return (roundId, round.answer, round.startedAt, round.updatedAt, roundId);
    }
}
