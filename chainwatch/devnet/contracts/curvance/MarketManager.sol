// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {ICToken, IMarketManager, IOracleManager} from "./Interfaces.sol";

/// @title MarketManager (chainwatch devnet)
/// @notice The chainwatch project's own contract reproducing Curvance's MarketManager interface for tests.
/// Health is aggregate over the manager's cTokens, in USD with 18 decimals:
/// `statusOf(account) -> (collateral, maxDebt, debt)` where `maxDebt` is the sum of each posted collateral's
/// value times its `collRatio` (collateral at the oracle's lower price, debt at the higher, as Curvance
/// prices them). Here `collRatio` is also the liquidation line: an account may borrow up to `maxDebt` (a
/// borrow beyond it reverts) and can be liquidated once its debt exceeds it, so `maxDebt / debt` is its health
/// factor. Curvance itself uses `collRatio` for the borrow limit and separate soft/hard requirements for
/// liquidation, and its dynamic liquidation engine is not modelled. Also as in Curvance: `queryTokensListed()`,
/// `tokensListed(i)`, `assetsOf(account)`, `collateralizationRatio(cToken)`, `updateTokenConfig(TokenConfig)`
/// and the events `PositionUpdated(cToken, account, open)`, `TokenListed(cToken)` and
/// `TokenConfigUpdated(TokenConfig)` (account and token in the data, none indexed). `oracleManager()` names
/// the OracleManager that prices the market.
contract MarketManager is IMarketManager {
    /// @notice The layout of Curvance's `MarketManagerIsolated.TokenConfig`. Only `cToken` and `collRatio` take
    /// effect here; the other fields are kept so that `TokenConfigUpdated` has Curvance's signature.
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

    uint256 public constant MAX_COLLATERALIZATION_RATIO = 0.975e18;
    uint256 internal constant WAD = 1e18;
    uint256 internal constant BAD_SOURCE = 2;
    uint256 internal constant OPEN = 2;
    uint256 internal constant CLOSED = 1;

    address public immutable admin;
    IOracleManager public immutable oracleManager;

    address[] public tokensListed;
    mapping(address => bool) public isListed;
    /// @notice cToken => share of posted collateral value that may be owed, in WAD.
    mapping(address => uint256) public collateralizationRatio;
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
        if (config.collRatio > MAX_COLLATERALIZATION_RATIO) revert MarketManager__InvalidParameter();
        collateralizationRatio[config.cToken] = config.collRatio;
        emit TokenConfigUpdated(config);
    }

    function queryTokensListed() external view returns (address[] memory) {
        return tokensListed;
    }

    function assetsOf(address account) external view returns (address[] memory) {
        return _assetsOf[account];
    }

    /// @notice `account`'s collateral, the debt it may carry, and its debt, all in USD (WAD), interest included.
    function statusOf(address account) public view returns (uint256 collateral, uint256 maxDebt, uint256 debt) {
        // Every listed token, not only `assetsOf`: a cToken checks health before it records a new position.
        for (uint256 i = 0; i < tokensListed.length; ++i) {
            ICToken token = ICToken(tokensListed[i]);
            uint256 posted = token.collateralPosted(account);
            uint256 owed = token.debtBalance(account);
            if (posted == 0 && owed == 0) {
                continue;
            }
            uint256 unit = 10 ** token.decimals();
            if (posted > 0) {
                uint256 value = (posted * _price(token.asset(), true)) / unit;
                collateral += value;
                maxDebt += (value * collateralizationRatio[address(token)]) / WAD;
            }
            if (owed > 0) {
                debt += (owed * _price(token.asset(), false) + unit - 1) / unit; // debt rounds up
            }
        }
    }

    function isLiquidatable(address account) external view returns (bool) {
        (, uint256 maxDebt, uint256 debt) = statusOf(account);
        return debt > maxDebt;
    }

    /// @notice Reverts unless `account`'s debt is within its `maxDebt`; cTokens call it after a borrow or a
    /// collateral removal, so such an action cannot leave the account liquidatable.
    function requireHealthy(address account) external view {
        (, uint256 maxDebt, uint256 debt) = statusOf(account);
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

    function _price(address asset, bool getLower) internal view returns (uint256 price) {
        uint256 errorCode;
        (price, errorCode) = oracleManager.getPrice(asset, true, getLower);
        if (errorCode >= BAD_SOURCE) revert MarketManager__PriceError();
    }

    function _onlyAdmin() internal view {
        if (msg.sender != admin) revert MarketManager__Unauthorized();
    }
}
