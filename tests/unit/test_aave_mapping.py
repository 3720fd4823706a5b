"""Aave v3 logs -> the accounts they touch; account configuration -> exposure."""

import math

import pytest
from eth_abi import decode, encode
from eth_utils import keccak, to_checksum_address

from chainwatch.chain import Log
from chainwatch.model import Side
from chainwatch.multicall import CallResult
from chainwatch.protocols.aave_v3 import AaveV3
from chainwatch.protocols.base import AccountsTouched, MarketsTouched, ReadError, SourcesChanged

POOL = "0x" + "aa" * 20
ORACLE = "0x" + "bb" * 20
ATOKEN = "0x" + "cc" * 20
PROVIDER = "0x" + "99" * 20
CONFIGURATOR = "0x" + "98" * 20
WETH, USDC, WBTC = "0x" + "01" * 20, "0x" + "02" * 20, "0x" + "03" * 20
USER, OTHER = "0x" + "d1" * 20, "0x" + "e2" * 20


def topic(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


def word(address: str) -> str:
    return "0x" + "00" * 12 + address[2:]


def pool_log(signature: str, *indexed: str, address: str = POOL) -> Log:
    return Log(
        address=address, topics=(topic(signature), *indexed), data=b"", block_number=5, block_hash="0x01",
        log_index=0, transaction_hash="0x02",
    )  # fmt: skip


def ok(*datas: bytes) -> list[CallResult]:
    return [CallResult(success=True, data=data) for data in datas]


@pytest.fixture
def aave() -> AaveV3:
    protocol = AaveV3("neverland", to_checksum_address(PROVIDER))
    protocol.pool, protocol.oracle = to_checksum_address(POOL), to_checksum_address(ORACLE)
    protocol.configurator = to_checksum_address(CONFIGURATOR)
    protocol.reserves = {WETH: 0, USDC: 1, WBTC: 2}
    protocol.atokens = {ATOKEN: WETH}
    protocol.symbols = {WETH: "WETH", USDC: "USDC", WBTC: "WBTC"}
    return protocol


class TestTouchedBy:
    @pytest.mark.parametrize(
        ("signature", "topics"),
        [
            ("Supply(address,address,address,uint256,uint16)", [word(WETH), word(USER), word("0x" + "00" * 20)]),
            ("Withdraw(address,address,address,uint256)", [word(WETH), word(USER), word(OTHER)]),
            ("Borrow(address,address,address,uint256,uint8,uint256,uint16)", [word(USDC), word(USER), word("0x" + "00" * 20)]),
            ("Repay(address,address,address,uint256,bool)", [word(USDC), word(USER), word(OTHER)]),
            ("LiquidationCall(address,address,address,uint256,uint256,address,bool)", [word(WETH), word(USDC), word(USER)]),
            ("ReserveUsedAsCollateralEnabled(address,address)", [word(WETH), word(USER)]),
            ("ReserveUsedAsCollateralDisabled(address,address)", [word(WETH), word(USER)]),
            ("UserEModeSet(address,uint8)", [word(USER)]),
        ],
    )  # fmt: skip
    def test_pool_event_names_its_account(self, aave: AaveV3, signature: str, topics: list[str]) -> None:
        """Each Pool event maps to exactly the account whose position it changes (not the caller or payer)."""
        touch = aave.touched_by(pool_log(signature, *topics))
        assert touch == AccountsTouched(accounts=frozenset({to_checksum_address(USER)}))

    def test_atoken_transfer_touches_both_sides(self, aave: AaveV3) -> None:
        """Moving aTokens changes the collateral of sender and receiver."""
        log = pool_log("BalanceTransfer(address,address,uint256,uint256)", word(USER), word(OTHER), address=ATOKEN)
        assert aave.touched_by(log) == AccountsTouched(accounts=frozenset(map(to_checksum_address, (USER, OTHER))))

    def test_liquidation_threshold_change_touches_the_market(self, aave: AaveV3) -> None:
        """A new liquidation threshold on a reserve re-reads everyone using it: health moves with no price log."""
        log = pool_log("CollateralConfigurationChanged(address,uint256,uint256,uint256)", word(WETH), address=CONFIGURATOR)
        assert aave.touched_by(log) == MarketsTouched(keys=frozenset({WETH}))

    @pytest.mark.parametrize(
        "log",
        [
            pool_log("PriceOracleUpdated(address,address)", word(ORACLE), word(OTHER), address=PROVIDER),
            pool_log("ReserveInitialized(address,address,address,address,address)", word(WETH), word(OTHER), address=CONFIGURATOR),
        ],
    )
    def test_new_oracle_or_reserve_resolves_again(self, aave: AaveV3, log: Log) -> None:
        """A swapped oracle or a new reserve means feeds and reserves must be found again."""
        assert aave.touched_by(log) == SourcesChanged()

    def test_oracle_source_change(self, aave: AaveV3) -> None:
        """A new price source for an asset asks for the feeds to be resolved again."""
        log = pool_log("AssetSourceUpdated(address,address)", word(WETH), word(OTHER), address=ORACLE)
        assert aave.touched_by(log) == SourcesChanged()

    def test_reserve_update_touches_the_market(self, aave: AaveV3) -> None:
        """New rates or indexes for a reserve re-read every account using that reserve."""
        log = pool_log("ReserveDataUpdated(address,uint256,uint256,uint256,uint256,uint256)", word(WETH))
        assert aave.touched_by(log) == MarketsTouched(keys=frozenset({WETH}), drift=True)

    @pytest.mark.parametrize(
        "log",
        [
            pool_log("ReserveDataUpdated(address,uint256,uint256,uint256,uint256,uint256)", word(WETH), address=OTHER),
            pool_log("Supply(address,address,address,uint256,uint16)", word(WETH), word(USER), word(USER), address=OTHER),
        ],
    )
    def test_unrelated_logs_touch_nothing(self, aave: AaveV3, log: Log) -> None:
        """Market-wide events and look-alike events from other contracts mark no account."""
        assert aave.touched_by(log) is None


class TestDecodeAccount:
    def test_health_and_exposure(self, aave: AaveV3) -> None:
        """Health and base-currency amounts come from getUserAccountData; exposure from the config bitmap."""
        account_data = encode(["uint256"] * 6, [200_000_000_000, 150_000_000_000, 0, 8500, 8000, 1_133_333_333_333_333_333])
        # WETH (id 0) as collateral -> bit 1; USDC (id 1) borrowed -> bit 2.
        bitmap = encode(["uint256"], [0b0110])
        prices = encode(["uint256[]"], [[2000 * 10**8, 1 * 10**8, 60_000 * 10**8]])
        result = aave.plan(USER).decode(ok(account_data, bitmap, prices), 7)
        (reading,) = result.readings
        assert reading.health_factor == pytest.approx(1.1333333)
        assert (reading.collateral, reading.debt, reading.block) == (2000.0, 1500.0, 7)
        assert result.exposure == {WETH, USDC}
        # One collateral: health is proportional to its price, so liquidation sits at 2000 / 1.1333 = 1764.7.
        assert reading.liquidation_price == pytest.approx(1764.7, abs=0.1)
        assert reading.liquidation_asset == "WETH"

    def test_no_liquidation_price_with_two_collaterals(self, aave: AaveV3) -> None:
        """With two collaterals no single price sets the line, so none is claimed."""
        account_data = encode(["uint256"] * 6, [200_000_000_000, 150_000_000_000, 0, 8500, 8000, 1_133_333_333_333_333_333])
        bitmap = encode(["uint256"], [0b100110])  # WETH and WBTC (id 2) as collateral, USDC borrowed
        prices = encode(["uint256[]"], [[2000 * 10**8, 1 * 10**8, 60_000 * 10**8]])
        (reading,) = aave.plan(USER).decode(ok(account_data, bitmap, prices), 7).readings
        assert reading.liquidation_price is None

    def test_broken_price_feed_costs_only_the_liquidation_price(self, aave: AaveV3) -> None:
        """If the oracle's batch price read reverts (one bad feed), health is still read and alerted."""
        account_data = encode(["uint256"] * 6, [200_000_000_000, 150_000_000_000, 0, 8500, 8000, 950_000_000_000_000_000])
        bitmap = encode(["uint256"], [0b0110])
        result = aave.plan(USER).decode([*ok(account_data, bitmap), CallResult(success=False, data=b"")], 9)
        (reading,) = result.readings
        assert reading.health_factor == pytest.approx(0.95) and reading.liquidation_price is None

    def test_no_debt_is_infinite_health(self, aave: AaveV3) -> None:
        """Aave's uint256 max health (no debt) reads as infinite, never as a number that could trip a line."""
        account_data = encode(["uint256"] * 6, [100, 0, 0, 0, 0, 2**256 - 1])
        prices = encode(["uint256[]"], [[1, 1, 1]])
        result = aave.plan(USER).decode(ok(account_data, encode(["uint256"], [0]), prices), 1)
        assert math.isinf(result.readings[0].health_factor)

    def test_reverted_read_is_an_error_not_an_empty_position(self, aave: AaveV3) -> None:
        """A failed call raises ReadError instead of looking like an account with nothing at risk."""
        with pytest.raises(ReadError, match="getUserAccountData reverted"):
            aave.plan(USER).decode([CallResult(success=False, data=b""), *ok(b"", b"")], 1)


class TestDetailedPlan:
    def test_hot_path_calls_unchanged_and_details_appended(self, aave: AaveV3) -> None:
        """The plain plan is the three hot-path calls; the detailed one adds four per reserve after them."""
        aave.balance_tokens = {asset: (f"0x{i}1" + "0" * 38, f"0x{i}2" + "0" * 38, f"0x{i}3" + "0" * 38)
                               for i, asset in enumerate(aave.reserves)}  # fmt: skip
        plain, detailed = aave.plan(USER).calls, aave.plan(USER, detailed=True).calls
        assert len(plain) == 3 and detailed[:3] == plain and len(detailed) == 3 + 4 * len(aave.reserves)

    def test_lines_from_balances_and_configuration_bits(self, aave: AaveV3) -> None:
        """LT from bits 16-31 and decimals from bits 48-55 of each reserve's configuration value the balances."""
        aave.balance_tokens = {asset: (f"0x{i}1" + "0" * 38, f"0x{i}2" + "0" * 38, f"0x{i}3" + "0" * 38)
                               for i, asset in enumerate(aave.reserves)}  # fmt: skip
        account_data = encode(["uint256"] * 6, [200_000_000_000, 150_000_000_000, 0, 8500, 8000, 1_133_333_333_333_333_333])
        bitmap = encode(["uint256"], [0b0110])  # WETH collateral, USDC borrowed
        prices = encode(["uint256[]"], [[2000 * 10**8, 1 * 10**8, 60_000 * 10**8]])

        def configuration(lt_bps: int, decimals: int) -> bytes:
            return encode(["uint256"], [(decimals << 48) | (lt_bps << 16) | 8000])

        def amount(units: int) -> bytes:
            return encode(["uint256"], [units])

        details = [configuration(8500, 18), amount(10**18), amount(0), amount(0),
                   configuration(8800, 6), amount(0), amount(0), amount(1500 * 10**6),
                   configuration(7500, 8), amount(0), amount(0), amount(0)]  # fmt: skip
        (reading,) = aave.plan(USER, detailed=True).decode(ok(account_data, bitmap, prices, *details), 7).readings
        weth, usdc = reading.assets
        assert (weth.symbol, weth.side, weth.amount, weth.value, weth.weight) == ("WETH", Side.COLLATERAL, 1.0, 2000.0, 0.85)
        assert (usdc.symbol, usdc.side, usdc.amount, usdc.value, usdc.weight) == ("USDC", Side.DEBT, 1500.0, 1500.0, 1.0)


class ChainState:
    """Answers the resolve's reads from a list of reserves (asset, id, aToken): what getReservesList and
    getReserveData return at one block; any other call reverts."""

    def __init__(self, reserves: list[tuple[str, int, str]]) -> None:
        self.reserves = reserves

    async def read(self, calls: list, block: int) -> list[CallResult]:  # type: ignore[type-arg]
        from chainwatch.abi import calldata

        answers = {
            (PROVIDER, calldata("getPool()")): encode(["address"], [POOL]),
            (PROVIDER, calldata("getPriceOracle()")): encode(["address"], [ORACLE]),
            (PROVIDER, calldata("getPoolConfigurator()")): encode(["address"], [CONFIGURATOR]),
            (POOL, calldata("getReservesList()")): encode(["address[]"], [[a for a, _, _ in self.reserves]]),
            (ORACLE, calldata("BASE_CURRENCY_UNIT()")): encode(["uint256"], [10**8]),
        }
        zero = "0x" + "00" * 20
        for asset, reserve_id, a_token in self.reserves:
            data = encode(["(uint256)", *["uint128"] * 5, "uint40", "uint16", *["address"] * 4, *["uint128"] * 3],
                          [(0,), 0, 0, 0, 0, 0, 0, reserve_id, a_token, zero, zero, zero, 0, 0, 0])  # fmt: skip
            answers[(POOL, calldata("getReserveData(address)", asset))] = data
            answers[(ORACLE, calldata("getSourceOfAsset(address)", asset))] = encode(["address"], ["0x" + "5f" * 20])
        found = (answers.get((call.target.lower(), call.data)) for call in calls)
        return [CallResult(success=data is not None, data=data or b"") for data in found]


class TestReserveMapRebuilt:
    async def test_dropped_reserve_whose_id_is_reused_leaves_no_stale_bit(self) -> None:
        """WETH (id 0) dropped and NEW initialised into id 0: after the resolve, bit 1 means NEW, WETH and its
        aToken are forgotten, so an account's exposure names only what it holds."""
        new, new_atoken = "0x" + "04" * 20, "0x" + "c4" * 20
        protocol = AaveV3("neverland", to_checksum_address(PROVIDER))
        state = ChainState([(WETH, 0, ATOKEN), (USDC, 1, "0x" + "c2" * 20)])
        await protocol.resolve(state, 1)  # type: ignore[arg-type]
        assert protocol.reserves == {WETH: 0, USDC: 1}
        state.reserves = [(new, 0, new_atoken), (USDC, 1, "0x" + "c2" * 20)]  # after ReserveDropped + ReserveInitialized
        await protocol.resolve(state, 2)  # type: ignore[arg-type]
        assert protocol.reserves == {new: 0, USDC: 1}
        assert ATOKEN not in protocol.atokens and protocol.atokens[new_atoken] == new
        account_data = encode(["uint256"] * 6, [200_000_000_000, 150_000_000_000, 0, 8500, 8000, 2 * 10**18])
        bitmap = encode(["uint256"], [0b0110])  # id 0 as collateral, id 1 borrowed
        result = protocol.plan(USER).decode(ok(account_data, bitmap, encode(["uint256[]"], [[1, 1]])), 2)
        assert result.exposure == {new, USDC}

    def test_reserve_changes_ask_for_a_resolve(self, aave: AaveV3) -> None:
        """ReserveDropped from the configurator is what triggers the rebuild."""
        log = pool_log("ReserveDropped(address)", word(WETH), address=CONFIGURATOR)
        assert aave.touched_by(log) == SourcesChanged()


class TestPlans:
    """Aave's per-account calls are built afresh at each plan (two words each, ~1 us: kept per account they
    cost ~40 MiB at 100,000 positions); the prices call, the same for every account, is one object."""

    def test_every_accounts_prices_call_is_one_object(self, aave: AaveV3) -> None:
        assert aave.plan(OTHER).calls[2] is aave.plan(USER).calls[2]
        assert aave.plan(USER).calls[0].data[-20:] == bytes.fromhex(USER[2:])

    def test_a_changed_plan_is_never_served_stale(self, aave: AaveV3) -> None:
        """A new reserve (a resolve), one dropped in place, a new pool or oracle: each changes the calls, and the
        decoding follows the reserves as planned."""
        first = aave.plan(USER).calls
        aave.reserves = {**aave.reserves, "0x" + "04" * 20: 3}
        grown = aave.plan(USER).calls
        assert grown != first
        assert decode(["address[]"], grown[2].data[4:])[0][-1] == "0x" + "04" * 20
        del aave.reserves[WBTC]  # mutated in place, not replaced
        shrunk = aave.plan(USER).calls
        assert decode(["address[]"], shrunk[2].data[4:])[0] == (WETH, USDC, "0x" + "04" * 20)
        aave.pool, aave.oracle = to_checksum_address("0x" + "a0" * 20), to_checksum_address("0x" + "b0" * 20)
        moved = aave.plan(USER).calls
        assert [c.target for c in moved] == [aave.pool, aave.pool, aave.oracle]
        bitmap = 1 << (2 * 3 + 1)  # collateral in the new reserve, id 3
        prices = encode(["uint256[]"], [[1, 2, 3]])
        reading = aave.plan(USER).decode(ok(encode(["uint256"] * 6, [1, 0, 0, 0, 0, 2**256 - 1]),
                                            encode(["uint256"], [bitmap]), prices), 5)  # fmt: skip
        assert reading.exposure == frozenset({"0x" + "04" * 20})
