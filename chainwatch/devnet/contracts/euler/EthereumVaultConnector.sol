// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IControllerVault} from "./Interfaces.sol";

/// @title EthereumVaultConnector (chainwatch devnet)
/// @notice The chainwatch project's own contract, written for tests and the local devnet. It reproduces the
/// interface of Euler's Ethereum Vault Connector as a watcher and a vault see it: per-account controllers and
/// collaterals (`getControllers`, `getCollaterals`, `enableController`, `enableCollateral`, ...), sub-accounts
/// (the 256 addresses sharing an owner's first 19 bytes act for each other), `call` on behalf of a sub-account,
/// `controlCollateral` for liquidations, and the events `CollateralStatus`, `ControllerStatus` and
/// `AccountStatusCheck` with the real signatures. Simplified: no batches, permits or operators, and an account
/// status check runs at once when a vault asks for it instead of being deferred to the end of a batch.
contract EthereumVaultConnector {
    event CollateralStatus(address indexed account, address indexed collateral, bool enabled);
    event ControllerStatus(address indexed account, address indexed controller, bool enabled);
    event AccountStatusCheck(address indexed account, address indexed controller);

    error EVC_NotAuthorized();
    error EVC_OnBehalfOfAccountNotAuthenticated();
    error EVC_ControllerViolation();
    error EVC_InvalidAddress();

    mapping(address account => address[]) private _controllers;
    mapping(address account => address[]) private _collaterals;
    // The account a `call` or `controlCollateral` acts for; zero outside them.
    address private _onBehalfOf;
    // The violator whose collateral a controller is seizing: its own status check is forgiven meanwhile.
    address private _controlled;

    function haveCommonOwner(address account, address otherAccount) public pure returns (bool) {
        return (uint160(account) ^ uint160(otherAccount)) < 0x100;
    }

    function getControllers(address account) external view returns (address[] memory) {
        return _controllers[account];
    }

    function getCollaterals(address account) external view returns (address[] memory) {
        return _collaterals[account];
    }

    function isControllerEnabled(address account, address vault) public view returns (bool) {
        return _contains(_controllers[account], vault);
    }

    function isCollateralEnabled(address account, address vault) public view returns (bool) {
        return _contains(_collaterals[account], vault);
    }

    function enableCollateral(address account, address vault) external payable onlyOwnerOf(account) {
        if (_contains(_collaterals[account], vault)) return;
        _collaterals[account].push(vault);
        emit CollateralStatus(account, vault, true);
    }

    function disableCollateral(address account, address vault) external payable onlyOwnerOf(account) {
        if (!_remove(_collaterals[account], vault)) return;
        emit CollateralStatus(account, vault, false);
        _checkAccountStatus(account);
    }

    function enableController(address account, address vault) external payable onlyOwnerOf(account) {
        if (_contains(_controllers[account], vault)) return;
        // The real EVC tolerates a second controller inside a batch and fails its status check at the end.
        if (_controllers[account].length > 0) revert EVC_ControllerViolation();
        _controllers[account].push(vault);
        emit ControllerStatus(account, vault, true);
    }

    /// @notice Only the controller itself may release an account, once the account owes it nothing.
    function disableController(address account) external payable {
        if (!_remove(_controllers[account], msg.sender)) return;
        emit ControllerStatus(account, msg.sender, false);
    }

    function call(address targetContract, address onBehalfOfAccount, uint256 value, bytes calldata data)
        external
        payable
        onlyOwnerOf(onBehalfOfAccount)
        returns (bytes memory result)
    {
        if (targetContract == address(this)) revert EVC_InvalidAddress();
        address previous = _onBehalfOf;
        _onBehalfOf = onBehalfOfAccount;
        result = _forward(targetContract, value, data);
        _onBehalfOf = previous;
    }

    function getCurrentOnBehalfOfAccount(address controllerToCheck) external view returns (address, bool) {
        if (_onBehalfOf == address(0)) revert EVC_OnBehalfOfAccountNotAuthenticated();
        return (_onBehalfOf, controllerToCheck != address(0) && isControllerEnabled(_onBehalfOf, controllerToCheck));
    }

    /// @notice A controller acts on an account's collateral (a liquidation seizes it with `transfer`).
    function controlCollateral(address targetCollateral, address onBehalfOfAccount, uint256 value, bytes calldata data)
        external
        payable
        returns (bytes memory result)
    {
        address[] storage controllers = _controllers[onBehalfOfAccount];
        if (controllers.length != 1 || controllers[0] != msg.sender) revert EVC_NotAuthorized();
        if (!isCollateralEnabled(onBehalfOfAccount, targetCollateral)) revert EVC_NotAuthorized();
        (address previous, address previousControlled) = (_onBehalfOf, _controlled);
        (_onBehalfOf, _controlled) = (onBehalfOfAccount, onBehalfOfAccount);
        result = _forward(targetCollateral, value, data);
        (_onBehalfOf, _controlled) = (previous, previousControlled);
    }

    function requireAccountStatusCheck(address account) external payable {
        if (account == _controlled) return;
        _checkAccountStatus(account);
    }

    function _checkAccountStatus(address account) private {
        address[] storage controllers = _controllers[account];
        if (controllers.length == 0) return;
        if (controllers.length > 1) revert EVC_ControllerViolation();
        address controller = controllers[0];
        // A failing check reverts inside the vault with the vault's own error, which bubbles up unchanged.
        bytes4 magic = IControllerVault(controller).checkAccountStatus(account, _collaterals[account]);
        if (magic != IControllerVault.checkAccountStatus.selector) revert EVC_ControllerViolation();
        emit AccountStatusCheck(account, controller);
    }

    function _forward(address target, uint256 value, bytes calldata data) private returns (bytes memory) {
        (bool success, bytes memory result) = target.call{value: value}(data);
        if (!success) {
            assembly {
                revert(add(32, result), mload(result))
            }
        }
        return result;
    }

    modifier onlyOwnerOf(address account) {
        if (!haveCommonOwner(msg.sender, account)) revert EVC_NotAuthorized();
        _;
    }

    function _contains(address[] storage list, address item) private view returns (bool) {
        for (uint256 i; i < list.length; ++i) {
            if (list[i] == item) return true;
        }
        return false;
    }

    function _remove(address[] storage list, address item) private returns (bool) {
        for (uint256 i; i < list.length; ++i) {
            if (list[i] == item) {
                list[i] = list[list.length - 1];
                list.pop();
                return true;
            }
        }
        return false;
    }
}
