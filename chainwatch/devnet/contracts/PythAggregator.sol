// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

interface IPythReads {
    struct Price {
        int64 price;
        uint64 conf;
        int32 expo;
        uint256 publishTime;
    }

    function getPriceUnsafe(bytes32 id) external view returns (Price memory);
}

/// @title PythAggregator (chainwatch devnet)
/// @notice The chainwatch project's own contract, written for tests and the local devnet. It reproduces the
/// shape of Pyth's `PythAggregatorV3` adapter, the Chainlink-shaped wrapper an Aave oracle source (or an Euler
/// Chainlink adapter) reads: `pyth()`, `priceId()`, decimals, latestAnswer, latestRoundData. It emits nothing; the
/// Pyth contract does. Prices are rescaled to 8 decimals (the devnet's feeds' scale).
contract PythAggregator {
    IPythReads public immutable pyth;
    bytes32 public immutable priceId;
    uint8 public constant decimals = 8;
    uint256 public constant version = 1;

    constructor(IPythReads pyth_, bytes32 priceId_) {
        pyth = pyth_;
        priceId = priceId_;
    }

    function latestAnswer() public view returns (int256) {
        IPythReads.Price memory p = pyth.getPriceUnsafe(priceId);
        int256 exponent = int256(p.expo) + 8;
        return exponent >= 0 ? int256(p.price) * int256(10 ** uint256(exponent)) : int256(p.price) / int256(10 ** uint256(-exponent));
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        uint256 at = pyth.getPriceUnsafe(priceId).publishTime;
        return (uint80(at), latestAnswer(), at, at, uint80(at));
    }
}
