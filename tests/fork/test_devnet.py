"""The devnet against a real Anvil: deployment shape, oracle and feeds, Multicall3, and Aave health figures."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from eth_utils import keccak
from web3 import AsyncHTTPProvider, AsyncWeb3, Web3
from web3.contract import AsyncContract
from web3.exceptions import ContractLogicError

from chainwatch.devnet.actions import DevnetActions, Position
from chainwatch.devnet.anvil import CHAIN_ID, AnvilNode, running_anvil
from chainwatch.devnet.cli import deploy_command
from chainwatch.devnet.deploy import (
    ORACLE,
    POOL,
    Devnet,
    aave_artifact,
    deploy_devnet,
    devnet_to_json,
    load_devnet,
)
from chainwatch.devnet.solc import compile_own_contracts
from chainwatch.devnet.transactions import TxFailed

MULTICALL3 = "0xcA11bde05977b3631167028862bE2a173976CA11"
EXPECTED_PRICES = {"WETH": 2000 * 10**8, "WBTC": 60000 * 10**8, "USDC": 1 * 10**8}


@pytest_asyncio.fixture(scope="module")
async def node() -> AsyncIterator[AnvilNode]:
    async with running_anvil() as running:
        yield running


@pytest_asyncio.fixture(scope="module")
async def devnet(node: AnvilNode) -> Devnet:
    return await deploy_devnet(node.http_url)


@pytest_asyncio.fixture(scope="module")
async def w3(node: AnvilNode) -> AsyncIterator[AsyncWeb3]:
    web3 = AsyncWeb3(AsyncHTTPProvider(node.http_url))
    yield web3
    await web3.provider.disconnect()


@pytest_asyncio.fixture(scope="module")
async def actions(node: AnvilNode, devnet: Devnet) -> AsyncIterator[DevnetActions]:
    async with DevnetActions(node.http_url, devnet) as running:
        yield running


@pytest_asyncio.fixture(autouse=True)
async def pristine(w3: AsyncWeb3, devnet: Devnet) -> AsyncIterator[None]:
    """Each test starts from the freshly deployed devnet (prices and positions undone afterwards)."""
    snapshot = (await w3.provider.make_request("evm_snapshot", []))["result"]  # type: ignore[arg-type]
    yield
    reverted = await w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
    assert reverted["result"] is True


async def own_contract(w3: AsyncWeb3, name: str, address: str) -> AsyncContract:
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=(await compile_own_contracts())[name].abi)


def load_devnet_bytes(raw: bytes) -> Devnet:
    return msgspec.json.decode(raw, type=Devnet)


def aave_contract(w3: AsyncWeb3, qualified: str, address: str) -> AsyncContract:
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=aave_artifact(qualified).abi)


class TestDeployment:
    async def test_json_has_exactly_the_agreed_shape(self, devnet: Devnet) -> None:
        """The devnet file has the agreed keys (one per protocol besides the chain's), and checksummed addresses."""
        data: dict[str, Any] = json.loads(devnet_to_json(devnet))
        assert set(data) == {"chain_id", "multicall3", "aave_v3", "price_sources", "morpho_blue", "euler_v2", "curvance"}
        assert load_devnet_bytes(devnet_to_json(devnet)) == devnet
        assert data["chain_id"] == CHAIN_ID
        assert data["multicall3"] == MULTICALL3
        aave = data["aave_v3"]
        assert set(aave) == {
            "pool_addresses_provider", "pool", "oracle", "data_provider", "pool_configurator", "reserves"
        }  # fmt: skip
        assert set(aave["reserves"]) == {"WETH", "WBTC", "USDC"}
        for reserve in aave["reserves"].values():
            assert set(reserve) == {"asset", "feed", "aggregator", "decimals"}
        addresses = [v for k, v in aave.items() if k != "reserves"]
        addresses += [reserve[k] for reserve in aave["reserves"].values() for k in ("asset", "feed", "aggregator")]
        assert all(Web3.is_checksum_address(a) for a in addresses)
        assert {s: r["decimals"] for s, r in aave["reserves"].items()} == {"WETH": 18, "WBTC": 8, "USDC": 6}

    async def test_json_round_trips_through_a_file(self, devnet: Devnet, tmp_path: Path) -> None:
        """load_devnet reads back exactly what devnet_to_json wrote."""
        path = tmp_path / "devnet.json"
        path.write_bytes(devnet_to_json(devnet))
        assert load_devnet(path) == devnet

    async def test_provider_resolves_the_deployed_contracts(self, w3: AsyncWeb3, devnet: Devnet) -> None:
        """The addresses provider points at the pool, oracle, configurator and data provider in the file."""
        aave = devnet.aave_v3
        provider = aave_contract(w3, "contracts/protocol/configuration/PoolAddressesProvider.sol:PoolAddressesProvider",
                                 aave.pool_addresses_provider)  # fmt: skip
        assert await provider.functions.getPool().call() == aave.pool
        assert await provider.functions.getPriceOracle().call() == aave.oracle
        assert await provider.functions.getPoolConfigurator().call() == aave.pool_configurator
        assert await provider.functions.getPoolDataProvider().call() == aave.data_provider
        pool = aave_contract(w3, POOL, aave.pool)
        assert devnet.price_sources is not None  # reserves priced by other oracles, listed after the first three
        others = devnet.price_sources.reserves.values()
        assert await pool.functions.getReservesList().call() == [r.asset for r in (*aave.reserves.values(), *others)]

    async def test_cli_writes_the_file_and_one_summary_line(
        self, node: AnvilNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`chainwatch devnet deploy` writes a loadable file and prints a single line."""
        out = tmp_path / "nested" / "devnet.json"
        await deploy_command(node.http_url, out)
        assert load_devnet(out).chain_id == CHAIN_ID
        printed = capsys.readouterr().out
        assert printed.count("\n") == 1 and str(out) in printed


class TestOracle:
    async def test_oracle_prices_each_asset_from_its_feed(self, w3: AsyncWeb3, devnet: Devnet) -> None:
        """AaveOracle.getAssetPrice gives $2000, $60000 and $1 with 8 decimals."""
        oracle = aave_contract(w3, ORACLE, devnet.aave_v3.oracle)
        for symbol, reserve in devnet.aave_v3.reserves.items():
            assert await oracle.functions.getAssetPrice(reserve.asset).call() == EXPECTED_PRICES[symbol]
            assert await oracle.functions.getSourceOfAsset(reserve.asset).call() == reserve.feed

    async def test_usdc_source_is_a_proxy_over_the_settable_feed(self, w3: AsyncWeb3, devnet: Devnet) -> None:
        """USDC's oracle source is a FeedProxy whose aggregator() (phase 1) is the SettableFeed; the others are direct."""
        reserves = devnet.aave_v3.reserves
        usdc = reserves["USDC"]
        assert usdc.feed != usdc.aggregator
        proxy = await own_contract(w3, "FeedProxy", usdc.feed)
        assert await proxy.functions.aggregator().call() == usdc.aggregator
        phase = await proxy.functions.phaseId().call()  # as EACAggregatorProxy: what tells it from a look-alike
        assert phase == 1 and await proxy.functions.phaseAggregators(phase).call() == usdc.aggregator
        assert await proxy.functions.latestAnswer().call() == EXPECTED_PRICES["USDC"]
        assert await proxy.functions.decimals().call() == 8
        assert all(reserves[s].feed == reserves[s].aggregator for s in ("WETH", "WBTC"))

    async def test_update_answer_emits_chainlink_events_and_moves_the_oracle(
        self, w3: AsyncWeb3, devnet: Devnet, actions: DevnetActions
    ) -> None:
        """set_price emits AnswerUpdated and NewRound from the aggregator, nothing from the proxy."""
        usdc = devnet.aave_v3.reserves["USDC"]
        block = await actions.set_price("USDC", Decimal("0.97"))
        feed_logs = await w3.eth.get_logs({"address": usdc.aggregator, "fromBlock": block, "toBlock": block})
        by_topic0 = {bytes(log["topics"][0]): log for log in feed_logs}
        answer_updated = by_topic0[keccak(text="AnswerUpdated(int256,uint256,uint256)")]
        assert int.from_bytes(answer_updated["topics"][1], "big") == 97_000_000
        assert int.from_bytes(answer_updated["topics"][2], "big") == 2  # round 1 was the constructor's
        assert keccak(text="NewRound(uint256,address,uint256)") in by_topic0
        assert await w3.eth.get_logs({"address": usdc.feed, "fromBlock": block, "toBlock": block}) == []
        oracle = aave_contract(w3, ORACLE, devnet.aave_v3.oracle)
        assert await oracle.functions.getAssetPrice(usdc.asset).call() == 97_000_000
        feed = await own_contract(w3, "SettableFeed", usdc.aggregator)
        round_id, answer, _, updated_at, answered_in = await feed.functions.latestRoundData().call()
        assert (round_id, answer, answered_in) == (2, 97_000_000, 2) and updated_at > 0


class TestMulticall3:
    async def test_aggregate3_at_the_canonical_address(self, w3: AsyncWeb3, devnet: Devnet) -> None:
        """aggregate3 returns each call's success and data; a failure is reported when allowed."""
        multicall = await own_contract(w3, "Multicall3", MULTICALL3)
        oracle = aave_contract(w3, ORACLE, devnet.aave_v3.oracle)
        weth = devnet.aave_v3.reserves["WETH"]
        feed = await own_contract(w3, "SettableFeed", weth.aggregator)
        price_call = (oracle.address, False, oracle.encode_abi("getAssetPrice", args=[weth.asset]))
        missing_round = (feed.address, True, feed.encode_abi("getRoundData", args=[999]))
        (ok, price_data), (failed, _) = await multicall.functions.aggregate3([price_call, missing_round]).call()
        assert ok and int.from_bytes(price_data, "big") == EXPECTED_PRICES["WETH"]
        assert not failed
        assert await multicall.functions.getBlockNumber().call() == await w3.eth.block_number

    async def test_aggregate3_reverts_when_a_required_call_fails(self, w3: AsyncWeb3, devnet: Devnet) -> None:
        """A failing call with allowFailure false reverts the batch with Multicall3's message."""
        multicall = await own_contract(w3, "Multicall3", MULTICALL3)
        feed = await own_contract(w3, "SettableFeed", devnet.aave_v3.reserves["WETH"].aggregator)
        required_missing_round = (feed.address, False, feed.encode_abi("getRoundData", args=[999]))
        with pytest.raises(ContractLogicError, match="Multicall3: call failed"):
            await multicall.functions.aggregate3([required_missing_round]).call()


class TestAavePositions:
    async def test_reference_health_factors(self, w3: AsyncWeb3, devnet: Devnet, actions: DevnetActions) -> None:
        """1 WETH at $2000 against 1500 USDC: HF 1.1333; with WETH at $1700: HF 0.9633."""
        account = (await actions.anvil_accounts())[1]
        await actions.open_position(account, supply={"WETH": 1}, borrow={"USDC": 1500})
        pool = aave_contract(w3, POOL, devnet.aave_v3.pool)
        health = (await pool.functions.getUserAccountData(account).call())[5]
        assert health == pytest.approx(1.1333333e18, rel=1e-6)
        await actions.set_price("WETH", 1700)
        health = (await pool.functions.getUserAccountData(account).call())[5]
        assert health == pytest.approx(0.9633333e18, rel=1e-6)

    async def test_interest_accrues_without_any_transaction(
        self, w3: AsyncWeb3, devnet: Devnet, actions: DevnetActions
    ) -> None:
        """A year later the same position is less healthy: the rates are not zero."""
        account = (await actions.anvil_accounts())[2]
        await actions.open_position(account, supply={"WETH": 1}, borrow={"USDC": 1500})
        pool = aave_contract(w3, POOL, devnet.aave_v3.pool)
        before = (await pool.functions.getUserAccountData(account).call())[5]
        await actions.advance_time(365 * 24 * 3600)
        after = (await pool.functions.getUserAccountData(account).call())[5]
        assert after < before * 0.99

    async def test_repay_and_withdraw_close_the_position(
        self, w3: AsyncWeb3, devnet: Devnet, actions: DevnetActions
    ) -> None:
        """Repaying everything and withdrawing everything leaves no debt and no collateral."""
        account = (await actions.anvil_accounts())[3]
        await actions.open_position(account, supply={"WBTC": Decimal("0.05")}, borrow={"USDC": 1000})
        await actions.borrow(account, "USDC", 100)
        await actions.repay(account, "USDC", 50)
        await actions.repay(account, "USDC")
        block = await actions.withdraw(account, "WBTC")
        pool = aave_contract(w3, POOL, devnet.aave_v3.pool)
        collateral, debt, *_ = await pool.functions.getUserAccountData(account).call(block_identifier=block)
        assert (collateral, debt) == (0, 0)

    @pytest.mark.parametrize(
        ("supply", "error"),
        [({}, "COLLATERAL_BALANCE_IS_ZERO"), ({"WETH": 1}, "COLLATERAL_CANNOT_COVER_NEW_BORROW")],
    )
    async def test_failed_transaction_names_the_action_and_the_aave_error(
        self, actions: DevnetActions, supply: dict[str, int], error: str
    ) -> None:
        """A borrow beyond the collateral raises TxFailed naming the borrow and Aave's error by name."""
        account = (await actions.anvil_accounts())[4]
        with pytest.raises(TxFailed, match=rf"borrow 1700 USDC by .*: reverted: \d+ \({error}\)"):
            await actions.open_position(account, supply=supply, borrow={"USDC": 1700})

    async def test_many_funded_borrowers_open_positions_at_once(
        self, w3: AsyncWeb3, devnet: Devnet, actions: DevnetActions
    ) -> None:
        """Derived, impersonated accounts all end up with the position they were given."""
        borrowers = await actions.fund_accounts(60, label="test-many")
        positions = [Position(account=b, supply={"WETH": Decimal(1)}, borrow={"USDC": Decimal(500 + i)})
                     for i, b in enumerate(borrowers)]  # fmt: skip
        block = await actions.open_positions(positions)
        pool = aave_contract(w3, POOL, devnet.aave_v3.pool)
        multicall = await own_contract(w3, "Multicall3", MULTICALL3)
        calls = [(pool.address, False, pool.encode_abi("getUserAccountData", args=[b])) for b in borrowers]
        results = await multicall.functions.aggregate3(calls).call(block_identifier=block)
        debts = [int.from_bytes(data[32:64], "big") for _, data in results]
        # Waves mined in a later second have accrued a little interest by `block`.
        assert debts == [pytest.approx((500 + i) * 10**8, rel=1e-6) for i in range(len(borrowers))]


async def test_running_anvil_serves_http_and_ws_and_stops() -> None:
    """A second node gets its own port, answers on ws:// too, and is gone after the block."""
    async with running_anvil() as second:
        assert second.ws_url == f"ws://127.0.0.1:{second.port}"
        web3 = AsyncWeb3(AsyncHTTPProvider(second.http_url))
        assert await web3.eth.chain_id == CHAIN_ID
        await web3.provider.disconnect()
    assert second.process.returncode is not None
