// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {ICToken, IMarketManager, IOracleManager} from "./Interfaces.sol";

/// @title MarketManager (chainwatch devnet)
/// @notice The chainwatch project's own contract reproducing Curvance's MarketManager interface for tests.
/// Health is aggregate over the manager's cTokens, in USD with 18 decimals, and has Curvance's three lines per
/// collateral token, all in BPS as `collConfig(cToken) -> (collRatio, collReqSoft, collReqHard)` returns them:
/// - the borrow limit: `statusOf(account) -> (collateral, maxDebt, debt)` (nonpayable, as deployed: it accrues
///   the cTokens' interest first) has `maxDebt = sum(collateral value * collRatio / BPS)`; a borrow or a
///   collateral removal beyond it reverts;
/// - the soft liquidation line `cSoft = sum(collateral value * BPS / collReqSoft)`: an account may be
///   liquidated only once its debt exceeds it;
/// - the hard line `cHard` likewise with `collReqHard` (reported, not acted on here).
/// As in Curvance, collateral is valued at the oracle's lower price (times the cToken's exchange rate), debt at
/// the higher, and `updateTokenConfig` takes the requirements as premiums over BPS (4000 = 140%) and stores
/// them as `BPS + premium`, the form `collConfig` returns. Not modelled: the dynamic liquidation engine's partial
/// (soft) liquidations, incentives, close factors and auctions (a liquidation repays a whole debt), caps, hold
/// periods. Also as in Curvance: `queryTokensListed()`, `tokensListed(i)`, `assetsOf(account)`,
/// `updateTokenConfig(TokenConfig)` and the events `PositionUpdated(cToken, account, open)`, `TokenListed(cToken)`
/// and `TokenConfigUpdated(TokenConfig)` (account and token in the data, none indexed). `oracleManager()` names
/// the OracleManager that prices the market; `liquidationValuesOf(account) -> (cSoft, cHard, debt)` is the
/// project's own view for ProtocolReader and tests.
contract MarketManager is IMarketManager {
    /// @notice The layout of Curvance's `MarketManagerIsolated.TokenConfig`. Only `cToken`, `collRatio`,
    /// `collReqSoft` and `collReqHard` take effect here; the other fields are kept so that `TokenConfigUpdated`
    /// has Curvance's signature.
    struct TokenConfig {
        address cToken;
        uint256 collRatio;
        uint256 collReqSoft;
        uint256 collReqHard;
        uint256 liqIncBase;
        uint256 liqIncHard;
        uint256 liqIncMin;
        uint256 liqIncMax;
        uint256 closeFactorBase;
        uint256 closeFactorMin;
        uint256 closeFactorMax;
        uint256 collateralCap;
        uint256 debtCap;
    }

    /// @notice One token's lines, in BPS; the requirements stored as `BPS + premium`, as in Curvance.
    struct CollConfig {
        uint256 collRatio;
        uint256 collReqSoft;
        uint256 collReqHard;
    }

    uint256 internal constant BPS = 10_000;
    uint256 internal constant WAD = 1e18;
    /// @notice Curvance's bound on a requirement premium: 23400 = 234%.
    uint256 public constant MAX_COLLATERAL_REQUIREMENT = 23_400;
    uint256 internal constant BAD_SOURCE = 2;
    uint256 internal constant OPEN = 2;
    uint256 internal constant CLOSED = 1;

    address public immutable admin;
    IOracleManager public immutable oracleManager;

    address[] public tokensListed;
    mapping(address => bool) public isListed;
    mapping(address => CollConfig) internal _collConfig;
    /// @notice account => cToken => 2 while the account has collateral or debt in the token, else 0 or 1.
    mapping(address => mapping(address => uint256)) public accountPositions;
    mapping(address => address[]) internal _assetsOf;

    event PositionUpdated(address cToken, address account, bool open);
    event TokenListed(address cToken);
    event TokenConfigUpdated(TokenConfig config);

    error MarketManager__Unauthorized();
    error MarketManager__TokenNotListed();
    error MarketManager__InvalidParameter();
    error MarketManager__InsufficientCollateral();
    error MarketManager__PriceError();

    constructor(IOracleManager oracleManager_) {
        admin = msg.sender;
        oracleManager = oracleManager_;
    }

    function listToken(address cToken) external {
        _onlyAdmin();
        if (isListed[cToken] || ICToken(cToken).marketManager() != address(this)) {
            revert MarketManager__InvalidParameter();
        }
        isListed[cToken] = true;
        tokensListed.push(cToken);
        emit TokenListed(cToken);
    }

    function updateTokenConfig(TokenConfig calldata config) external {
        _onlyAdmin();
        if (!isListed[config.cToken]) revert MarketManager__TokenNotListed();
        uint256 collReqSoft = BPS + config.collReqSoft;
        uint256 collReqHard = BPS + config.collReqHard;
        // As Curvance validates: the hard line lies past the soft one, and the borrow limit short of the soft line
        // (collRatio / BPS < BPS / collReqSoft), so a borrow the manager allows is never liquidatable at once.
        if (
            config.collReqSoft > MAX_COLLATERAL_REQUIREMENT || config.collReqHard > config.collReqSoft
                || config.collRatio * collReqSoft >= BPS * BPS
        ) {
            revert MarketManager__InvalidParameter();
        }
        _collConfig[config.cToken] = CollConfig(config.collRatio, collReqSoft, collReqHard);
        emit TokenConfigUpdated(config);
    }

    function collConfig(address cToken) external view returns (uint256, uint256, uint256) {
        CollConfig storage c = _collConfig[cToken];
        return (c.collRatio, c.collReqSoft, c.collReqHard);
    }

    function queryTokensListed() external view returns (address[] memory) {
        return tokensListed;
    }

    function assetsOf(address account) external view returns (address[] memory) {
        return _assetsOf[account];
    }

    /// @notice `account`'s collateral, its borrow limit and its debt, all in USD (WAD), interest included.
    /// @dev Nonpayable as Curvance's: it brings every cToken's interest up to date before valuing the debt.
    function statusOf(address account) external returns (uint256, uint256, uint256) {
        for (uint256 i = 0; i < tokensListed.length; ++i) {
            ICToken(tokensListed[i]).accrueIfNeeded();
        }
        return _statusOf(account);
    }

    /// @notice The soft and hard liquidation lines of `account` (its collateral weighed by the requirements) and
    /// its debt, in USD (WAD).
    function liquidationValuesOf(address account) public view returns (uint256 cSoft, uint256 cHard, uint256 debt) {
        (Valued[] memory values, uint256 n) = _valuesOf(account);
        for (uint256 i = 0; i < n; ++i) {
            CollConfig storage c = _collConfig[values[i].token];
            cSoft += (values[i].collateral * BPS) / c.collReqSoft;
            cHard += (values[i].collateral * BPS) / c.collReqHard;
            debt += values[i].debt;
        }
    }

    /// @notice Whether a liquidator may liquidate `account`: its debt is past the soft liquidation line.
    function isLiquidatable(address account) external view returns (bool) {
        (uint256 cSoft,, uint256 debt) = liquidationValuesOf(account);
        return debt > cSoft;
    }

    /// @notice Reverts unless `account`'s debt is within its borrow limit; cTokens call it after a borrow or a
    /// collateral removal, as Curvance's `canBorrow`/`canRedeem` checks do.
    function requireHealthy(address account) external view {
        (, uint256 maxDebt, uint256 debt) = _statusOf(account);
        if (debt > maxDebt) revert MarketManager__InsufficientCollateral();
    }

    /// @notice Called by a listed cToken after it changed `account`'s position: records whether the account
    /// still holds collateral or debt there, and emits `PositionUpdated` when that changes.
    function updatePosition(address account) external {
        address cToken = msg.sender;
        if (!isListed[cToken]) revert MarketManager__Unauthorized();
        bool open = ICToken(cToken).collateralPosted(account) > 0 || ICToken(cToken).debtBalance(account) > 0;
        if (open == (accountPositions[account][cToken] == OPEN)) {
            return;
        }
        accountPositions[account][cToken] = open ? OPEN : CLOSED;
        address[] storage assets = _assetsOf[account];
        if (open) {
            assets.push(cToken);
        } else {
            for (uint256 i = 0; i < assets.length; ++i) {
                if (assets[i] == cToken) {
                    assets[i] = assets[assets.length - 1];
                    assets.pop();
                    break;
                }
            }
        }
        emit PositionUpdated(cToken, account, open);
    }

    /// @notice One token's share of an account: its posted collateral and its debt, valued in USD (WAD).
    struct Valued {
        address token;
        uint256 collateral;
        uint256 debt;
    }

    function _statusOf(address account) internal view returns (uint256 collateral, uint256 maxDebt, uint256 debt) {
        (Valued[] memory values, uint256 n) = _valuesOf(account);
        for (uint256 i = 0; i < n; ++i) {
            collateral += values[i].collateral;
            maxDebt += (values[i].collateral * _collConfig[values[i].token].collRatio) / BPS;
            debt += values[i].debt;
        }
    }

    /// @notice The tokens `account` has collateral or debt in (the first `n` entries), valued: collateral shares
    /// at the lower price times the exchange rate, debt at the higher price, rounded up.
    function _valuesOf(address account) internal view returns (Valued[] memory values, uint256 n) {
        // Every listed token, not only `assetsOf`: a cToken checks health before it records a new position.
        values = new Valued[](tokensListed.length);
        for (uint256 i = 0; i < tokensListed.length; ++i) {
            ICToken token = ICToken(tokensListed[i]);
            uint256 posted = token.collateralPosted(account);
            uint256 owed = token.debtBalance(account);
            if (posted == 0 && owed == 0) {
                continue;
            }
            uint256 unit = 10 ** token.decimals();
            Valued memory v = values[n++];
            v.token = address(token);
            if (posted > 0) {
                uint256 sharePrice = (_price(token.asset(), true) * token.exchangeRate()) / WAD;
                v.collateral = (posted * sharePrice) / unit;
            }
            if (owed > 0) {
                v.debt = (owed * _price(token.asset(), false) + unit - 1) / unit;
            }
        }
    }

    function _price(address asset, bool getLower) internal view returns (uint256 price) {
        uint256 errorCode;
        (price, errorCode) = oracleManager.getPrice(asset, true, getLower);
        if (errorCode >= BAD_SOURCE) revert MarketManager__PriceError();
    }

    function _onlyAdmin() internal view {
        if (msg.sender != admin) revert MarketManager__Unauthorized();
    }
}
