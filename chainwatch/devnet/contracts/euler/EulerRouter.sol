// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IERC4626Min, IPriceOracle} from "./Interfaces.sol";

/// @title EulerRouter (chainwatch devnet)
/// @notice The chainwatch project's own contract, written for tests and the local devnet. It reproduces the
/// interface of Euler's `EulerRouter` (euler-price-oracle): one price oracle per asset pair (`govSetConfig`,
/// `getConfiguredOracle`), ERC4626 vaults priced through `convertToAssets` (`govSetResolvedVault`,
/// `resolvedVaults`), an optional fallback, `resolveOracle` and `getQuote`/`getQuotes`, with the events
/// `ConfigSet`, `ResolvedVaultSet` and `FallbackOracleSet`.
contract EulerRouter is IPriceOracle {
    event ConfigSet(address indexed asset0, address indexed asset1, address indexed oracle);
    event FallbackOracleSet(address indexed fallbackOracle);
    event ResolvedVaultSet(address indexed vault, address indexed asset);

    error Governance_CallerNotGovernor();
    error PriceOracle_InvalidConfiguration();
    error PriceOracle_NotSupported(address base, address quote);

    string public constant name = "EulerRouter";
    address public governor;
    address public fallbackOracle;
    mapping(address vault => address asset) public resolvedVaults;
    // Keyed by the pair sorted by address, so one oracle serves both directions.
    mapping(address asset0 => mapping(address asset1 => address oracle)) private _oracles;

    constructor(address governor_) {
        if (governor_ == address(0)) revert PriceOracle_InvalidConfiguration();
        governor = governor_;
    }

    modifier onlyGovernor() {
        if (msg.sender != governor) revert Governance_CallerNotGovernor();
        _;
    }

    function govSetConfig(address base, address quote, address oracle) external onlyGovernor {
        if (base == quote) revert PriceOracle_InvalidConfiguration();
        (address asset0, address asset1) = _sort(base, quote);
        _oracles[asset0][asset1] = oracle;
        emit ConfigSet(asset0, asset1, oracle);
    }

    function govSetResolvedVault(address vault, bool set) external onlyGovernor {
        address asset = set ? IERC4626Min(vault).asset() : address(0);
        resolvedVaults[vault] = asset;
        emit ResolvedVaultSet(vault, asset);
    }

    function govSetFallbackOracle(address fallbackOracle_) external onlyGovernor {
        fallbackOracle = fallbackOracle_;
        emit FallbackOracleSet(fallbackOracle_);
    }

    function getConfiguredOracle(address base, address quote) public view returns (address) {
        (address asset0, address asset1) = _sort(base, quote);
        return _oracles[asset0][asset1];
    }

    function getQuote(uint256 inAmount, address base, address quote) external view returns (uint256) {
        address oracle;
        (inAmount, base, quote, oracle) = resolveOracle(inAmount, base, quote);
        if (base == quote) return inAmount;
        return IPriceOracle(oracle).getQuote(inAmount, base, quote);
    }

    function getQuotes(uint256 inAmount, address base, address quote) external view returns (uint256, uint256) {
        address oracle;
        (inAmount, base, quote, oracle) = resolveOracle(inAmount, base, quote);
        if (base == quote) return (inAmount, inAmount);
        return IPriceOracle(oracle).getQuotes(inAmount, base, quote);
    }

    /// @notice The pair's own oracle, else the vault's asset priced the same way (amount converted), else the
    /// fallback; returns the resolved amount, base, quote and oracle.
    function resolveOracle(uint256 inAmount, address base, address quote)
        public
        view
        returns (uint256, address, address, address)
    {
        if (base == quote) return (inAmount, base, quote, address(0));
        address oracle = getConfiguredOracle(base, quote);
        if (oracle != address(0)) return (inAmount, base, quote, oracle);
        address baseAsset = resolvedVaults[base];
        if (baseAsset != address(0)) {
            return resolveOracle(IERC4626Min(base).convertToAssets(inAmount), baseAsset, quote);
        }
        if (fallbackOracle == address(0)) revert PriceOracle_NotSupported(base, quote);
        return (inAmount, base, quote, fallbackOracle);
    }

    function _sort(address a, address b) private pure returns (address, address) {
        return a < b ? (a, b) : (b, a);
    }
}
