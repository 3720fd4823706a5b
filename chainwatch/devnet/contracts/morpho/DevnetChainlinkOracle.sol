// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

/// @notice The Chainlink reads the oracle needs; SettableFeed and FeedProxy implement both.
interface IChainlinkFeed {
    function decimals() external view returns (uint8);
    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80);
}

/// @notice The one ERC-4626 read the oracle needs to price vault shares.
interface IShareVault {
    function convertToAssets(uint256 shares) external view returns (uint256);
}

/// @title DevnetChainlinkOracle (chainwatch devnet)
/// @notice The chainwatch project's own contract, written for tests and the local devnet. It reproduces the
/// public interface of Morpho's `MorphoChainlinkOracleV2` (BASE_VAULT, BASE_VAULT_CONVERSION_SAMPLE,
/// QUOTE_VAULT, QUOTE_VAULT_CONVERSION_SAMPLE, BASE_FEED_1/2, QUOTE_FEED_1/2, SCALE_FACTOR, price()) and its
/// meaning: `price()` is one unit of the collateral (base) token in units of the loan (quote) token, scaled by
/// 1e36, computed from up to two base and two quote Chainlink-style feeds; a zero feed counts as a price of 1
/// and a zero vault as a conversion of 1. Morpho's stock OracleMock has a setter that emits nothing; this oracle
/// reads the devnet's settable feeds, so every price move is announced by an AnswerUpdated log as on a live chain.
/// It is not a copy of Morpho's source.
contract DevnetChainlinkOracle {
    IShareVault public immutable BASE_VAULT;
    uint256 public immutable BASE_VAULT_CONVERSION_SAMPLE;
    IShareVault public immutable QUOTE_VAULT;
    uint256 public immutable QUOTE_VAULT_CONVERSION_SAMPLE;
    IChainlinkFeed public immutable BASE_FEED_1;
    IChainlinkFeed public immutable BASE_FEED_2;
    IChainlinkFeed public immutable QUOTE_FEED_1;
    IChainlinkFeed public immutable QUOTE_FEED_2;
    uint256 public immutable SCALE_FACTOR;

    /// @dev Arguments in the order of MorphoChainlinkOracleV2's constructor, so a deploy script reads the same.
    constructor(
        IShareVault baseVault,
        uint256 baseVaultConversionSample,
        IChainlinkFeed baseFeed1,
        IChainlinkFeed baseFeed2,
        uint256 baseTokenDecimals,
        IShareVault quoteVault,
        uint256 quoteVaultConversionSample,
        IChainlinkFeed quoteFeed1,
        IChainlinkFeed quoteFeed2,
        uint256 quoteTokenDecimals
    ) {
        // Without a vault the sample is meaningless; a sample other than 1 would silently rescale the price.
        require(address(baseVault) != address(0) || baseVaultConversionSample == 1, "base sample must be 1");
        require(address(quoteVault) != address(0) || quoteVaultConversionSample == 1, "quote sample must be 1");
        require(baseVaultConversionSample != 0 && quoteVaultConversionSample != 0, "zero conversion sample");
        BASE_VAULT = baseVault;
        BASE_VAULT_CONVERSION_SAMPLE = baseVaultConversionSample;
        QUOTE_VAULT = quoteVault;
        QUOTE_VAULT_CONVERSION_SAMPLE = quoteVaultConversionSample;
        BASE_FEED_1 = baseFeed1;
        BASE_FEED_2 = baseFeed2;
        QUOTE_FEED_1 = quoteFeed1;
        QUOTE_FEED_2 = quoteFeed2;
        // price() multiplies raw feed answers; this power of ten turns their product into loan-token units per
        // collateral-token unit at 1e36: token decimals and feed decimals on each side cancel out.
        uint256 exponent = 36 + quoteTokenDecimals + _decimals(quoteFeed1) + _decimals(quoteFeed2)
            - baseTokenDecimals - _decimals(baseFeed1) - _decimals(baseFeed2);
        SCALE_FACTOR = 10 ** exponent * quoteVaultConversionSample / baseVaultConversionSample;
    }

    /// @notice One collateral unit in loan units, scaled by 1e36, rounded down.
    function price() external view returns (uint256) {
        uint256 base = _assets(BASE_VAULT, BASE_VAULT_CONVERSION_SAMPLE) * _answer(BASE_FEED_1) * _answer(BASE_FEED_2);
        uint256 quote =
            _assets(QUOTE_VAULT, QUOTE_VAULT_CONVERSION_SAMPLE) * _answer(QUOTE_FEED_1) * _answer(QUOTE_FEED_2);
        // Devnet magnitudes keep SCALE_FACTOR * base far below 2^256; checked arithmetic reverts rather than
        // wrap if a test ever pushes it further.
        return SCALE_FACTOR * base / quote;
    }

    function _answer(IChainlinkFeed feed) private view returns (uint256) {
        if (address(feed) == address(0)) return 1;
        (, int256 answer,,,) = feed.latestRoundData();
        require(answer >= 0, "negative answer");
        return uint256(answer);
    }

    function _decimals(IChainlinkFeed feed) private view returns (uint256) {
        return address(feed) == address(0) ? 0 : feed.decimals();
    }

    function _assets(IShareVault vault, uint256 sample) private view returns (uint256) {
        return address(vault) == address(0) ? 1 : vault.convertToAssets(sample);
    }
}
