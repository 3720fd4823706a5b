// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IChainlinkFeed, IERC20Min, IPriceOracle} from "./Interfaces.sol";

/// @title EulerChainlinkOracle (chainwatch devnet)
/// @notice The chainwatch project's own contract, written for tests and the local devnet. It reproduces the
/// interface of Euler's `ChainlinkOracle` adapter (euler-price-oracle): `base()`, `quote()`, `feed()`,
/// `maxStaleness()` and `getQuote`/`getQuotes` in both directions of the pair, scaling by the decimals of base,
/// quote (18 for a non-token such as USD's ISO 4217 address 840) and feed. `maxStaleness` zero turns the
/// staleness check off, which the devnet needs because its tests warp time by a year.
contract EulerChainlinkOracle is IPriceOracle {
    error PriceOracle_NotSupported(address base, address quote);
    error PriceOracle_InvalidAnswer();
    error PriceOracle_TooStale(uint256 staleness, uint256 maxStaleness);

    string public constant name = "ChainlinkOracle";
    address public immutable base;
    address public immutable quote;
    address public immutable feed;
    uint256 public immutable maxStaleness;
    uint256 private immutable _baseUnit;
    uint256 private immutable _quoteUnit;
    uint256 private immutable _feedUnit;

    constructor(address base_, address quote_, address feed_, uint256 maxStaleness_) {
        base = base_;
        quote = quote_;
        feed = feed_;
        maxStaleness = maxStaleness_;
        _baseUnit = 10 ** _decimals(base_);
        _quoteUnit = 10 ** _decimals(quote_);
        _feedUnit = 10 ** IChainlinkFeed(feed_).decimals();
    }

    function getQuote(uint256 inAmount, address base_, address quote_) public view returns (uint256) {
        bool inverse;
        if (base_ == base && quote_ == quote) inverse = false;
        else if (base_ == quote && quote_ == base) inverse = true;
        else revert PriceOracle_NotSupported(base_, quote_);
        (, int256 answer,, uint256 updatedAt,) = IChainlinkFeed(feed).latestRoundData();
        if (answer <= 0) revert PriceOracle_InvalidAnswer();
        // An answer stamped after this block (a node's clock ahead of the block being simulated) is fresh, not a panic.
        uint256 staleness = updatedAt >= block.timestamp ? 0 : block.timestamp - updatedAt;
        if (maxStaleness != 0 && staleness > maxStaleness) revert PriceOracle_TooStale(staleness, maxStaleness);
        uint256 price = uint256(answer);
        if (inverse) return inAmount * _feedUnit * _baseUnit / (price * _quoteUnit);
        return inAmount * price * _quoteUnit / (_feedUnit * _baseUnit);
    }

    function getQuotes(uint256 inAmount, address base_, address quote_) external view returns (uint256, uint256) {
        uint256 outAmount = getQuote(inAmount, base_, quote_);
        return (outAmount, outAmount);
    }

    function _decimals(address asset) private view returns (uint8) {
        (bool success, bytes memory data) = asset.staticcall(abi.encodeCall(IERC20Min.decimals, ()));
        return success && data.length == 32 ? abi.decode(data, (uint8)) : 18;
    }
}
