// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

/// @title RevertingDecimalsToken (chainwatch devnet)
/// @notice The chainwatch project's own contract, for tests of griefing: a minimal mintable ERC-20 whose
/// `decimals()` always reverts. Creating a Morpho market with it as collateral and supplying collateral on behalf
/// of someone else are both permissionless, so anyone can hand a watched address a market that cannot be
/// resolved; chainwatch must quarantine that market and keep watching everything else.
contract RevertingDecimalsToken {
    string public constant symbol = "GRIEF";
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    function decimals() external pure returns (uint8) {
        revert("decimals() is unavailable");
    }

    function mint(address to, uint256 amount) external {
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        balanceOf[msg.sender] -= amount;
        balanceOf[to] += amount;
        emit Transfer(msg.sender, to, amount);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        allowance[from][msg.sender] -= amount;
        balanceOf[from] -= amount;
        balanceOf[to] += amount;
        emit Transfer(from, to, amount);
        return true;
    }
}
