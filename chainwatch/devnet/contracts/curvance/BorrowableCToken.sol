// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {AccountSnapshot, ICToken, IERC20Like, IMarketManager, IOracleManager} from "./Interfaces.sol";

/// @title BorrowableCToken (chainwatch devnet)
/// @notice The chainwatch project's own contract reproducing Curvance's BorrowableCToken interface for tests: a
/// vault over one underlying token that can be deposited and redeemed, posted as collateral, borrowed and
/// repaid, with Curvance's events, where the account is in the event data, not a topic:
/// `Borrow(assets, account)`, `Repay(assets, payer, account)`, `CollateralUpdated(shares, increased, account)`,
/// `Liquidated(shares, liquidator, account)`, plus `Deposit`, `Withdraw` and `Transfer` (indexed, as
/// ERC-4626/ERC-20 have them). Reads as in Curvance: `asset()`, `marketManager()`, `collateralPosted(account)`,
/// `debtBalance(account)` (interest included), `getSnapshot(account)`.
/// Simplifications: debt grows at a constant rate per second fixed at deployment (so a time warp alone moves
/// health), shares and assets are 1:1 (lenders earn no interest), an account cannot both post and borrow the
/// same token, and `liquidate` repays an account's whole debt in this token for a fixed 5% collateral bonus
/// once the manager finds the account past its soft liquidation line.
contract BorrowableCToken is ICToken {
    struct Debt {
        uint256 principal;
        uint256 index;
    }

    uint256 internal constant WAD = 1e18;
    uint256 public constant LIQUIDATION_BONUS = 1.05e18;

    address public immutable asset;
    address public immutable marketManager;
    uint8 public immutable decimals;
    /// @notice Interest on debt, in WAD per second, simple between accruals and compounded at each accrual.
    uint256 public immutable borrowRatePerSecond;
    string public name;
    string public symbol;

    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => uint256) public collateralPosted;
    uint256 public marketCollateralPosted;

    uint256 internal _debtIndex = WAD;
    uint256 internal _lastAccrual;
    mapping(address => Debt) internal _debtOf;

    event Transfer(address indexed from, address indexed to, uint256 amount);
    event Deposit(address indexed by, address indexed owner, uint256 assets, uint256 shares);
    event Withdraw(address indexed by, address indexed to, address indexed owner, uint256 assets, uint256 shares);
    event Borrow(uint256 assets, address account);
    event Repay(uint256 assets, address payer, address account);
    event CollateralUpdated(uint256 shares, bool increased, address account);
    event Liquidated(uint256 shares, address liquidator, address account);

    error BaseCToken__ZeroAmount();
    error BaseCToken__Unauthorized();
    error BaseCToken__TransferError();
    error BorrowableCToken__CollateralPositionActive();
    error BorrowableCToken__DebtPositionActive();
    error BorrowableCToken__NotLiquidatable();
    error BorrowableCToken__PriceError();
    error InsufficientBalance();

    constructor(address asset_, address marketManager_, uint256 borrowRatePerSecond_) {
        asset = asset_;
        marketManager = marketManager_;
        decimals = IERC20Like(asset_).decimals();
        borrowRatePerSecond = borrowRatePerSecond_;
        string memory underlying = IERC20Like(asset_).symbol();
        name = string.concat("Curvance devnet ", underlying);
        symbol = string.concat("c", underlying);
        _lastAccrual = block.timestamp;
    }

    // -- reads ------------------------------------------------------------------------------------------------

    function isBorrowable() external pure returns (bool) {
        return true;
    }

    function exchangeRate() external pure returns (uint256) {
        return WAD;
    }

    function convertToAssets(uint256 shares) external pure returns (uint256) {
        return shares;
    }

    function debtBalance(address account) public view returns (uint256) {
        Debt storage debt = _debtOf[account];
        if (debt.principal == 0) {
            return 0;
        }
        uint256 index = _currentIndex();
        return (debt.principal * index + debt.index - 1) / debt.index;
    }

    function getSnapshot(address account) external view returns (AccountSnapshot memory) {
        // Every devnet cToken can be posted as collateral, so `isCollateral` is always true.
        return AccountSnapshot(address(this), asset, decimals, true, collateralPosted[account], debtBalance(account));
    }

    // -- lender and collateral side ---------------------------------------------------------------------------

    function deposit(uint256 assets, address receiver) public returns (uint256 shares) {
        if (assets == 0) revert BaseCToken__ZeroAmount();
        _pull(msg.sender, assets);
        shares = assets;
        totalSupply += shares;
        balanceOf[receiver] += shares;
        emit Transfer(address(0), receiver, shares);
        emit Deposit(msg.sender, receiver, assets, shares);
    }

    function depositAsCollateral(uint256 assets, address receiver) external returns (uint256 shares) {
        shares = deposit(assets, receiver);
        _postCollateral(receiver, shares);
    }

    function postCollateral(uint256 shares) external {
        if (balanceOf[msg.sender] - collateralPosted[msg.sender] < shares) revert InsufficientBalance();
        _postCollateral(msg.sender, shares);
    }

    function removeCollateral(uint256 shares) external {
        _removeCollateral(msg.sender, shares);
    }

    /// @notice Redeems shares that are not posted as collateral.
    function redeem(uint256 shares, address receiver, address owner) external returns (uint256) {
        if (owner != msg.sender) revert BaseCToken__Unauthorized();
        if (balanceOf[owner] - collateralPosted[owner] < shares) revert InsufficientBalance();
        return _redeem(owner, receiver, shares);
    }

    /// @notice Removes posted collateral (reverting if debt would then exceed the borrow limit) and redeems it.
    function redeemCollateral(uint256 shares, address receiver, address owner) external returns (uint256) {
        if (owner != msg.sender) revert BaseCToken__Unauthorized();
        _removeCollateral(owner, shares);
        return _redeem(owner, receiver, shares);
    }

    // -- borrower side ----------------------------------------------------------------------------------------

    function borrow(uint256 assets, address receiver) external {
        if (assets == 0) revert BaseCToken__ZeroAmount();
        if (collateralPosted[msg.sender] > 0) revert BorrowableCToken__CollateralPositionActive();
        accrueIfNeeded();
        Debt storage debt = _debtOf[msg.sender];
        debt.principal = debtBalance(msg.sender) + assets;
        debt.index = _debtIndex;
        emit Borrow(assets, msg.sender);
        IMarketManager(marketManager).updatePosition(msg.sender);
        IMarketManager(marketManager).requireHealthy(msg.sender);
        _push(receiver, assets);
    }

    /// @notice Repays `assets` of the caller's debt; 0 repays all of it.
    function repay(uint256 assets) external {
        _repay(msg.sender, msg.sender, assets);
    }

    function repayFor(uint256 assets, address owner) external {
        _repay(msg.sender, owner, assets);
    }

    /// @notice Repays the whole debt in this token of each account past its soft liquidation line, and hands
    /// the liquidator that value plus 5% in `collateralToken` shares (at most what the account posted).
    function liquidate(address[] calldata accounts, address collateralToken) external {
        IMarketManager manager = IMarketManager(marketManager);
        if (!manager.isListed(collateralToken)) revert BaseCToken__Unauthorized();
        uint256[] memory shares = new uint256[](accounts.length);
        for (uint256 i = 0; i < accounts.length; ++i) {
            address account = accounts[i];
            if (account == msg.sender) revert BaseCToken__Unauthorized();
            if (!manager.isLiquidatable(account)) revert BorrowableCToken__NotLiquidatable();
            uint256 repaid = _repay(msg.sender, account, 0);
            shares[i] = _seizedShares(manager.oracleManager(), repaid, ICToken(collateralToken), account);
        }
        ICToken(collateralToken).seize(shares, msg.sender, accounts);
    }

    /// @notice Moves liquidated collateral shares to the liquidator; only another cToken of the same market may
    /// call it, from its `liquidate`.
    function seize(uint256[] calldata liquidatedShares, address liquidator, address[] calldata accounts) external {
        if (!IMarketManager(marketManager).isListed(msg.sender)) revert BaseCToken__Unauthorized();
        for (uint256 i = 0; i < accounts.length; ++i) {
            (address account, uint256 shares) = (accounts[i], liquidatedShares[i]);
            collateralPosted[account] -= shares;
            marketCollateralPosted -= shares;
            balanceOf[account] -= shares;
            balanceOf[liquidator] += shares;
            emit Transfer(account, liquidator, shares);
            emit Liquidated(shares, liquidator, account);
            IMarketManager(marketManager).updatePosition(account);
        }
    }

    function accrueIfNeeded() public {
        if (block.timestamp == _lastAccrual) {
            return;
        }
        _debtIndex = _currentIndex();
        _lastAccrual = block.timestamp;
    }

    // -- internals --------------------------------------------------------------------------------------------

    function _currentIndex() internal view returns (uint256) {
        // Saturating: Anvil simulates `latest` calls at wall-clock time, which fast blocks can run behind.
        uint256 elapsed = block.timestamp > _lastAccrual ? block.timestamp - _lastAccrual : 0;
        return _debtIndex + (_debtIndex * borrowRatePerSecond * elapsed) / WAD;
    }

    function _postCollateral(address account, uint256 shares) internal {
        if (shares == 0) revert BaseCToken__ZeroAmount();
        if (debtBalance(account) > 0) revert BorrowableCToken__DebtPositionActive();
        collateralPosted[account] += shares;
        marketCollateralPosted += shares;
        emit CollateralUpdated(shares, true, account);
        IMarketManager(marketManager).updatePosition(account);
    }

    function _removeCollateral(address account, uint256 shares) internal {
        if (shares == 0) revert BaseCToken__ZeroAmount();
        if (collateralPosted[account] < shares) revert InsufficientBalance();
        collateralPosted[account] -= shares;
        marketCollateralPosted -= shares;
        emit CollateralUpdated(shares, false, account);
        IMarketManager(marketManager).updatePosition(account);
        IMarketManager(marketManager).requireHealthy(account);
    }

    function _redeem(address owner, address receiver, uint256 shares) internal returns (uint256 assets) {
        if (shares == 0) revert BaseCToken__ZeroAmount();
        balanceOf[owner] -= shares;
        totalSupply -= shares;
        assets = shares;
        emit Transfer(owner, address(0), shares);
        emit Withdraw(msg.sender, receiver, owner, assets, shares);
        _push(receiver, assets);
    }

    function _repay(address payer, address account, uint256 assets) internal returns (uint256 repaid) {
        accrueIfNeeded();
        uint256 owed = debtBalance(account);
        repaid = assets == 0 || assets > owed ? owed : assets;
        if (repaid == 0) revert BaseCToken__ZeroAmount();
        _pull(payer, repaid);
        Debt storage debt = _debtOf[account];
        debt.principal = owed - repaid;
        debt.index = _debtIndex;
        emit Repay(repaid, payer, account);
        IMarketManager(marketManager).updatePosition(account);
    }

    function _seizedShares(IOracleManager oracle, uint256 repaid, ICToken collateral, address account)
        internal
        view
        returns (uint256)
    {
        (uint256 debtPrice, uint256 debtError) = oracle.getPrice(asset, true, false);
        (uint256 collateralPrice, uint256 collateralError) = oracle.getPrice(collateral.asset(), true, true);
        if (debtError >= 2 || collateralError >= 2 || collateralPrice == 0) revert BorrowableCToken__PriceError();
        uint256 valueWithBonus = (repaid * debtPrice * LIQUIDATION_BONUS) / WAD / 10 ** decimals;
        uint256 shares = (valueWithBonus * 10 ** collateral.decimals()) / collateralPrice;
        uint256 posted = collateral.collateralPosted(account);
        return shares < posted ? shares : posted;
    }

    function _pull(address from, uint256 assets) internal {
        if (!IERC20Like(asset).transferFrom(from, address(this), assets)) revert BaseCToken__TransferError();
    }

    function _push(address to, uint256 assets) internal {
        if (!IERC20Like(asset).transfer(to, assets)) revert BaseCToken__TransferError();
    }
}
