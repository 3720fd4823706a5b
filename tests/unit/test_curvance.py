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
from chainwatch.protocols.plans import PlanCache

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
        # Soft lines as deployed Curvance stores them, BPS + premium: WETH 125% (weight 0.8), USDC 120%.
        (MANAGER, calldata("collConfig(address)", C_WETH)): ok(["uint256"] * 3, 7500, 12500, 11000),
        (MANAGER, calldata("collConfig(address)", C_USDC)): ok(["uint256"] * 3, 8000, 12000, 11000),
        (ORACLE, calldata("getPrice(address,bool,bool)", WETH, True, True)): ok(["uint256", "uint256"], 2000 * WAD, 0),
        (ORACLE, calldata("getPrice(address,bool,bool)", USDC, True, True)): ok(["uint256", "uint256"], WAD, 0),
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


    @pytest.mark.parametrize(
        "broken",
        [(C_WETH, calldata("asset()")), (MANAGER, calldata("collConfig(address)", C_WETH)),
         (ORACLE, calldata("getPrice(address,bool,bool)", WETH, True, True))],
        ids=["asset", "collConfig", "price"],
    )  # fmt: skip
    async def test_a_token_that_cannot_be_resolved_is_quarantined_alone(self, broken: tuple[str, bytes]) -> None:
        """A cToken whose asset, config or price reverts is left out and logged; the market's other token is watched."""
        answers = chain_answers()
        del answers[broken]
        with capture_logs() as logs:
            protocol = await resolved(answers)
        assert [t.c_token for t in protocol.markets[MANAGER].tokens] == [to_checksum_address(C_USDC)]
        assert set(protocol.quarantined) == {to_checksum_address(C_WETH)}
        assert [e["c_token"] for e in logs if e["event"] == "curvance.token_quarantined"] == [to_checksum_address(C_WETH)]
        assert [call.target.lower() for call in protocol.plan(USER).calls] == [MANAGER, C_USDC, ORACLE, C_USDC]

    @pytest.mark.parametrize(
        ("config", "requirement", "unit"),
        [((7500, 12500, 11000), 12500, 10**4), ((75 * WAD // 100, 125 * WAD // 100, 11 * WAD // 10), 125 * WAD // 100, WAD),
         ((0, 0, 0), 0, 10**4)],
        ids=["BPS", "WAD", "not collateral"],
    )  # fmt: skip
    async def test_requirement_unit_is_read_from_its_size(self, config: tuple[int, ...], requirement: int, unit: int) -> None:
        """collConfig in BPS (today) or WAD (older versions) gives the same soft weight; collRatio 0 weighs nothing."""
        answers = chain_answers()
        answers[(MANAGER, calldata("collConfig(address)", C_WETH))] = ok(["uint256"] * 3, *config)
        weth = (await resolved(answers)).markets[MANAGER].tokens[0]
        assert (weth.soft_requirement, weth.requirement_unit) == (requirement, unit)
        assert weth.soft_weight() == (0.8 if requirement else 0.0)

    async def test_requirement_in_no_known_unit_is_quarantined(self) -> None:
        """A soft requirement that is neither BPS- nor WAD-sized is not guessed at: the token is left out."""
        answers = chain_answers()
        answers[(MANAGER, calldata("collConfig(address)", C_WETH))] = ok(["uint256"] * 3, 7500, 125, 110)
        protocol = await resolved(answers)
        assert "no known unit" in protocol.quarantined[to_checksum_address(C_WETH)]


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

    async def test_token_config_change_resolves_again(self) -> None:
        """New lines for cWETH are read at resolve time, so a TokenConfigUpdated asks for resolving again."""
        protocol = await resolved()
        data = encode(["(address" + ",uint256" * 12 + ")"], [(C_WETH, *([0] * 12))])
        touch = protocol.touched_by(log_of(MANAGER, "TokenConfigUpdated((address" + ",uint256" * 12 + "))", data))
        assert touch == SourcesChanged()

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


def rate(assets_per_share: float = 1.0) -> CallResult:
    return ok(["uint256"], int(assets_per_share * WAD))


def weth_against_usdc(debt: float = 1000, weth_price: CallResult | None = None, *, usdc_posted: int = 0,
                      weth_rate: float = 1.0) -> list[CallResult]:  # fmt: skip
    """Hot-plan results: 1 WETH posted at a lower price of 2,000, `debt` USDC owed (statusOf's max debt ignored)."""
    return [status(2000, 1500, debt), snapshot(C_WETH, WETH, WAD, 0), weth_price or price(2000), rate(weth_rate),
            snapshot(C_USDC, USDC, usdc_posted, int(debt * WAD)), price(1), rate()]  # fmt: skip


class TestDecodeAccount:
    async def test_calls_per_manager(self) -> None:
        """One statusOf, then a snapshot, a lower price and an exchange rate per cToken, in decode's order."""
        protocol = await resolved()
        calls = protocol.plan(USER).calls
        assert [call.target.lower() for call in calls] == [MANAGER, C_WETH, ORACLE, C_WETH, C_USDC, ORACLE, C_USDC]

    async def test_health_is_the_soft_line_over_debt(self) -> None:
        """Health is cSoft / debt: 2,000 x 10000/12500 / 1,000 = 1.6, not statusOf's borrow limit 1,500 / 1,000."""
        protocol = await resolved()
        outcome = protocol.plan(USER).decode(weth_against_usdc(), 7)
        (reading,) = outcome.readings
        assert reading.key.market == to_checksum_address(MANAGER) and reading.key.account == USER
        assert (reading.health_factor, reading.collateral, reading.debt, reading.block) == (1.6, 2000, 1000, 7)
        assert outcome.exposure == frozenset({KEY_WETH, KEY_USDC})

    async def test_collateral_is_valued_per_share_at_the_exchange_rate(self) -> None:
        """A cToken share worth 1.1 underlying counts 1.1 x: 2,200 x 0.8 / 1,000 = 1.76."""
        protocol = await resolved()
        (reading,) = protocol.plan(USER).decode(weth_against_usdc(weth_rate=1.1), 7).readings
        assert reading.health_factor == pytest.approx(1.76)

    async def test_single_collateral_has_a_liquidation_price(self) -> None:
        """With one collateral, health reaches 1.0 when its lower price falls by the factor 1/health: 2,000 / 1.6."""
        protocol = await resolved()
        (reading,) = protocol.plan(USER).decode(weth_against_usdc(), 7).readings
        assert reading.liquidation_price == pytest.approx(1250)
        assert reading.liquidation_asset == "WETH"

    async def test_two_collaterals_sum_their_soft_lines(self) -> None:
        """WETH at 0.8 and 600 USDC at 1/1.2 of their value: (1,600 + 500) / 1,000; no single liquidation price."""
        protocol = await resolved()
        results = weth_against_usdc(usdc_posted=600 * WAD)
        results[4] = snapshot(C_USDC, USDC, 600 * WAD, 0)
        (reading,) = protocol.plan(USER).decode(results, 7).readings
        assert reading.health_factor == pytest.approx(2.1)
        assert reading.liquidation_price is None and reading.liquidation_asset == ""

    async def test_a_cautioned_price_counts_but_gives_no_liquidation_price(self) -> None:
        """Error code 1 (one of two feeds failed) still values collateral, as Curvance does; the liquidation price
        is left out."""
        protocol = await resolved()
        (reading,) = protocol.plan(USER).decode(weth_against_usdc(weth_price=price(2000, error_code=1)), 7).readings
        assert reading.health_factor == 1.6 and reading.liquidation_price is None

    @pytest.mark.parametrize("weth_price", [price(2000, error_code=2), FAILED], ids=["bad source", "reverted"])
    async def test_an_unpriceable_collateral_is_an_error(self, weth_price: CallResult) -> None:
        """Without a usable lower price for a posted collateral, health cannot be told: a read error, not a guess."""
        protocol = await resolved()
        with pytest.raises(ReadError):
            protocol.plan(USER).decode(weth_against_usdc(weth_price=weth_price), 7)

    async def test_collateral_that_is_not_collateral_is_zero_health(self) -> None:
        """Debt against a token whose collRatio is 0 reads as health 0, with no liquidation price to reach."""
        answers = chain_answers()
        answers[(MANAGER, calldata("collConfig(address)", C_WETH))] = ok(["uint256"] * 3, 0, 0, 0)
        protocol = await resolved(answers)
        (reading,) = protocol.plan(USER).decode(weth_against_usdc(), 7).readings
        assert reading.health_factor == 0 and reading.liquidation_price is None

    async def test_no_debt_is_infinite_health(self) -> None:
        """An account with collateral and no debt is at infinite health, exposed to its collateral only."""
        protocol = await resolved()
        outcome = protocol.plan(USER).decode(weth_against_usdc(debt=0), 7)
        assert math.isinf(outcome.readings[0].health_factor) and outcome.readings[0].liquidation_price is None
        assert outcome.exposure == frozenset({KEY_WETH})

    @pytest.mark.parametrize("bad", [0, 1, 3], ids=["statusOf", "getSnapshot", "exchangeRate"])
    @pytest.mark.parametrize("result", [FAILED, CallResult(success=True, data=b"\x00" * 5)], ids=["reverted", "short"])
    async def test_bad_results_are_errors(self, bad: int, result: CallResult) -> None:
        """A reverted or undecodable health or position read is an error, never a position without debt."""
        protocol = await resolved()
        results = weth_against_usdc()
        results[bad] = result
        with pytest.raises(ReadError):
            protocol.plan(USER).decode(results, 7)


class TestDetailedPlan:
    async def test_hot_path_calls_unchanged_and_details_appended(self) -> None:
        """The plain plan is unchanged; detailed appends each token's higher price after the market's calls."""
        protocol = await resolved()
        plain, detailed = protocol.plan(USER).calls, protocol.plan(USER, detailed=True).calls
        assert detailed[: len(plain)] == plain
        assert [call.target.lower() for call in detailed[len(plain) :]] == [ORACLE, ORACLE]

    async def test_lines_weigh_collateral_by_its_soft_requirement_and_value_debt_at_the_higher_price(self) -> None:
        """1 WETH at a lower price of 2,000 weighs 10000/12500; 1,000 USDC owed at a higher price of 1.01."""
        protocol = await resolved()
        results = weth_against_usdc(debt=1010)
        results[4] = snapshot(C_USDC, USDC, 0, 1000 * WAD)
        (reading,) = protocol.plan(USER, detailed=True).decode([*results, price(2001), price(1.01)], 7).readings
        weth, usdc = reading.assets
        assert (weth.symbol, weth.side, weth.amount, weth.value, weth.weight) == ("WETH", Side.COLLATERAL, 1.0, 2000.0, 0.8)
        assert (usdc.symbol, usdc.side, usdc.amount, usdc.value) == ("USDC", Side.DEBT, 1000.0, pytest.approx(1010.0))
        assert weth.value * weth.weight / usdc.value == pytest.approx(reading.health_factor)


def rebuilt(protocol: Curvance, account: str) -> tuple[Call, ...]:
    """The calls a protocol with no plans kept would build now: what a reused plan must equal."""
    protocol._plans = PlanCache()
    return protocol.plan(account).calls


class TestPlanReuse:
    async def test_calls_are_built_once_and_token_calls_shared(self) -> None:
        protocol = await resolved()
        first = protocol.plan(USER).calls
        assert protocol.plan(USER).calls is first  # nothing encoded again
        other = protocol.plan(OTHER).calls
        assert [a is b for a, b in zip(first, other)] == [False, False, True, True, False, True, True]

    async def test_a_changed_plan_is_never_served_stale(self) -> None:
        """A resolve that drops a token (its config unreadable) gives the calls a fresh build gives."""
        protocol = await resolved()
        first = protocol.plan(USER).calls
        answers = chain_answers()
        del answers[(MANAGER, calldata("collConfig(address)", C_USDC))]
        await protocol.resolve(FakeReader(answers), 101)  # type: ignore[arg-type]
        shrunk = protocol.plan(USER).calls
        assert [c.data for c in shrunk] == [c.data for c in first[:4]] and shrunk[0].gas < first[0].gas
        assert shrunk == rebuilt(protocol, USER)
