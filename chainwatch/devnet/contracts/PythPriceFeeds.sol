// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title PythPriceFeeds (chainwatch devnet)
/// @notice The chainwatch project's own contract, written for tests and the local devnet. It reproduces what a
/// watcher sees of the Pyth contract: one contract for every price id, each update announced by
/// `PriceFeedUpdate(bytes32 indexed id, uint64 publishTime, int64 price, uint64 conf)`, and the read
/// `getPriceUnsafe(id)` returning Pyth's `Price` struct. Pyth's signed update data is replaced by a plain setter.
contract PythPriceFeeds {
    struct Price {
        int64 price;
        uint64 conf;
        int32 expo;
        uint256 publishTime;
    }

    event PriceFeedUpdate(bytes32 indexed id, uint64 publishTime, int64 price, uint64 conf);

    mapping(bytes32 => Price) private _prices;

    function setPrice(bytes32 id, int64 price, uint64 conf, int32 expo) external {
        _prices[id] = Price({price: price, conf: conf, expo: expo, publishTime: block.timestamp});
        emit PriceFeedUpdate(id, uint64(block.timestamp), price, conf);
    }

    function getPriceUnsafe(bytes32 id) public view returns (Price memory) {
        require(_prices[id].publishTime > 0, "PriceFeedNotFound");
        return _prices[id];
    }
}
