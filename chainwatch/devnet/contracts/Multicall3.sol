// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title Multicall3 (chainwatch devnet)
/// @notice The chainwatch project's own contract, written for tests and the local devnet. It reproduces the
/// ABI of the canonical Multicall3 functions the watcher uses (`aggregate3`, `getBlockNumber`), so that the
/// watcher can batch reads on Anvil exactly as it does on a live chain, where Multicall3 lives at
/// 0xcA11bde05977b3631167028862bE2a173976CA11. It is not a copy of the canonical source.
contract Multicall3 {
    struct Call3 {
        address target;
        bool allowFailure;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    /// @notice Runs every call in order. A failing call whose `allowFailure` is false reverts the whole
    /// batch with the same message as the canonical contract, so callers match one error text everywhere.
    function aggregate3(Call3[] calldata calls) external payable returns (Result[] memory returnData) {
        uint256 count = calls.length;
        returnData = new Result[](count);
        for (uint256 i = 0; i < count; ++i) {
            Call3 calldata item = calls[i];
            (bool success, bytes memory data) = item.target.call(item.callData);
            if (!success && !item.allowFailure) {
                revert("Multicall3: call failed");
            }
            returnData[i] = Result({success: success, returnData: data});
        }
    }

    function getBlockNumber() external view returns (uint256 blockNumber) {
        blockNumber = block.number;
    }

    function getCurrentBlockTimestamp() external view returns (uint256 timestamp) {
        timestamp = block.timestamp;
    }
}
