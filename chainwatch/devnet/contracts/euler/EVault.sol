// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IERC20Min, IEVCMin, IPriceOracle} from "./Interfaces.sol";

/// @title EVault (chainwatch devnet)
/// @notice The chainwatch project's own contract, written for tests and the local devnet. It reproduces the
/// interface of an Euler Vault Kit vault as a watcher and its users see it, with the real function signatures,
/// return encodings, custom errors and events: ERC20 shares (`Transfer`), ERC4626 `deposit`/`withdraw`
/// (`Deposit`, `Withdraw`), `borrow`/`repay` (`Borrow`, `Repay`, `InterestAccrued`), `liquidate` (`Liquidate`),
/// `accountLiquidity`/`accountLiquidityFull` (reverting unless the vault is the account's controller),
/// `LTVBorrow`/`LTVLiquidation`/`LTVList`/`setLTV` (`GovSetLTV`), `oracle()`, `unitOfAccount()` and a
/// `VaultStatus` event on every state change. Simplified: a constant per-second borrow rate instead of an
/// interest rate model, no fees, caps, hooks or LTV ramps, and a fixed liquidation discount.
contract EVault {
    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);
    event Deposit(address indexed sender, address indexed owner, uint256 assets, uint256 shares);
    event Withdraw(
        address indexed sender, address indexed receiver, address indexed owner, uint256 assets, uint256 shares
    );
    event VaultStatus(
        uint256 totalShares,
        uint256 totalBorrows,
        uint256 accumulatedFees,
        uint256 cash,
        uint256 interestAccumulator,
        uint256 interestRate,
        uint256 timestamp
    );
    event Borrow(address indexed account, uint256 assets);
    event Repay(address indexed account, uint256 assets);
    event InterestAccrued(address indexed account, uint256 assets);
    event Liquidate(
        address indexed liquidator,
        address indexed violator,
        address collateral,
        uint256 repayAssets,
        uint256 yieldBalance
    );
    event GovSetLTV(
        address indexed collateral,
        uint16 borrowLTV,
        uint16 liquidationLTV,
        uint16 initialLiquidationLTV,
        uint48 targetTimestamp,
        uint32 rampDuration
    );

    error E_Unauthorized();
    error E_CheckUnauthorized();
    error E_ControllerDisabled();
    error E_NoLiability();
    error E_NotController();
    error E_TransientState();
    error E_AccountLiquidity();
    error E_OutstandingDebt();
    error E_InsufficientCash();
    error E_InsufficientBalance();
    error E_InsufficientAllowance();
    error E_RepayTooMuch();
    error E_ZeroShares();
    error E_SelfLiquidation();
    error E_BadCollateral();
    error E_ExcessiveRepayAmount();
    error E_MinYield();
    error E_InvalidLTVAsset();
    error E_LTVBorrow();

    uint256 private constant CONFIG_SCALE = 1e4;
    uint256 private constant RAY = 1e27;

    struct LTVConfig {
        uint16 borrowLTV;
        uint16 liquidationLTV;
        bool configured;
    }

    struct Owed {
        uint256 assets;
        uint256 accumulator; // the vault's accumulator when `assets` was last brought up to date
    }

    IEVCMin private immutable _evc;
    address public immutable asset;
    address public immutable oracle;
    address public immutable unitOfAccount;
    address public immutable governorAdmin;
    uint256 public immutable interestRate; // per second, in ray: a constant rate stands in for the IRM
    uint16 public immutable maxLiquidationDiscount; // 1e4 scale; used as the discount of every liquidation
    uint8 public immutable decimals;
    string public name;
    string public symbol;

    uint256 public totalSupply;
    mapping(address account => uint256) public balanceOf;
    mapping(address holder => mapping(address spender => uint256)) public allowance;
    uint256 public cash;

    uint256 private _totalBorrows;
    uint256 private _accumulator = RAY;
    uint256 private _lastUpdate = block.timestamp;
    mapping(address account => Owed) private _owed;
    mapping(address collateral => LTVConfig) private _ltv;
    address[] private _ltvList;

    constructor(
        address evc_,
        address asset_,
        address oracle_,
        address unitOfAccount_,
        string memory name_,
        string memory symbol_,
        uint256 interestRate_,
        uint16 maxLiquidationDiscount_
    ) {
        _evc = IEVCMin(evc_);
        asset = asset_;
        oracle = oracle_;
        unitOfAccount = unitOfAccount_;
        governorAdmin = msg.sender;
        name = name_;
        symbol = symbol_;
        interestRate = interestRate_;
        maxLiquidationDiscount = maxLiquidationDiscount_;
        decimals = IERC20Min(asset_).decimals();
    }

    // ---- views ----------------------------------------------------------------------------------------

    function EVC() external view returns (address) {
        return address(_evc);
    }

    /// @notice Interest accrues by time alone: every view reports it up to the current block, as the real vault does.
    function interestAccumulator() public view returns (uint256) {
        // Saturating: Anvil simulates `latest` calls at wall-clock time, which fast blocks can run behind.
        uint256 elapsed = block.timestamp > _lastUpdate ? block.timestamp - _lastUpdate : 0;
        return _accumulator + _accumulator * interestRate * elapsed / RAY;
    }

    function totalBorrows() public view returns (uint256) {
        return _ceilDiv(_totalBorrows * interestAccumulator(), _accumulator);
    }

    function debtOf(address account) public view returns (uint256) {
        Owed storage owed = _owed[account];
        if (owed.assets == 0) return 0;
        return _ceilDiv(owed.assets * interestAccumulator(), owed.accumulator);
    }

    function totalAssets() public view returns (uint256) {
        return cash + totalBorrows();
    }

    function convertToAssets(uint256 shares) public view returns (uint256) {
        return totalSupply == 0 ? shares : shares * totalAssets() / totalSupply;
    }

    function convertToShares(uint256 assets) public view returns (uint256) {
        uint256 managed = totalAssets();
        return totalSupply == 0 || managed == 0 ? assets : assets * totalSupply / managed;
    }

    function LTVBorrow(address collateral) external view returns (uint16) {
        return _ltv[collateral].borrowLTV;
    }

    function LTVLiquidation(address collateral) external view returns (uint16) {
        return _ltv[collateral].liquidationLTV;
    }

    function LTVFull(address collateral) external view returns (uint16, uint16, uint16, uint48, uint32) {
        LTVConfig storage ltv = _ltv[collateral];
        return (ltv.borrowLTV, ltv.liquidationLTV, ltv.liquidationLTV, 0, 0);
    }

    function LTVList() external view returns (address[] memory) {
        return _ltvList;
    }

    function accountLiquidity(address account, bool liquidation)
        external
        view
        returns (uint256 collateralValue, uint256 liabilityValue)
    {
        _validateController(account);
        address[] memory collaterals = _evc.getCollaterals(account);
        for (uint256 i; i < collaterals.length; ++i) {
            collateralValue += _collateralValue(account, collaterals[i], liquidation);
        }
        liabilityValue = _liabilityValue(account);
    }

    function accountLiquidityFull(address account, bool liquidation)
        external
        view
        returns (address[] memory collaterals, uint256[] memory collateralValues, uint256 liabilityValue)
    {
        _validateController(account);
        collaterals = _evc.getCollaterals(account);
        collateralValues = new uint256[](collaterals.length);
        for (uint256 i; i < collaterals.length; ++i) {
            collateralValues[i] = _collateralValue(account, collaterals[i], liquidation);
        }
        liabilityValue = _liabilityValue(account);
    }

    /// @notice Called by the EVC after an operation: healthy means collateral (at borrow LTVs) above the debt.
    function checkAccountStatus(address account, address[] calldata collaterals) external view returns (bytes4) {
        if (msg.sender != address(_evc)) revert E_CheckUnauthorized();
        uint256 liabilityValue = _liabilityValue(account);
        if (liabilityValue == 0) return this.checkAccountStatus.selector;
        uint256 collateralValue;
        for (uint256 i; i < collaterals.length; ++i) {
            collateralValue += _collateralValue(account, collaterals[i], false);
        }
        if (collateralValue <= liabilityValue) revert E_AccountLiquidity();
        return this.checkAccountStatus.selector;
    }

    // ---- ERC20 shares ---------------------------------------------------------------------------------

    function approve(address spender, uint256 amount) external returns (bool) {
        address holder = _account();
        allowance[holder][spender] = amount;
        emit Approval(holder, spender, amount);
        return true;
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        address from = _account();
        _transfer(from, to, amount);
        _evc.requireAccountStatusCheck(from);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        _spendAllowance(from, _account(), amount);
        _transfer(from, to, amount);
        _evc.requireAccountStatusCheck(from);
        return true;
    }

    // ---- ERC4626 --------------------------------------------------------------------------------------

    function deposit(uint256 amount, address receiver) external returns (uint256 shares) {
        address sender = _account();
        _updateVault();
        shares = convertToShares(amount);
        if (shares == 0) revert E_ZeroShares();
        _pull(sender, amount);
        totalSupply += shares;
        balanceOf[receiver] += shares;
        emit Transfer(address(0), receiver, shares);
        emit Deposit(sender, receiver, amount, shares);
        _logVaultStatus();
    }

    function withdraw(uint256 amount, address receiver, address owner) external returns (uint256 shares) {
        address sender = _account();
        _updateVault();
        shares = _ceilDiv(amount * totalSupply, totalAssets());
        if (sender != owner) _spendAllowance(owner, sender, shares);
        if (balanceOf[owner] < shares) revert E_InsufficientBalance();
        if (cash < amount) revert E_InsufficientCash();
        balanceOf[owner] -= shares;
        totalSupply -= shares;
        cash -= amount;
        IERC20Min(asset).transfer(receiver, amount);
        emit Transfer(owner, address(0), shares);
        emit Withdraw(sender, receiver, owner, amount, shares);
        _logVaultStatus();
        _evc.requireAccountStatusCheck(owner);
    }

    // ---- borrowing ------------------------------------------------------------------------------------

    function borrow(uint256 amount, address receiver) external returns (uint256) {
        address account = _account();
        if (!_evc.isControllerEnabled(account, address(this))) revert E_ControllerDisabled();
        _updateVault();
        _settle(account);
        if (cash < amount) revert E_InsufficientCash();
        _owed[account].assets += amount;
        _totalBorrows += amount;
        cash -= amount;
        IERC20Min(asset).transfer(receiver, amount);
        emit Borrow(account, amount);
        _logVaultStatus();
        _evc.requireAccountStatusCheck(account);
        return amount;
    }

    function repay(uint256 amount, address receiver) external returns (uint256) {
        address payer = _account();
        _updateVault();
        uint256 debt = _settle(receiver);
        if (amount == type(uint256).max) amount = debt;
        if (amount > debt) revert E_RepayTooMuch();
        _pull(payer, amount);
        _owed[receiver].assets = debt - amount;
        _totalBorrows = _totalBorrows > amount ? _totalBorrows - amount : 0;
        emit Repay(receiver, amount);
        _logVaultStatus();
        return amount;
    }

    function disableController() external {
        address account = _account();
        if (debtOf(account) != 0) revert E_OutstandingDebt();
        _evc.disableController(account);
    }

    function touch() external {
        _updateVault();
        _logVaultStatus();
    }

    /// @notice The liquidator takes over `repayAssets` of the violator's debt and seizes collateral worth that much
    /// plus the discount (proportionally to the collateral's unadjusted value, as the real vault does).
    function liquidate(address violator, address collateral, uint256 repayAssets, uint256 minYieldBalance) external {
        address liquidator = _account();
        if (liquidator == violator) revert E_SelfLiquidation();
        _validateController(violator);
        if (!_evc.isControllerEnabled(liquidator, address(this))) revert E_ControllerDisabled();
        if (!_ltv[collateral].configured || !_evc.isCollateralEnabled(violator, collateral)) revert E_BadCollateral();
        _updateVault();
        uint256 debt = _settle(violator);
        _settle(liquidator);
        if (!_isUnhealthy(violator)) revert E_ExcessiveRepayAmount();
        if (repayAssets == type(uint256).max) repayAssets = debt;
        if (repayAssets > debt) revert E_ExcessiveRepayAmount();
        uint256 yieldBalance = _yield(violator, collateral, repayAssets);
        if (yieldBalance < minYieldBalance) revert E_MinYield();
        _owed[violator].assets = debt - repayAssets;
        _owed[liquidator].assets += repayAssets;
        emit Repay(violator, repayAssets);
        emit Borrow(liquidator, repayAssets);
        _evc.controlCollateral(collateral, violator, 0, abi.encodeCall(IERC20Min.transfer, (liquidator, yieldBalance)));
        emit Liquidate(liquidator, violator, collateral, repayAssets, yieldBalance);
        _logVaultStatus();
        _evc.requireAccountStatusCheck(liquidator);
    }

    // ---- governance -----------------------------------------------------------------------------------

    /// @notice Ramps are not modelled: the new liquidation LTV applies at once.
    function setLTV(address collateral, uint16 borrowLTV, uint16 liquidationLTV, uint32 rampDuration) external {
        if (msg.sender != governorAdmin) revert E_Unauthorized();
        if (collateral == address(this)) revert E_InvalidLTVAsset();
        if (borrowLTV > liquidationLTV || liquidationLTV >= CONFIG_SCALE) revert E_LTVBorrow();
        if (!_ltv[collateral].configured) _ltvList.push(collateral);
        _ltv[collateral] = LTVConfig({borrowLTV: borrowLTV, liquidationLTV: liquidationLTV, configured: true});
        emit GovSetLTV(collateral, borrowLTV, liquidationLTV, liquidationLTV, uint48(block.timestamp), rampDuration);
    }

    // ---- internals ------------------------------------------------------------------------------------

    /// @dev Through the EVC the acting account is the one the EVC authenticated, else the caller itself.
    function _account() private view returns (address account) {
        if (msg.sender != address(_evc)) return msg.sender;
        (account,) = _evc.getCurrentOnBehalfOfAccount(address(0));
    }

    function _validateController(address account) private view {
        address[] memory controllers = _evc.getControllers(account);
        if (controllers.length > 1) revert E_TransientState();
        if (controllers.length == 0) revert E_NoLiability();
        if (controllers[0] != address(this)) revert E_NotController();
    }

    function _collateralValue(address account, address collateral, bool liquidation) private view returns (uint256) {
        LTVConfig storage config = _ltv[collateral];
        uint256 ltv = liquidation ? config.liquidationLTV : config.borrowLTV;
        if (ltv == 0) return 0;
        uint256 balance = IERC20Min(collateral).balanceOf(account);
        if (balance == 0) return 0;
        return IPriceOracle(oracle).getQuote(balance, collateral, unitOfAccount) * ltv / CONFIG_SCALE;
    }

    function _liabilityValue(address account) private view returns (uint256) {
        uint256 debt = debtOf(account);
        if (debt == 0 || asset == unitOfAccount) return debt;
        return IPriceOracle(oracle).getQuote(debt, asset, unitOfAccount);
    }

    function _isUnhealthy(address account) private view returns (bool) {
        uint256 collateralValue;
        address[] memory collaterals = _evc.getCollaterals(account);
        for (uint256 i; i < collaterals.length; ++i) {
            collateralValue += _collateralValue(account, collaterals[i], true);
        }
        return collateralValue < _liabilityValue(account);
    }

    function _yield(address violator, address collateral, uint256 repayAssets) private view returns (uint256) {
        uint256 balance = IERC20Min(collateral).balanceOf(violator);
        uint256 repayValue =
            asset == unitOfAccount ? repayAssets : IPriceOracle(oracle).getQuote(repayAssets, asset, unitOfAccount);
        uint256 balanceValue = IPriceOracle(oracle).getQuote(balance, collateral, unitOfAccount);
        if (balanceValue == 0) return balance;
        uint256 yieldBalance =
            repayValue * CONFIG_SCALE / (CONFIG_SCALE - maxLiquidationDiscount) * balance / balanceValue;
        return yieldBalance < balance ? yieldBalance : balance;
    }

    function _updateVault() private {
        uint256 accumulator = interestAccumulator();
        _totalBorrows = _ceilDiv(_totalBorrows * accumulator, _accumulator);
        _accumulator = accumulator;
        _lastUpdate = block.timestamp;
    }

    /// @dev Brings an account's debt up to the vault's (just updated) accumulator; returns the debt.
    function _settle(address account) private returns (uint256 debt) {
        Owed storage owed = _owed[account];
        debt = debtOf(account);
        if (debt > owed.assets) emit InterestAccrued(account, debt - owed.assets);
        owed.assets = debt;
        owed.accumulator = _accumulator;
    }

    function _logVaultStatus() private {
        emit VaultStatus(totalSupply, _totalBorrows, 0, cash, _accumulator, interestRate, block.timestamp);
    }

    function _transfer(address from, address to, uint256 amount) private {
        if (balanceOf[from] < amount) revert E_InsufficientBalance();
        balanceOf[from] -= amount;
        balanceOf[to] += amount;
        emit Transfer(from, to, amount);
    }

    function _spendAllowance(address holder, address spender, uint256 amount) private {
        uint256 allowed = allowance[holder][spender];
        if (allowed == type(uint256).max) return;
        if (allowed < amount) revert E_InsufficientAllowance();
        allowance[holder][spender] = allowed - amount;
    }

    function _pull(address from, uint256 amount) private {
        IERC20Min(asset).transferFrom(from, address(this), amount);
        cash += amount;
    }

    function _ceilDiv(uint256 a, uint256 b) private pure returns (uint256) {
        return a == 0 ? 0 : (a - 1) / b + 1;
    }
}
