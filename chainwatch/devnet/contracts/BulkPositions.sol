// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @notice The two token calls a holder needs; the devnet's MintableERC20 lets anyone mint.
interface IBulkToken {
    function mint(address account, uint256 value) external returns (bool);
    function approve(address spender, uint256 value) external returns (bool);
}

/// @notice The two Aave v3 Pool calls a holder makes, as IPool declares them.
interface IBulkPool {
    function supply(address asset, uint256 amount, address onBehalfOf, uint16 referralCode) external;
    function borrow(address asset, uint256 amount, uint256 interestRateMode, uint16 referralCode, address onBehalfOf)
        external;
}

/// @title PositionHolder (chainwatch devnet, benchmarks only)
/// @notice One Aave v3 position of its own: it mints its collateral, supplies it and borrows for itself, so no
/// credit delegation is involved and the Pool sees an ordinary borrower. Deployed once; every position is an
/// EIP-1167 clone of it, made by BulkPositions, the only caller allowed.
contract PositionHolder {
    address private immutable opener;

    constructor() {
        opener = msg.sender;
    }

    function open(IBulkPool pool, address collateral, uint256 supplied, address debt, uint256 borrowed) external {
        require(msg.sender == opener, "PositionHolder: only BulkPositions opens");
        IBulkToken(collateral).mint(address(this), supplied);
        IBulkToken(collateral).approve(address(pool), supplied);
        pool.supply(collateral, supplied, address(this), 0);
        pool.borrow(debt, borrowed, 2, 0, address(this)); // 2: variable rate
    }
}

/// @title BulkPositions (chainwatch devnet, benchmarks only)
/// @notice A devnet-only helper that opens many real Aave v3 positions in one transaction, for the scale
/// benchmark (`benchmarks.scale`): opening 100,000 positions one transaction at a time takes most of an hour,
/// through this a few minutes. Position `salt` is the CREATE2 clone of `holder` with that salt, so its address
/// is known before it exists. Never deploy this anywhere but a local devnet: anyone may call it.
contract BulkPositions {
    struct Spec {
        address collateral;
        uint256 supplied;
        address debt;
        uint256 borrowed;
    }

    PositionHolder public immutable holder;

    constructor() {
        holder = new PositionHolder();
    }

    /// @notice Opens `specs.length` positions, the i-th at the clone with salt `firstSalt + i`.
    function open(IBulkPool pool, uint256 firstSalt, Spec[] calldata specs) external {
        for (uint256 i = 0; i < specs.length; ++i) {
            Spec calldata spec = specs[i];
            PositionHolder(_clone(firstSalt + i)).open(pool, spec.collateral, spec.supplied, spec.debt, spec.borrowed);
        }
    }

    /// @notice The address position `salt` has (or will have).
    function holderAt(uint256 salt) external view returns (address) {
        bytes32 digest = keccak256(abi.encodePacked(bytes1(0xff), address(this), bytes32(salt), keccak256(_cloneCode())));
        return address(uint160(uint256(digest)));
    }

    function _clone(uint256 salt) private returns (address instance) {
        bytes memory code = _cloneCode();
        assembly {
            instance := create2(0, add(code, 0x20), mload(code), salt)
        }
        require(instance != address(0), "BulkPositions: salt already used");
    }

    /// @dev EIP-1167 creation code: a 45-byte runtime that delegates every call to `holder`.
    function _cloneCode() private view returns (bytes memory) {
        return abi.encodePacked(
            hex"3d602d80600a3d3981f3363d3d373d3d3d363d73", address(holder), hex"5af43d82803e903d91602b57fd5bf3"
        );
    }
}
