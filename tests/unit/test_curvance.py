"""Curvance: resolving managers to cTokens and feeds; logs -> accounts from event data; reads -> health per manager."""

import math
from collections.abc import Sequence

import pytest
from eth_abi import encode
from eth_utils import keccak, to_checksum_address
from structlog.testing import capture_logs

from chainwatch.abi import calldata
from chainwatch.chain import Log
from chainwatch.config import CurvanceConfig, parse_address
from chainwatch.model import Side
from chainwatch.multicall import Call, CallResult
from chainwatch.protocols.base import AccountsTouched, MarketsTouched, ReadError, SourcesChanged
from chainwatch.protocols.curvance import Curvance

MANAGER, ORACLE, ADAPTOR = "0x" + "a1" * 20, "0x" + "a2" * 20, "0x" + "a3" * 20
C_WETH, C_USDC = "0x" + "c1" * 20, "0x" + "c2" * 20
WETH, USDC = "0x" + "01" * 20, "0x" + "02" * 20
WETH_FEED, USDC_PROXY, USDC_AGGREGATOR = "0x" + "f1" * 20, "0x" + "f2" * 20, "0x" + "f3" * 20
USER, OTHER = to_checksum_address("0x" + "d1" * 20), to_checksum_address("0x" + "e2" * 20)
KEY_WETH, KEY_USDC = f"{MANAGER}:{WETH}", f"{MANAGER}:{USDC}"
WAD = 10**18
FAILED = CallResult(success=False, data=b"")


def ok(types: list[str], *values: object) -> CallResult:
    return CallResult(success=True, data=encode(types, list(values)))


def chain_answers() -> dict[tuple[str, bytes], CallResult]:
    """A manager listing cWETH and cUSDC; WETH priced from a bare feed, USDC from a proxy, one adaptor each."""
    config = ["bool", "address"] + ["uint256"] * 6
    day = 86400
    return {
        (MANAGER, calldata("queryTokensListed()")): ok(["address[]"], [C_WETH, C_USDC]),
        (MANAGER, calldata("oracleManager()")): ok(["address"], ORACLE),
        (C_WETH, calldata("asset()")): ok(["address"], WETH),
        (C_USDC, calldata("asset()")): ok(["address"], USDC),
        (WETH, calldata("symbol()")): ok(["string"], "WETH"),
        (USDC, calldata("symbol()")): ok(["string"], "USDC"),
        (ORACLE, calldata("assetPriceFeeds(address,uint256)", WETH, 0)): ok(["address"], ADAPTOR),
        (ORACLE, calldata("assetPriceFeeds(address,uint256)", USDC, 0)): ok(["address"], ADAPTOR),
        (ADAPTOR, calldata("assetConfig(address,bool)", WETH, True)): ok(config, True, WETH_FEED, 8, day, 0, 0, 0, 0),
        (ADAPTOR, calldata("assetConfig(address,bool)", USDC, True)): ok(config, True, USDC_PROXY, 8, day, 0, 0, 0, 0),
        (USDC_PROXY, calldata("aggregator()")): ok(["address"], USDC_AGGREGATOR),
    }


class FakeReader:
    """Answers each call from a table keyed by (target, calldata); anything else reverts, as a missing function does."""

    def __init__(self, answers: dict[tuple[str, bytes], CallResult]) -> None:
        self.answers = answers

    async def read(self, calls: Sequence[Call], block: int) -> list[CallResult]:
        return [self.answers.get((call.target.lower(), call.data), FAILED) for call in calls]


async def resolved(answers: dict[tuple[str, bytes], CallResult] | None = None) -> Curvance:
    protocol = Curvance(CurvanceConfig(name="curvance", market_managers=(parse_address(MANAGER),)))
    await protocol.resolve(FakeReader(chain_answers() if answers is None else answers), 100)  # type: ignore[arg-type]
    return protocol


def log_of(address: str, signature: str, data: bytes) -> Log:
    return Log(address=address, topics=("0x" + keccak(text=signature).hex(),), data=data, block_number=5,
               block_hash="0x01", log_index=0, transaction_hash="0x02")  # fmt: skip


class TestResolve:
    async def test_feeds_map_to_manager_asset_keys(self) -> None:
        """Each feed prices its asset in this manager; USDC's proxy is followed to the aggregator that emits."""
        protocol = await resolved()
        assert protocol.price_feeds() == {WETH_FEED: frozenset({KEY_WETH}), USDC_AGGREGATOR: frozenset({KEY_USDC})}

    async def test_log_filter_names_every_emitter(self) -> None:
        """The manager, both cTokens and the adaptor are subscribed; price feeds are left to the engine."""
        protocol = await resolved()
        assert set(protocol.log_filter().addresses) == {MANAGER, C_WETH, C_USDC, ADAPTOR}
        assert "0x" + keccak(text="Borrow(uint256,address)").hex() in protocol.log_filter().topic0s

    async def test_oracle_manager_found_through_the_central_registry(self) -> None:
        """A manager without `oracleManager()` (as Curvance's ABI has it) is followed to its CentralRegistry."""
        registry = "0x" + "ab" * 20
        answers = chain_answers()
        del answers[(MANAGER, calldata("oracleManager()"))]
        answers[(MANAGER, calldata("centralRegistry()"))] = ok(["address"], registry)
        answers[(registry, calldata("oracleManager()"))] = ok(["address"], ORACLE)
        protocol = await resolved(answers)
        assert protocol.markets[MANAGER].oracle_manager == to_checksum_address(ORACLE)

    async def test_a_second_adaptor_adds_its_feed(self) -> None:
        """With two adaptors for an asset, either feed moving re-reads the holders."""
        second_adaptor, second_feed = "0x" + "a4" * 20, "0x" + "f4" * 20
        answers = chain_answers()
        answers[(ORACLE, calldata("assetPriceFeeds(address,uint256)", WETH, 1))] = ok(["address"], second_adaptor)
        answers[(second_adaptor, calldata("assetConfig(address,bool)", WETH, True))] = ok(
            ["bool", "address"] + ["uint256"] * 6, True, second_feed, 8, 0, 0, 0, 0, 0
        )
        protocol = await resolved(answers)
        assert protocol.price_feeds()[second_feed] == frozenset({KEY_WETH})
        assert protocol.price_feeds()[WETH_FEED] == frozenset({KEY_WETH})

    async def test_unfollowable_adaptor_is_logged(self) -> None:
        """An adaptor without a Chainlink-style config leaves its asset unpriced by events, and says so."""
        answers = chain_answers()
        del answers[(ADAPTOR, calldata("assetConfig(address,bool)", WETH, True))]
        with capture_logs() as logs:
            protocol = await resolved(answers)
        assert WETH_FEED not in protocol.price_feeds()
        assert [entry["asset"] for entry in logs if entry["event"] == "curvance.feed_unknown"] == [WETH]

    async def test_unreadable_token_list_is_an_error(self) -> None:
        """A manager whose token list cannot be read fails resolution rather than watching nothing."""
        answers = chain_answers()
        del answers[(MANAGER, calldata("queryTokensListed()"))]
        with pytest.raises(ReadError, match="queryTokensListed"):
            await resolved(answers)


class TestTouchedBy:
    @pytest.mark.parametrize(
        ("signature", "types", "values"),
        [
            ("Borrow(uint256,address)", ["uint256", "address"], [10, USER]),
            ("Repay(uint256,address,address)", ["uint256", "address", "address"], [10, OTHER, USER]),
            ("CollateralUpdated(uint256,bool,address)", ["uint256", "bool", "address"], [10, False, USER]),
            ("Liquidated(uint256,address,address)", ["uint256", "address", "address"], [10, OTHER, USER]),
            ("Borrow(uint256,uint256,address)", ["uint256", "uint256", "address"], [10, 20, USER]),
            ("Repay(uint256,uint256,address,address)", ["uint256", "uint256", "address", "address"],
             [10, 20, OTHER, USER]),
        ],
    )  # fmt: skip
    async def test_ctoken_event_names_its_account_in_data(self, signature: str, types: list[str], values: list) -> None:
        """The account whose position changed is decoded from the data (not the payer or the liquidator)."""
        protocol = await resolved()
        touch = protocol.touched_by(log_of(C_USDC, signature, encode(types, values)))
        assert touch == AccountsTouched(accounts=frozenset({USER}))

    async def test_position_updated_names_its_account(self) -> None:
        """The manager's PositionUpdated(cToken, account, open) touches that account."""
        protocol = await resolved()
        data = encode(["address", "address", "bool"], [C_WETH, USER, True])
        assert protocol.touched_by(log_of(MANAGER, "PositionUpdated(address,address,bool)", data)) == AccountsTouched(
            accounts=frozenset({USER})
        )

    async def test_token_config_change_touches_that_tokens_holders(self) -> None:
        """A new collateral ratio for cWETH re-reads every account exposed to WETH in this manager."""
        protocol = await resolved()
        data = encode(["(address" + ",uint256" * 12 + ")"], [(C_WETH, *([0] * 12))])
        touch = protocol.touched_by(log_of(MANAGER, "TokenConfigUpdated((address" + ",uint256" * 12 + "))", data))
        assert touch == MarketsTouched(keys=frozenset({KEY_WETH}))

    @pytest.mark.parametrize(
        ("address", "signature", "data"),
        [
            (MANAGER, "TokenListed(address)", encode(["address"], ["0x" + "c9" * 20])),
            (ADAPTOR, "ChainlinkAssetRemoved(address)", encode(["address"], [WETH])),
        ],
    )
    async def test_new_tokens_or_feeds_ask_to_resolve_again(self, address: str, signature: str, data: bytes) -> None:
        """A listed token or a changed adaptor feed means the cTokens or feeds must be found again."""
        protocol = await resolved()
        assert protocol.touched_by(log_of(address, signature, data)) == SourcesChanged()

    async def test_undecodable_ctoken_event_touches_all_holders(self) -> None:
        """When the account cannot be decoded, everyone holding the token is re-read rather than no one."""
        protocol = await resolved()
        assert protocol.touched_by(log_of(C_WETH, "Borrow(uint256,address)", b"\x01")) == MarketsTouched(
            keys=frozenset({KEY_WETH})
        )

    @pytest.mark.parametrize(
        ("address", "signature"),
        [(OTHER.lower(), "Borrow(uint256,address)"), (C_WETH, "Transfer(address,address,uint256)")],
    )
    async def test_other_logs_touch_nothing(self, address: str, signature: str) -> None:
        """A Curvance-shaped event from elsewhere, or another event of a cToken, means nothing."""
        protocol = await resolved()
        assert protocol.touched_by(log_of(address, signature, encode(["uint256", "address"], [1, USER]))) is None


def status(collateral: float, max_debt: float, debt: float) -> CallResult:
    return ok(["uint256"] * 3, int(collateral * WAD), int(max_debt * WAD), int(debt * WAD))


def snapshot(c_token: str, asset: str, posted: int, owed: int) -> CallResult:
    return ok(["address", "address", "uint8", "bool", "uint256", "uint256"], c_token, asset, 18, True, posted, owed)


def price(usd: float, error_code: int = 0) -> CallResult:
    return ok(["uint256", "uint256"], int(usd * WAD), error_code)


class TestDecodeAccount:
    async def test_calls_per_manager(self) -> None:
        """One statusOf, then a snapshot and a price per cToken, in the order its decode expects."""
        protocol = await resolved()
        calls = protocol.plan(USER).calls
        assert [call.target.lower() for call in calls] == [MANAGER, C_WETH, ORACLE, C_USDC, ORACLE]

    async def test_health_is_max_debt_over_debt(self) -> None:
        """Health is the manager's own ratio; the reading is keyed by the manager; exposure names held assets."""
        protocol = await resolved()
        results = [status(2000, 1700, 1000), snapshot(C_WETH, WETH, WAD, 0), price(2000),
                   snapshot(C_USDC, USDC, 0, 1000 * 10**6), price(1)]  # fmt: skip
        outcome = protocol.plan(USER).decode(results, 7)
        (reading,) = outcome.readings
        assert reading.key.market == to_checksum_address(MANAGER) and reading.key.account == USER
        assert (reading.health_factor, reading.collateral, reading.debt, reading.block) == (1.7, 2000, 1000, 7)
        assert outcome.exposure == frozenset({KEY_WETH, KEY_USDC})

    async def test_single_collateral_has_a_liquidation_price(self) -> None:
        """With one collateral, health reaches 1.0 when its price falls by the factor 1/health."""
        protocol = await resolved()
        results = [status(2000, 1700, 1000), snapshot(C_WETH, WETH, WAD, 0), price(2000),
                   snapshot(C_USDC, USDC, 0, 1000 * 10**6), price(1)]  # fmt: skip
        (reading,) = protocol.plan(USER).decode(results, 7).readings
        assert reading.liquidation_price == pytest.approx(2000 / 1.7)
        assert reading.liquidation_asset == "WETH"

    @pytest.mark.parametrize(
        ("weth_posted", "usdc_posted", "weth_price"),
        [(WAD, 10**6, price(2000)), (WAD, 0, price(2000, error_code=1)), (WAD, 0, FAILED)],
        ids=["two collaterals", "price flagged", "price reverted"],
    )
    async def test_no_liquidation_price_when_unknowable(
        self, weth_posted: int, usdc_posted: int, weth_price: CallResult
    ) -> None:
        """Several collaterals or an unusable price leave the liquidation price out, never the reading."""
        protocol = await resolved()
        results = [status(2001, 1700.85, 500), snapshot(C_WETH, WETH, weth_posted, 0), weth_price,
                   snapshot(C_USDC, USDC, usdc_posted, 0), price(1)]  # fmt: skip
        (reading,) = protocol.plan(USER).decode(results, 7).readings
        assert reading.health_factor == pytest.approx(3.4017)
        assert reading.liquidation_price is None and reading.liquidation_asset == ""

    async def test_collateral_worth_nothing_is_zero_health(self) -> None:
        """Debt against collateral whose ratio is 0 reads as health 0, with no liquidation price to reach."""
        protocol = await resolved()
        results = [status(2000, 0, 1000), snapshot(C_WETH, WETH, WAD, 0), price(2000),
                   snapshot(C_USDC, USDC, 0, 1000 * 10**6), price(1)]  # fmt: skip
        (reading,) = protocol.plan(USER).decode(results, 7).readings
        assert reading.health_factor == 0 and reading.liquidation_price is None

    async def test_no_debt_is_infinite_health(self) -> None:
        """An account with collateral and no debt is at infinite health, exposed to its collateral only."""
        protocol = await resolved()
        results = [status(2000, 1700, 0), snapshot(C_WETH, WETH, WAD, 0), price(2000),
                   snapshot(C_USDC, USDC, 0, 0), price(1)]  # fmt: skip
        outcome = protocol.plan(USER).decode(results, 7)
        assert math.isinf(outcome.readings[0].health_factor) and outcome.readings[0].liquidation_price is None
        assert outcome.exposure == frozenset({KEY_WETH})

    @pytest.mark.parametrize("bad", [0, 1], ids=["statusOf", "getSnapshot"])
    @pytest.mark.parametrize("result", [FAILED, CallResult(success=True, data=b"\x00" * 5)], ids=["reverted", "short"])
    async def test_bad_results_are_errors(self, bad: int, result: CallResult) -> None:
        """A reverted or undecodable health or position read is an error, never a position without debt."""
        protocol = await resolved()
        results = [status(2000, 1700, 1000), snapshot(C_WETH, WETH, WAD, 0), price(2000),
                   snapshot(C_USDC, USDC, 0, 10**9), price(1)]  # fmt: skip
        results[bad] = result
        with pytest.raises(ReadError):
            protocol.plan(USER).decode(results, 7)


class TestDetailedPlan:
    async def test_hot_path_calls_unchanged_and_details_appended(self) -> None:
        """The plain plan is unchanged; detailed appends each token's ratio and higher price after the market's calls."""
        protocol = await resolved()
        plain, detailed = protocol.plan(USER).calls, protocol.plan(USER, detailed=True).calls
        assert detailed[: len(plain)] == plain
        assert [call.target.lower() for call in detailed[len(plain) :]] == [MANAGER, ORACLE, MANAGER, ORACLE]

    async def test_lines_weigh_collateral_by_its_ratio_and_value_debt_at_the_higher_price(self) -> None:
        """1 WETH at a lower price of 2,000 with ratio 0.85; 1,000 USDC owed at a higher price of 1.01."""
        protocol = await resolved()
        results = [status(2000, 1700, 1010), snapshot(C_WETH, WETH, WAD, 0), price(2000),
                   snapshot(C_USDC, USDC, 0, 1000 * WAD), price(1),
                   ok(["uint256"], 85 * WAD // 100), price(2001), ok(["uint256"], 85 * WAD // 100), price(1.01)]  # fmt: skip
        (reading,) = protocol.plan(USER, detailed=True).decode(results, 7).readings
        weth, usdc = reading.assets
        assert (weth.symbol, weth.side, weth.amount, weth.value, weth.weight) == ("WETH", Side.COLLATERAL, 1.0, 2000.0, 0.85)
        assert (usdc.symbol, usdc.side, usdc.amount, usdc.value) == ("USDC", Side.DEBT, 1000.0, pytest.approx(1010.0))
        assert weth.value * weth.weight / usdc.value == pytest.approx(reading.health_factor)
