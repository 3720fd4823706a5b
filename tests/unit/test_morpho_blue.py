"""Morpho Blue: event signatures against the package source, log -> touch, discovery, and Morpho's health math."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import pytest
from eth_abi import encode
from eth_utils import keccak, to_checksum_address
from structlog.testing import capture_logs

from chainwatch.abi import calldata
from chainwatch.chain import Log
from chainwatch.config import MorphoBlueConfig
from chainwatch.feeds import PriceSource
from chainwatch.devnet.solc import node_package
from chainwatch.model import Discovered, Side
from chainwatch.multicall import Call, CallResult
from chainwatch.protocols import morpho_blue
from chainwatch.protocols.base import (
    AccountReading,
    AccountsTouched,
    MarketsFound,
    MarketsTouched,
    ReadError,
    SourcesChanged,
)
from chainwatch.protocols.plans import PlanCache
from chainwatch.protocols.morpho_blue import Market, MorphoBlue, borrowed_assets, health_factor, max_borrow

MORPHO = to_checksum_address("0x" + "aa" * 20)
USER, OTHER = to_checksum_address("0x" + "d1" * 20), to_checksum_address("0x" + "e2" * 20)
LOAN, COLLATERAL = to_checksum_address("0x" + "01" * 20), to_checksum_address("0x" + "02" * 20)
ORACLE, IRM = to_checksum_address("0x" + "03" * 20), to_checksum_address("0x" + "04" * 20)
PROXY, FEED, QUOTE_FEED = "0x" + "05" * 20, "0x" + "06" * 20, "0x" + "07" * 20
MARKET_A, MARKET_B, MARKET_C = "0x" + "a1" * 32, "0x" + "b2" * 32, "0x" + "c3" * 32
BAD_TOKEN = to_checksum_address("0x" + "0b" * 20)  # its decimals() reverts
LLTV = 86 * 10**16
PARAMS = (LOAN, COLLATERAL, ORACLE, IRM, LLTV)


def word(address: str) -> str:
    return "0x" + "00" * 12 + address[2:].lower()


def morpho_log(topic0: str, *topics: str, address: str = MORPHO) -> Log:
    return Log(address=address.lower(), topics=(topic0, *topics), data=b"", block_number=5, block_hash="0x01",
               log_index=0, transaction_hash="0x02")  # fmt: skip


def ok(types: list[str], *values: Any) -> CallResult:
    return CallResult(success=True, data=encode(types, list(values)))


FAILED = CallResult(success=False, data=b"")


def market(market_id: str = MARKET_A) -> Market:
    return Market(id=market_id, params=PARAMS, loan_symbol="USDC", loan_decimals=6, collateral_symbol="WETH",
                  collateral_decimals=18, feeds=(PriceSource(emitter=FEED),))  # fmt: skip


def protocol(**resolved: Market) -> MorphoBlue:
    """An adapter with these markets configured and already resolved."""
    adapter = MorphoBlue(MorphoBlueConfig(name="morpho", morpho=MORPHO, markets=tuple(m.id for m in resolved.values())))
    adapter.markets = {m.id: m for m in resolved.values()}
    return adapter


def totals(total_borrow_assets: int, total_borrow_shares: int, last_update: int = 100) -> CallResult:
    return ok(["uint128"] * 6, 0, 0, total_borrow_assets, total_borrow_shares, last_update, 0)


def market_results(borrow_shares: int, collateral: int, price: CallResult, pair: CallResult) -> list[CallResult]:
    """One market's six results in plan order: accrue, market, accrue, market, position, price."""
    accrued = CallResult(success=True, data=b"")
    position = ok(["uint256", "uint128", "uint128"], 0, borrow_shares, collateral)
    return [accrued, pair, accrued, pair, position, price]


WETH_2000 = ok(["uint256"], 2000 * 10**6 * 10**36 // 10**18)  # 1 WETH (1e18) = 2,000 USDC (2e9), scaled 1e36


class TestEventsMatchThePackage:
    @staticmethod
    def events() -> dict[str, list[tuple[str, bool, str]]]:
        """EventsLib.sol's events: name -> [(canonical type, indexed, parameter name)]."""
        source = (node_package("@morpho-org/morpho-blue") / "src/libraries/EventsLib.sol").read_text()
        found = {}
        for name, body in re.findall(r"event\s+(\w+)\s*\(([^)]*)\)", source):
            params = [part.split() for part in body.split(",") if part.strip()]
            found[name] = [("bytes32" if p[0] == "Id" else p[0], "indexed" in p, p[-1]) for p in params]
        return found

    @pytest.mark.parametrize(
        ("name", "topic0", "account"),
        [("Borrow", morpho_blue.BORROW, "onBehalf"), ("Repay", morpho_blue.REPAY, "onBehalf"),
         ("SupplyCollateral", morpho_blue.SUPPLY_COLLATERAL, "onBehalf"),
         ("WithdrawCollateral", morpho_blue.WITHDRAW_COLLATERAL, "onBehalf"),
         ("Liquidate", morpho_blue.LIQUIDATE, "borrower")],
    )  # fmt: skip
    def test_account_events(self, name: str, topic0: str, account: str) -> None:
        """topic0 is keccak of EventsLib's signature, and the account topic is the position's owner, id in topic1."""
        params = self.events()[name]
        assert topic0 == "0x" + keccak(text=f"{name}({','.join(p[0] for p in params)})").hex()
        indexed = [p[2] for p in params if p[1]]
        assert indexed[0] == "id" and morpho_blue.ACCOUNT_TOPIC[topic0] == 1 + indexed.index(account)

    def test_accrue_interest_names_the_market(self) -> None:
        """AccrueInterest's signature matches EventsLib and its only indexed parameter is the market id."""
        params = self.events()["AccrueInterest"]
        signature = f"AccrueInterest({','.join(p[0] for p in params)})"
        assert morpho_blue.ACCRUE_INTEREST == "0x" + keccak(text=signature).hex()
        assert [p[2] for p in params if p[1]] == ["id"]

    def test_read_functions_exist_in_imorpho(self) -> None:
        """The reads chainwatch makes are declared in IMorpho.sol with the argument and result types it decodes."""
        text = (node_package("@morpho-org/morpho-blue") / "src/interfaces/IMorpho.sol").read_text()
        source = re.sub(r"\s+\)", ")", re.sub(r"\(\s+", "(", " ".join(text.split())))
        views = {
            "position(Id id, address user)": "uint256 supplyShares, uint128 borrowShares, uint128 collateral",
            "market(Id id)": "uint128 totalSupplyAssets, uint128 totalSupplyShares, uint128 totalBorrowAssets, "
                             "uint128 totalBorrowShares, uint128 lastUpdate, uint128 fee",
            "idToMarketParams(Id id)": "address loanToken, address collateralToken, address oracle, address irm, "
                                       "uint256 lltv",
        }  # fmt: skip
        for function, returns in views.items():
            assert f"function {function} external view returns ({returns});" in source
        assert "function accrueInterest(MarketParams memory marketParams) external;" in source
        assert "struct MarketParams { address loanToken; address collateralToken; address oracle; address irm; " \
               "uint256 lltv; }" in source  # the tuple order accrueInterest's calldata encodes


class TestTouchedBy:
    @pytest.mark.parametrize(
        ("topic0", "topics"),
        [(morpho_blue.BORROW, [word(USER), word(OTHER)]),  # caller is not indexed; the receiver is topic3
         (morpho_blue.REPAY, [word(OTHER), word(USER)]),
         (morpho_blue.SUPPLY_COLLATERAL, [word(OTHER), word(USER)]),
         (morpho_blue.WITHDRAW_COLLATERAL, [word(USER), word(OTHER)]),
         (morpho_blue.LIQUIDATE, [word(OTHER), word(USER)])],
    )  # fmt: skip
    def test_account_events_touch_the_position_owner(self, topic0: str, topics: list[str]) -> None:
        """Each position event touches its owner (onBehalf or borrower), never the caller or receiver."""
        adapter = protocol(a=market())
        touch = adapter.touched_by(morpho_log(topic0, MARKET_A, *topics))
        assert touch == AccountsTouched(accounts=frozenset({USER}))

    def test_accrue_interest_touches_the_market(self) -> None:
        """AccrueInterest is market-wide drift: its key is the market id, as exposure holds it."""
        touch = protocol(a=market()).touched_by(morpho_log(morpho_blue.ACCRUE_INTEREST, MARKET_A))
        assert touch == MarketsTouched(keys=frozenset({MARKET_A}), drift=True)

    def test_other_logs_touch_nothing(self) -> None:
        """Lender-side Supply and any log from another contract mean nothing for borrowers."""
        supply = keccak(text="Supply(bytes32,address,address,uint256,uint256)").hex()
        adapter = protocol(a=market())
        assert adapter.touched_by(morpho_log("0x" + supply, MARKET_A, word(USER), word(USER))) is None
        elsewhere = morpho_log(morpho_blue.REPAY, MARKET_A, word(USER), word(USER), address=OTHER)
        assert adapter.touched_by(elsewhere) is None

    async def test_watched_account_in_unknown_market_asks_to_resolve(self) -> None:
        """A watched account's event in an unresolved market means: resolve that market (only), resubscribe, then
        read that account there."""
        adapter = MorphoBlue(MorphoBlueConfig(name="morpho", morpho=MORPHO))
        await adapter.discover(FakeRpc([]), FakeReader({}), [USER], 10)
        watched = morpho_log(morpho_blue.SUPPLY_COLLATERAL, MARKET_B, word(USER), word(USER))
        stranger = morpho_log(morpho_blue.SUPPLY_COLLATERAL, MARKET_B, word(OTHER), word(OTHER))
        assert adapter.touched_by(watched) == MarketsFound(accounts=frozenset({USER}))
        assert adapter.touched_by(stranger) == AccountsTouched(accounts=frozenset({OTHER}))
        adapter.markets[MARKET_B] = market(MARKET_B)  # what the re-resolve brings
        assert len(adapter.plan(USER).calls) == 6 and len(adapter.plan(OTHER).calls) == 0


class TestDiscovery:
    async def test_scans_bounded_ranges_by_owner_topic(self) -> None:
        """Past SupplyCollateral (owner topic3) and Borrow (owner topic2) are fetched in ranges of at most log_range."""
        past = {"address": MORPHO.lower(), "topics": [morpho_blue.SUPPLY_COLLATERAL, MARKET_A, word(OTHER), word(USER)],
                "data": "0x", "blockNumber": "0x6", "blockHash": "0x01", "logIndex": "0x0", "transactionHash": "0x02"}
        rpc = FakeRpc([past])
        adapter = MorphoBlue(MorphoBlueConfig(name="morpho", morpho=MORPHO, discovery_from_block=5), log_range=3)
        await adapter.discover(rpc, resolving_reader(), [USER], 12)
        ranges = sorted({(q["fromBlock"], q["toBlock"]) for q in rpc.queries})
        assert ranges == [("0x5", "0x7"), ("0x8", "0xa"), ("0xb", "0xc")]
        by_event = {q["topics"][0]: q["topics"] for q in rpc.queries}
        assert by_event[morpho_blue.SUPPLY_COLLATERAL] == [morpho_blue.SUPPLY_COLLATERAL, None, None, [word(USER)]]
        assert by_event[morpho_blue.BORROW] == [morpho_blue.BORROW, None, [word(USER)]]
        assert adapter.markets[MARKET_A].feeds == (PriceSource(emitter=FEED), PriceSource(emitter=QUOTE_FEED))  # the USDC proxy followed to its aggregator
        assert adapter.price_feeds() == {PriceSource(emitter=FEED): frozenset({MARKET_A}),
                                         PriceSource(emitter=QUOTE_FEED): frozenset({MARKET_A})}  # fmt: skip
        assert len(adapter.plan(USER).calls) == 6

    async def test_returns_each_market_found_at_its_block_and_resumes_after(self) -> None:
        """What the scan found comes back with its block, to be stored; a scan after a stored one asks only the
        blocks above it, and a restored market is resolved without a log naming it again."""
        past = {"address": MORPHO.lower(), "topics": [morpho_blue.SUPPLY_COLLATERAL, MARKET_A, word(OTHER), word(USER)],
                "data": "0x", "blockNumber": "0x6", "blockHash": "0x01", "logIndex": "0x0", "transactionHash": "0x02"}
        adapter = MorphoBlue(MorphoBlueConfig(name="morpho", morpho=MORPHO), log_range=100)
        found = await adapter.discover(FakeRpc([past]), resolving_reader(), [USER], 12)
        assert found == [Discovered(account=USER, market=MARKET_A, block=6)]
        again, rpc = MorphoBlue(MorphoBlueConfig(name="morpho", morpho=MORPHO), log_range=100), FakeRpc([])
        again.restore(found)
        assert await again.discover(rpc, resolving_reader(), [USER], 30, after=12) == []
        assert {(q["fromBlock"], q["toBlock"]) for q in rpc.queries} == {("0xd", "0x1e")}
        assert set(again.markets) == {MARKET_A} and len(again.plan(USER).calls) == 6

    async def test_default_log_range_fits_monads_public_endpoints(self) -> None:
        """Left at its default, discovery asks eth_getLogs for at most 100 blocks at a time (Monad's public cap)."""
        rpc = FakeRpc([])
        await MorphoBlue(MorphoBlueConfig(name="morpho", morpho=MORPHO)).discover(rpc, resolving_reader(), [USER], 250)
        spans = {int(q["toBlock"], 16) - int(q["fromBlock"], 16) + 1 for q in rpc.queries}
        assert max(spans) == 100 and len(rpc.queries) == 2 * 3

    async def test_market_whose_token_decimals_revert_is_quarantined(self) -> None:
        """A market handed to the account whose collateral's decimals() reverts is quarantined and logged: the
        account's good market is resolved and read, the bad one reported unreadable, and its events ask no
        resolve again."""
        past = [{"address": MORPHO.lower(), "topics": [morpho_blue.SUPPLY_COLLATERAL, market_id, word(OTHER), word(USER)],
                 "data": "0x", "blockNumber": "0x6", "blockHash": "0x01", "logIndex": hex(i), "transactionHash": "0x02"}
                for i, market_id in enumerate((MARKET_A, MARKET_C))]  # fmt: skip
        adapter = MorphoBlue(MorphoBlueConfig(name="morpho", morpho=MORPHO))
        with capture_logs() as logs:
            await adapter.discover(FakeRpc(past), resolving_reader(), [USER], 12)
        assert set(adapter.markets) == {MARKET_A} and set(adapter.quarantined) == {MARKET_C}
        (event,) = [e for e in logs if e["event"] == "morpho.market_quarantined"]
        assert event["market"] == MARKET_C and f"decimals() of {BAD_TOKEN}" in event["reason"]
        plan = adapter.plan(USER)
        account = plan.decode(market_results(10**15, 10**18, WETH_2000, totals(10**9, 10**15)), 12)
        assert [r.key.market for r in account.readings] == [MARKET_A]
        assert [u.market for u in account.unreadable] == [MARKET_C]
        again = morpho_log(morpho_blue.SUPPLY_COLLATERAL, MARKET_C, word(OTHER), word(USER))
        assert adapter.touched_by(again) == AccountsTouched(accounts=frozenset({USER}))

    async def test_configured_market_that_does_not_exist_fails_resolve(self) -> None:
        """A configured id Morpho never created (all-zero params) stops start-up instead of watching nothing."""
        adapter = MorphoBlue(MorphoBlueConfig(name="morpho", morpho=MORPHO, markets=(MARKET_B,)))
        with pytest.raises(ReadError, match="does not exist"):
            await adapter.resolve(resolving_reader(), 12)


class TestMorphoArithmetic:
    @pytest.mark.parametrize(
        ("shares", "assets", "total_shares", "expected"),
        [(10**6, 0, 0, 1), (2 * 10**6, 10, 10**7, 2), (10**12, 10**6 - 1, 10**12, 10**6),
         (3 * 10**6 + 1, 10, 10**7, 4), (0, 5, 10, 0)],
    )  # fmt: skip
    def test_borrowed_rounds_up_with_virtual_shares(self, shares: int, assets: int, total_shares: int,
                                                    expected: int) -> None:  # fmt: skip
        """toAssetsUp: ceil(shares * (assets + 1) / (totalShares + 1e6))."""
        assert borrowed_assets(shares, assets, total_shares) == expected

    def test_max_borrow_rounds_down_twice(self) -> None:
        """mulDivDown by 1e36, then wMulDown by LLTV: each step floors, as in Morpho._isHealthy."""
        assert max_borrow(3, 10**36 // 2, 10**18) == 1  # 1.5 -> 1
        assert max_borrow(10**18, 2000 * 10**24, LLTV) == 1720 * 10**6

    @pytest.mark.parametrize(
        ("limit", "borrowed", "liquidatable"),
        [(100, 100, False), (99, 100, True), (10**30 - 1, 10**30, True), (10**30, 10**30, False), (5, 0, False)],
    )
    def test_health_below_one_exactly_when_morpho_liquidates(self, limit: int, borrowed: int,
                                                             liquidatable: bool) -> None:  # fmt: skip
        """HF < 1.0 iff maxBorrow < borrowed, even when a one-wei shortfall would round to 1.0 in a float."""
        assert (health_factor(limit, borrowed) < 1.0) is liquidatable


class TestDecodeAccount:
    def test_reading_in_loan_units_with_liquidation_price(self) -> None:
        """1 WETH at 2,000 against 1,000 USDC at 86%: health 1.72, liquidation at 1,000 / 0.86 USDC per WETH."""
        account = decoded(market_results(10**15, 10**18, WETH_2000, totals(10**9, 10**15)))
        (reading,) = account.readings
        assert reading.key.market == MARKET_A and reading.key.account == USER and reading.block == 7
        assert reading.health_factor == pytest.approx(1.72) and reading.currency == "USDC"
        assert (reading.collateral, reading.debt) == (2000.0, pytest.approx(1000.0, abs=1e-5))
        assert reading.liquidation_price == pytest.approx(1000 / 0.86, rel=1e-6) and reading.liquidation_asset == "WETH"
        assert account.exposure == {MARKET_A}

    @pytest.mark.parametrize("stale_first", [True, False])
    def test_accrued_pair_wins_when_a_batch_is_cut_between_accrual_and_read(self, stale_first: bool) -> None:
        """Of the two (accrue, market) pairs the later lastUpdate is used: the one whose accrual ran in its eth_call."""
        stale, fresh = totals(10**9, 10**15, last_update=100), totals(1100 * 10**6, 10**15, last_update=200)
        results = market_results(10**15, 10**18, WETH_2000, stale)
        results[1], results[3] = (stale, fresh) if stale_first else (fresh, stale)
        (reading,) = decoded(results).readings
        assert reading.debt == pytest.approx(1100.0, abs=1e-5)

    def test_empty_position_reads_as_no_debt_and_no_exposure(self) -> None:
        """No collateral and no debt: health infinite (a closed position recovers), no exposure to re-read on."""
        account = decoded(market_results(0, 0, WETH_2000, totals(10**9, 10**15)))
        assert math.isinf(account.readings[0].health_factor) and account.exposure == frozenset()

    def test_collateral_without_debt_needs_no_price(self) -> None:
        """A failing oracle does not hide a debt-free position (Morpho never prices those either)."""
        (reading,) = decoded(market_results(0, 10**18, FAILED, totals(0, 0))).readings
        assert math.isinf(reading.health_factor) and math.isnan(reading.collateral)

    @pytest.mark.parametrize("broken", ["accruals", "position", "price"])
    def test_failed_market_is_unreadable_and_the_others_still_read(self, broken: str) -> None:
        """A reverted accrual pair, position or (with debt) price makes that market unreadable, named with the
        reason, never a missing position; the account's other market is still read."""
        adapter = protocol(a=market(MARKET_A), b=market(MARKET_B))
        bad = market_results(10**15, 10**18, WETH_2000, totals(10**9, 10**15))
        for index in {"accruals": (0, 2), "position": (4,), "price": (5,)}[broken]:
            bad[index] = FAILED
        good = market_results(10**15, 10**18, WETH_2000, totals(10**9, 10**15))
        account = adapter.plan(USER).decode(bad + good, 7)
        ((unreadable,), (reading,)) = account.unreadable, account.readings
        assert unreadable.market == MARKET_A and "reverted" in unreadable.reason
        assert reading.key.market == MARKET_B and reading.health_factor < math.inf
        assert MARKET_A in account.exposure  # its feeds still mark the account, so it is tried again on a move

    def test_result_count_must_match_the_calls(self) -> None:
        """Results for another set of markets than the plan made are rejected."""
        adapter = protocol(a=market())
        with pytest.raises(ReadError, match="expected 6 results"):
            adapter.plan(USER).decode([], 7)


class TestOracles:
    async def test_oracle_of_another_shape_is_reported_and_priced_by_nothing(self) -> None:
        """An oracle without BASE_FEED_1..QUOTE_FEED_2 leaves the market unpriced, and says so in a warning."""
        adapter = MorphoBlue(MorphoBlueConfig(name="morpho", morpho=MORPHO, markets=(MARKET_A,)))
        with capture_logs() as logs:
            await adapter.resolve(resolving_reader(oracle={}), 12)
        assert adapter.markets[MARKET_A].feeds == () and adapter.price_feeds() == {}
        assert [event["event"] for event in logs] == ["morpho.oracle_feeds_unknown"]

    async def test_vault_oracle_is_reported_as_drifting(self) -> None:
        """A vault in the oracle moves its price with no event: resolved with its feeds, and a warning."""
        adapter = MorphoBlue(MorphoBlueConfig(name="morpho", morpho=MORPHO, markets=(MARKET_A,)))
        with capture_logs() as logs:
            await adapter.resolve(resolving_reader(oracle={**CHAINLINK_ORACLE, "BASE_VAULT()": OTHER}), 12)
        assert adapter.markets[MARKET_A].feeds == (PriceSource(emitter=FEED), PriceSource(emitter=QUOTE_FEED))
        assert [event["event"] for event in logs] == ["morpho.oracle_price_drifts"]


def decoded(results: list[CallResult]) -> AccountReading:
    """`results` decoded for USER in MARKET_A, planned first as the engine does."""
    adapter = protocol(a=market())
    assert len(adapter.plan(USER).calls) == len(results)
    return adapter.plan(USER).decode(results, 7)


class FakeRpc:
    """eth_getLogs answered from a fixed list (by block range and topic0), every query recorded."""

    def __init__(self, logs: list[dict[str, Any]]) -> None:
        self.logs = logs
        self.queries: list[dict[str, Any]] = []

    async def request(self, method: str, params: list[Any]) -> Any:
        assert method == "eth_getLogs"
        query = params[0]
        self.queries.append(query)
        low, high = int(query["fromBlock"], 16), int(query["toBlock"], 16)
        return [raw for raw in self.logs
                if low <= int(raw["blockNumber"], 16) <= high and raw["topics"][0] == query["topics"][0]]  # fmt: skip


class FakeReader:
    """Answers calls by (target, calldata); anything else reverts, like a call to a contract without that function."""

    def __init__(self, answers: dict[tuple[str, bytes], CallResult]) -> None:
        self.answers = {(target.lower(), data): result for (target, data), result in answers.items()}

    async def read(self, calls: Sequence[Call], block: int) -> list[CallResult]:
        return [self.answers.get((call.target.lower(), call.data), FAILED) for call in calls]


ZERO = "0x" + "00" * 20
# A MorphoChainlinkOracleV2-shaped oracle for WETH/USDC: base feed direct, quote feed a proxy in front of QUOTE_FEED.
CHAINLINK_ORACLE = {"BASE_FEED_1()": FEED, "BASE_FEED_2()": ZERO, "QUOTE_FEED_1()": PROXY, "QUOTE_FEED_2()": ZERO,
                    "BASE_VAULT()": ZERO, "QUOTE_VAULT()": ZERO}  # fmt: skip


def resolving_reader(oracle: dict[str, str] = CHAINLINK_ORACLE) -> FakeReader:
    """MARKET_A exists (USDC loan, WETH collateral, `oracle`'s getters); MARKET_B was never created."""
    params = ["address", "address", "address", "address", "uint256"]
    answers = {
        (MORPHO, calldata("idToMarketParams(bytes32)", bytes.fromhex(MARKET_A[2:]))): ok(params, *PARAMS),
        (MORPHO, calldata("idToMarketParams(bytes32)", bytes.fromhex(MARKET_B[2:]))): ok(params, *[ZERO] * 4, 0),
        (LOAN, calldata("symbol()")): ok(["string"], "USDC"),
        (LOAN, calldata("decimals()")): ok(["uint8"], 6),
        (COLLATERAL, calldata("symbol()")): ok(["string"], "WETH"),
        (COLLATERAL, calldata("decimals()")): ok(["uint8"], 18),
        (PROXY, calldata("aggregator()")): ok(["address"], QUOTE_FEED),
        # MARKET_C: the same but for a collateral token with a symbol and no working decimals().
        (MORPHO, calldata("idToMarketParams(bytes32)", bytes.fromhex(MARKET_C[2:]))): ok(
            params, LOAN, BAD_TOKEN, ORACLE, IRM, LLTV),
        (BAD_TOKEN, calldata("symbol()")): ok(["string"], "GRIEF"),
        **{(feed, calldata("latestRoundData()")): ok(["uint80", "int256", "uint256", "uint256", "uint80"], 1, 10**8, 1, 1, 1)
           for feed in (FEED, QUOTE_FEED)},
    }
    answers |= {(ORACLE, calldata(getter)): ok(["address"], address) for getter, address in oracle.items()}
    return FakeReader(answers)


class TestDetailedPlan:
    def test_same_calls_and_lines_from_the_position(self) -> None:
        """Detailed adds no call; its lines are the collateral at the oracle price with LLTV, and the debt."""
        adapter = protocol(a=market())
        assert adapter.plan(USER, detailed=True).calls == adapter.plan(USER).calls
        results = market_results(10**15, 10**18, WETH_2000, totals(10**9, 10**15))
        (reading,) = adapter.plan(USER, detailed=True).decode(results, 7).readings
        weth, usdc = reading.assets
        assert (weth.symbol, weth.side, weth.amount, weth.value, weth.weight) == ("WETH", Side.COLLATERAL, 1.0, 2000.0, 0.86)
        assert (usdc.symbol, usdc.side) == ("USDC", Side.DEBT) and usdc.amount == pytest.approx(1000.0, abs=1e-5)
        assert weth.value * weth.weight / usdc.value == pytest.approx(reading.health_factor)


class TestPlanReuse:
    def test_calls_are_built_once_and_market_calls_shared(self) -> None:
        adapter = protocol(a=market())
        first = adapter.plan(USER).calls
        assert adapter.plan(USER).calls is first  # nothing encoded again
        other = adapter.plan(OTHER).calls
        # Only the position call is the account's own.
        assert [a is b for a, b in zip(first, other)] == [True, True, True, True, False, True]

    def test_a_changed_plan_is_never_served_stale(self) -> None:
        """A market found for the account, a market re-resolved with other params, one quarantined: each time the
        calls a fresh build gives."""
        adapter = protocol(a=market())
        first = adapter.plan(USER).calls
        adapter._watched.add(USER)
        assert adapter.touched_by(morpho_log(morpho_blue.SUPPLY_COLLATERAL, MARKET_B, word(USER), word(USER)))
        adapter.markets[MARKET_B] = market(MARKET_B)  # what the re-resolve brings
        grown = adapter.plan(USER).calls
        assert len(grown) == 12 and grown[:6] == first and grown == rebuilt(adapter, USER)
        assert len(adapter.plan(OTHER).calls) == 6  # only USER uses market B
        other_oracle = to_checksum_address("0x" + "0c" * 20)
        moved_params = (LOAN, COLLATERAL, other_oracle, IRM, LLTV)
        adapter.markets[MARKET_B] = adapter.markets[MARKET_B]._replace(params=moved_params)
        moved = adapter.plan(USER).calls
        assert moved[11].target == other_oracle and moved == rebuilt(adapter, USER)
        adapter._quarantine(MARKET_A, "decimals() reverts", 7)
        assert adapter.plan(USER).calls == moved[6:] == rebuilt(adapter, USER)


def rebuilt(adapter: MorphoBlue, account: str) -> tuple[Call, ...]:
    """The calls an adapter with no plans kept would build now: what a reused plan must equal."""
    adapter._plans = PlanCache()
    return adapter.plan(account).calls
