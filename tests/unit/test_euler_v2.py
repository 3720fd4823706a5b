"""Euler v2: resolving feeds through the router, sub-accounts, what a log touches, and readings from the vault."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from chainwatch.abi import calldata
from chainwatch.chain import Log
from chainwatch.config import EulerV2Config
from chainwatch.feeds import PriceSource
from chainwatch.model import Discovered, Side
from chainwatch.multicall import Call, CallResult
from chainwatch.protocols.base import (
    AccountsTouched,
    MarketsTouched,
    ReadError,
    SourcesChanged,
)
from chainwatch.protocols.euler_v2 import EulerV2, exposure_key
from chainwatch.protocols.plans import PlanCache

EVC, VAULT, OTHER_VAULT = "0x" + "e0" * 20, "0x" + "aa" * 20, "0x" + "ab" * 20
WETH_VAULT, WBTC_VAULT, ROUTER = "0x" + "b1" * 20, "0x" + "b2" * 20, "0x" + "cc" * 20
WETH, USDC, WBTC = "0x" + "01" * 20, "0x" + "02" * 20, "0x" + "03" * 20
WETH_ADAPTER, USDC_ADAPTER, WBTC_ADAPTER = "0x" + "d1" * 20, "0x" + "d2" * 20, "0x" + "d3" * 20
WETH_FEED, USDC_PROXY, USDC_AGGREGATOR = "0x" + "f1" * 20, "0x" + "f2" * 20, "0x" + "f3" * 20
USD = "0x" + f"{840:040x}"
OWNER = to_checksum_address("0x" + "5a" * 19 + "00")
STRANGER = "0x" + "77" * 20
E18 = 10**18


def sub(owner: str, sub_id: int) -> str:
    return to_checksum_address(f"0x{int(owner, 16) ^ sub_id:040x}")


def ok(types: list[str], values: list[object]) -> CallResult:
    return CallResult(success=True, data=encode(types, values))


FAILED = CallResult(success=False, data=b"")
ROUND = ok(["uint80", "int256", "uint256", "uint256", "uint80"], [1, 10**8, 1, 1, 1])  # a live Chainlink feed


class FakeReader:
    """The chain as a table of (target, calldata) -> result; anything not in it reverts, except getControllers."""

    def __init__(self, answers: dict[tuple[str, bytes], CallResult]) -> None:
        self.answers = {(target.lower(), data): result for (target, data), result in answers.items()}
        self.batches: list[Sequence[Call]] = []

    async def read(self, calls: Sequence[Call], block: int) -> list[CallResult]:
        self.batches.append(calls)
        return [self._answer(call) for call in calls]

    def _answer(self, call: Call) -> CallResult:
        if (call.target.lower(), call.data) in self.answers:
            return self.answers[(call.target.lower(), call.data)]
        if call.data[:4] == calldata("getControllers(address)", EVC)[:4]:
            return ok(["address[]"], [[]])
        return FAILED


def chain_answers() -> dict[tuple[str, bytes], CallResult]:
    """A USDC vault lending in USD against WETH and WBTC vaults; USDC's feed sits behind a proxy, WBTC's adapter
    has no Chainlink feed."""
    answers = {
        (VAULT, calldata("oracle()")): ok(["address"], [ROUTER]),
        (VAULT, calldata("unitOfAccount()")): ok(["address"], [USD]),
        (VAULT, calldata("asset()")): ok(["address"], [USDC]),
        (VAULT, calldata("LTVList()")): ok(["address[]"], [[WETH_VAULT, WBTC_VAULT]]),
        (USD, calldata("decimals()")): CallResult(success=True, data=b""),  # not a contract
        (USD, calldata("symbol()")): CallResult(success=True, data=b""),
        (WETH_ADAPTER, calldata("feed()")): ok(["address"], [WETH_FEED]),
        (USDC_ADAPTER, calldata("feed()")): ok(["address"], [USDC_PROXY]),
        (USDC_PROXY, calldata("aggregator()")): ok(["address"], [USDC_AGGREGATOR]),
        (WETH_FEED, calldata("latestRoundData()")): ROUND,
        (USDC_AGGREGATOR, calldata("latestRoundData()")): ROUND,
    }
    for base, end, adapter, symbol, decimals in ((USDC, USDC, USDC_ADAPTER, "USDC", 6),
                                                 (WETH_VAULT, WETH, WETH_ADAPTER, "WETH", 18),
                                                 (WBTC_VAULT, WBTC, WBTC_ADAPTER, "WBTC", 8)):  # fmt: skip
        resolve = calldata("resolveOracle(uint256,address,address)", 1, base, USD)
        answers[(ROUTER, resolve)] = ok(["uint256", "address", "address", "address"], [1, end, USD, adapter])
        answers[(end, calldata("symbol()"))] = ok(["string"], [symbol])
        answers[(end, calldata("decimals()"))] = ok(["uint8"], [decimals])
    return answers


@pytest.fixture
async def euler() -> EulerV2:
    protocol = EulerV2(EulerV2Config(name="euler", evc=to_checksum_address(EVC), vaults=(to_checksum_address(VAULT),)))
    await protocol.resolve(FakeReader(chain_answers()), 1)  # type: ignore[arg-type]
    return protocol


class FakeRpc:
    """The EVC's past ControllerStatus logs, answered by block range; every eth_getLogs query recorded."""

    def __init__(self, enabled: Sequence[tuple[str, str]] = (), *, block: int = 1) -> None:
        self.logs = [{"address": EVC, "topics": [topic("ControllerStatus(address,address,bool)"), word(account),
                                                 word(controller)],
                      "data": "0x" + encode(["bool"], [True]).hex(), "blockNumber": hex(block), "blockHash": "0x01",
                      "logIndex": hex(i), "transactionHash": "0x02"} for i, (account, controller) in enumerate(enabled)]  # fmt: skip
        self.queries: list[dict[str, object]] = []

    async def request(self, method: str, params: list[dict[str, str]]) -> list[dict[str, object]]:
        assert method == "eth_getLogs"
        query = params[0]
        self.queries.append(query)
        low, high = int(query["fromBlock"], 16), int(query["toBlock"], 16)
        return [raw for raw in self.logs if low <= int(raw["blockNumber"], 16) <= high]  # type: ignore[arg-type]


async def watching(euler: EulerV2, *positions: tuple[str, str]) -> EulerV2:
    """`euler` after discovery of OWNER, with (sub-account, controller) pairs found on chain."""
    answers = {(EVC, calldata("getControllers(address)", account)): ok(["address[]"], [[controller]])
               for account, controller in positions}  # fmt: skip
    await euler.discover(FakeRpc(positions), FakeReader(answers), [OWNER], 1)  # type: ignore[arg-type]
    return euler


def topic(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


def word(address: str) -> str:
    return "0x" + "00" * 12 + address[2:].lower()


def log(address: str, signature: str, *indexed: str, data: bytes = b"") -> Log:
    return Log(address=address.lower(), topics=(topic(signature), *indexed), data=data, block_number=5,
               block_hash="0x01", log_index=0, transaction_hash="0x02")  # fmt: skip


class TestResolve:
    async def test_feeds_follow_router_adapter_and_proxy(self, euler: EulerV2) -> None:
        """WETH's adapter feed emits itself; USDC's is a proxy, so its aggregator is what moves the debt's key."""
        assert euler.price_feeds() == {
            PriceSource(emitter=WETH_FEED): frozenset({exposure_key(VAULT, WETH_VAULT)}),
            PriceSource(emitter=USDC_AGGREGATOR): frozenset({exposure_key(VAULT, VAULT)}),
        }

    async def test_unit_of_account_usd_has_18_decimals(self, euler: EulerV2) -> None:
        """USD is Euler's address(840): named by its ISO 4217 code and valued with 18 decimals."""
        vault = euler.vaults[VAULT]
        assert (vault.currency, vault.unit) == ("USD", E18)
        assert vault.priced[WBTC_VAULT].sources == frozenset() and vault.priced[WBTC_VAULT].symbol == "WBTC"

    async def test_log_filter_names_every_emitter(self, euler: EulerV2) -> None:
        """The EVC, the vault, its collateral vaults, its router and the USDC proxy it follows are all listened to."""
        assert set(euler.log_filter().addresses) == {EVC, VAULT, WETH_VAULT, WBTC_VAULT, ROUTER, USDC_PROXY}

    async def test_followed_proxy_confirming_an_aggregator_changes_sources(self, euler: EulerV2) -> None:
        """AggregatorConfirmed from the USDC proxy re-resolves; the same event from another address does not."""
        confirmed = "AggregatorConfirmed(address,address)"
        assert euler.touched_by(log(USDC_PROXY, confirmed, word(USDC_AGGREGATOR), word(OTHER_VAULT))) == SourcesChanged()
        assert euler.touched_by(log(OTHER_VAULT, confirmed, word(USDC_AGGREGATOR), word(OTHER_VAULT))) is None

    async def test_vault_without_oracle_fails_loudly(self) -> None:
        """A configured address that is no EVK vault stops start-up with a ReadError naming it."""
        config = EulerV2Config(name="euler", evc=to_checksum_address(EVC), vaults=(to_checksum_address(OTHER_VAULT),))
        protocol = EulerV2(config)
        with pytest.raises(ReadError, match="oracle"):
            await protocol.resolve(FakeReader({}), 1)  # type: ignore[arg-type]


class TestDiscover:
    async def test_asks_only_sub_accounts_the_evc_logged(self, euler: EulerV2) -> None:
        """The EVC's past ControllerStatus logs naming a configured vault say which sub-accounts to ask; only those
        get a getControllers (not all 256), and only those controlled by a configured vault are kept."""
        rpc = FakeRpc([(sub(OWNER, 1), VAULT), (sub(OWNER, 2), VAULT), (sub(STRANGER, 0), VAULT)])
        reader = FakeReader({
            (EVC, calldata("getControllers(address)", sub(OWNER, 1))): ok(["address[]"], [[VAULT]]),
            (EVC, calldata("getControllers(address)", sub(OWNER, 2))): ok(["address[]"], [[]]),  # disabled since
        })  # fmt: skip
        found = await euler.discover(rpc, reader, [OWNER], 1)  # type: ignore[arg-type]
        assert [list(batch) for batch in reader.batches] == [
            [Call(target=to_checksum_address(EVC), data=calldata("getControllers(address)", sub(OWNER, i)), gas=30_000)
             for i in (1, 2)]]  # fmt: skip
        (query,) = rpc.queries
        assert query["topics"] == [topic("ControllerStatus(address,address,bool)"), None, [word(VAULT)]]
        assert [(f.account, f.market) for f in found] == [(OWNER, f"{to_checksum_address(VAULT)}#1"),
                                                          (OWNER, f"{to_checksum_address(VAULT)}#2")]  # fmt: skip
        calls = euler.plan(OWNER).calls
        assert calls[1].data == calldata("accountLiquidityFull(address,bool)", sub(OWNER, 1), True)
        assert len(calls) == 2 + 2  # getControllers, accountLiquidityFull, a quote per priced collateral

    async def test_restored_sub_accounts_are_asked_without_scanning_again(self, euler: EulerV2) -> None:
        """After a restart, a sub-account stored from an earlier scan is asked again, and only newer blocks are
        scanned."""
        euler.restore([Discovered(account=OWNER, market=f"{to_checksum_address(VAULT)}#255", block=1)])
        rpc = FakeRpc()
        reader = FakeReader({(EVC, calldata("getControllers(address)", sub(OWNER, 255))): ok(["address[]"], [[VAULT]])})
        assert await euler.discover(rpc, reader, [OWNER], 20, after=10) == []  # type: ignore[arg-type]
        assert {(q["fromBlock"], q["toBlock"]) for q in rpc.queries} == {("0xb", "0x14")}
        assert euler.plan(OWNER).calls[1].data == calldata("accountLiquidityFull(address,bool)", sub(OWNER, 255), True)

    async def test_failed_discovery_is_an_error(self, euler: EulerV2) -> None:
        """A reverted getControllers must not pass for "no sub-accounts"."""
        reader = FakeReader({(EVC, calldata("getControllers(address)", sub(OWNER, 3))): FAILED})
        with pytest.raises(ReadError):
            await euler.discover(FakeRpc([(sub(OWNER, 3), VAULT)]), reader, [OWNER], 1)  # type: ignore[arg-type]


class TestTouchedBy:
    @pytest.mark.parametrize(
        ("address", "signature", "topics"),
        [
            (VAULT, "Borrow(address,uint256)", [word(sub(OWNER, 1))]),
            (VAULT, "Repay(address,uint256)", [word(sub(OWNER, 1))]),
            (VAULT, "InterestAccrued(address,uint256)", [word(sub(OWNER, 1))]),
            (WETH_VAULT, "Deposit(address,address,uint256,uint256)", [word(STRANGER), word(sub(OWNER, 1))]),
            (WETH_VAULT, "Withdraw(address,address,address,uint256,uint256)",
             [word(STRANGER), word(STRANGER), word(sub(OWNER, 1))]),
            (WETH_VAULT, "Transfer(address,address,uint256)", [word(sub(OWNER, 1)), word(STRANGER)]),
            (WETH_VAULT, "Transfer(address,address,uint256)", [word(STRANGER), word(sub(OWNER, 1))]),
            (VAULT, "Liquidate(address,address,address,uint256,uint256)", [word(STRANGER), word(sub(OWNER, 1))]),
            (VAULT, "PullDebt(address,address,uint256)", [word(sub(OWNER, 1)), word(STRANGER)]),
            (EVC, "CollateralStatus(address,address,bool)", [word(sub(OWNER, 1)), word(WETH_VAULT)]),
            (EVC, "AccountStatusCheck(address,address)", [word(sub(OWNER, 1)), word(VAULT)]),
        ],
    )  # fmt: skip
    async def test_sub_account_event_touches_its_owner(
        self, euler: EulerV2, address: str, signature: str, topics: list[str]
    ) -> None:
        """Any event naming a sub-account where its position changes marks the watched owner."""
        await watching(euler)
        assert euler.touched_by(log(address, signature, *topics)) == AccountsTouched(accounts=frozenset({OWNER}))

    @pytest.mark.parametrize(
        ("address", "signature", "topics"),
        [
            (WETH_VAULT, "Deposit(address,address,uint256,uint256)", [word(sub(OWNER, 1)), word(STRANGER)]),
            (VAULT, "Borrow(address,uint256)", [word(STRANGER)]),
            (STRANGER, "Borrow(address,uint256)", [word(OWNER)]),
        ],
    )
    async def test_other_logs_touch_nothing(
        self, euler: EulerV2, address: str, signature: str, topics: list[str]
    ) -> None:
        """The sender of a deposit, strangers and unknown emitters touch no watched position."""
        await watching(euler)
        assert euler.touched_by(log(address, signature, *topics)) is None

    async def test_vault_status_is_market_drift(self, euler: EulerV2) -> None:
        """A controller vault's VaultStatus (new rates, accumulator) is drift for every position under it."""
        await watching(euler)
        touch = euler.touched_by(log(VAULT, "VaultStatus(uint256,uint256,uint256,uint256,uint256,uint256,uint256)"))
        assert isinstance(touch, MarketsTouched) and touch.drift
        assert touch.keys and all(key.startswith(VAULT.lower() + ":") for key in touch.keys)

    async def test_controller_enabled_later_is_learned(self, euler: EulerV2) -> None:
        """ControllerStatus(enabled) for a new sub-account adds its reads to the owner's; a disable adds nothing."""
        await watching(euler)
        assert euler.plan(OWNER).calls == ()
        status = "ControllerStatus(address,address,bool)"
        disabled = log(EVC, status, word(sub(OWNER, 9)), word(VAULT), data=encode(["bool"], [False]))
        assert euler.touched_by(disabled) == AccountsTouched(accounts=frozenset({OWNER}))
        assert euler.plan(OWNER).calls == ()
        enabled = log(EVC, status, word(sub(OWNER, 9)), word(VAULT), data=encode(["bool"], [True]))
        assert euler.touched_by(enabled) == AccountsTouched(accounts=frozenset({OWNER}))
        assert euler.plan(OWNER).calls[0].data == calldata("getControllers(address)", sub(OWNER, 9))

    async def test_market_wide_changes(self, euler: EulerV2) -> None:
        """New LTVs or router routes re-resolve; socialized debt of a collateral vault touches its holders."""
        ltv = log(VAULT, "GovSetLTV(address,uint16,uint16,uint16,uint48,uint32)", word(WETH_VAULT))
        route = log(ROUTER, "ConfigSet(address,address,address)", word(WETH), word(USD), word(WETH_ADAPTER))
        socialized = log(WETH_VAULT, "DebtSocialized(address,uint256)", word(STRANGER))
        assert euler.touched_by(ltv) == SourcesChanged() and euler.touched_by(route) == SourcesChanged()
        assert euler.touched_by(socialized) == MarketsTouched(keys=frozenset({exposure_key(VAULT, WETH_VAULT)}))

    async def test_two_watched_addresses_of_one_owner_never_share_a_sub_account(self, euler: EulerV2) -> None:
        """A watched sub-account reports itself; its unwatched siblings go to the watched one with the lowest id."""
        await euler.discover(FakeRpc(), FakeReader({}), [sub(OWNER, 4), OWNER], 1)  # type: ignore[arg-type]
        borrow = "Borrow(address,uint256)"
        assert euler.touched_by(log(VAULT, borrow, word(sub(OWNER, 4)))) == AccountsTouched(
            accounts=frozenset({sub(OWNER, 4)}))  # fmt: skip
        assert euler.touched_by(log(VAULT, borrow, word(sub(OWNER, 5)))) == AccountsTouched(accounts=frozenset({OWNER}))


def results(controllers: list[str], liquidity: CallResult, weth_quote: int = 2000 * E18) -> list[CallResult]:
    """What the chain answers to one group of a plan: controllers, liquidity, WETH's and WBTC's quotes."""
    return [ok(["address[]"], [controllers]), liquidity, ok(["uint256"], [weth_quote]), ok(["uint256"], [60000 * E18])]


def liquidity(values: dict[str, int], liability: int) -> CallResult:
    return ok(["address[]", "uint256[]", "uint256"], [list(values), list(values.values()), liability])


class TestDecode:
    async def test_single_collateral_sub_account(self, euler: EulerV2) -> None:
        """Health is collateral value over liability; the sub-account id marks the market; price / HF liquidates."""
        await watching(euler, (sub(OWNER, 1), VAULT))
        reading = euler.plan(OWNER).decode(results([VAULT], liquidity({WETH_VAULT: 1700 * E18}, 1000 * E18)), 9)
        (position,) = reading.readings
        assert position.key.account == OWNER and position.key.market == f"{to_checksum_address(VAULT)}#1"
        assert position.health_factor == pytest.approx(1.7) and position.block == 9
        assert (position.collateral, position.debt, position.currency) == (1700.0, 1000.0, "USD")
        assert position.liquidation_asset == "WETH"
        assert position.liquidation_price == pytest.approx(2000 / 1.7)
        assert reading.exposure == {exposure_key(VAULT, VAULT), exposure_key(VAULT, WETH_VAULT)}

    async def test_no_liability_is_infinite_health(self, euler: EulerV2) -> None:
        """A controller with nothing owed yet reads as no debt, without a liquidation price."""
        await watching(euler, (OWNER, VAULT))
        (position,) = euler.plan(OWNER).decode(results([VAULT], liquidity({WETH_VAULT: 1700 * E18}, 0)), 9).readings
        assert math.isinf(position.health_factor) and position.liquidation_price is None
        assert position.key.market == to_checksum_address(VAULT)

    async def test_two_collaterals_have_no_single_liquidation_price(self, euler: EulerV2) -> None:
        """With value in two collaterals no one price liquidates the position."""
        await watching(euler, (OWNER, VAULT))
        values = {WETH_VAULT: 850 * E18, WBTC_VAULT: 750 * E18}
        (position,) = euler.plan(OWNER).decode(results([VAULT], liquidity(values, 1000 * E18)), 9).readings
        assert position.health_factor == pytest.approx(1.6) and position.liquidation_price is None

    async def test_released_controller_reads_no_debt_once(self, euler: EulerV2) -> None:
        """After the vault releases the sub-account, one no-debt reading closes the market, then it is not read."""
        await watching(euler, (sub(OWNER, 1), VAULT))
        (position,) = euler.plan(OWNER).decode(results([], FAILED), 9).readings
        assert math.isinf(position.health_factor) and position.key.market.endswith("#1")
        assert euler.plan(OWNER).calls == ()

    @pytest.mark.parametrize(
        "answers",
        [
            results([VAULT], FAILED),
            [FAILED, *results([VAULT], liquidity({}, 0))[1:]],
            results([VAULT, OTHER_VAULT], FAILED),
        ],
        ids=["liquidity reverted", "controllers reverted", "two controllers"],
    )
    async def test_failed_reads_are_errors(self, euler: EulerV2, answers: list[CallResult]) -> None:
        """A revert or a transient state is a ReadError, never an empty position."""
        await watching(euler, (OWNER, VAULT))
        with pytest.raises(ReadError):
            euler.plan(OWNER).decode(answers, 9)


class TestDetailedPlan:
    async def test_lines_split_weighted_values_by_the_liquidation_ltv(self, euler: EulerV2) -> None:
        """The plain calls come first; the lines carry amounts from balances and values from the vault's own."""
        await watching(euler, (sub(OWNER, 1), VAULT))
        plain, detailed = euler.plan(OWNER).calls, euler.plan(OWNER, detailed=True).calls
        assert detailed[: len(plain)] == plain and len(detailed) == len(plain) + 1 + 3 * 2
        word = ["uint256"]
        details = [ok(word, [1000 * 10**6]),  # debtOf: 1,000 USDC
                   ok(word, [8500]), ok(word, [E18 // 2]), ok(word, [2 * E18]),  # WETH: LTV, shares, assets per share
                   ok(word, [7500]), ok(word, [0]), ok(word, [10**8])]  # fmt: skip  (WBTC: nothing held)
        answers = results([VAULT], liquidity({WETH_VAULT: 1700 * E18}, 1000 * E18)) + details
        (position,) = euler.plan(OWNER, detailed=True).decode(answers, 9).readings
        weth, usdc = position.assets
        assert (weth.symbol, weth.side, weth.amount, weth.value, weth.weight) == ("WETH", Side.COLLATERAL, 1.0, 2000.0, 0.85)
        assert (usdc.symbol, usdc.side, usdc.amount, usdc.value) == ("USDC", Side.DEBT, 1000.0, 1000.0)


def rebuilt(euler: EulerV2, account: str) -> tuple[Call, ...]:
    """The calls a protocol with no plans kept would build now: what a reused plan must equal."""
    euler._plans = PlanCache()
    return euler.plan(account).calls


class TestPlanReuse:
    async def test_calls_are_built_once(self, euler: EulerV2) -> None:
        await watching(euler, (sub(OWNER, 1), VAULT))
        first = euler.plan(OWNER).calls
        assert len(first) == 4 and euler.plan(OWNER).calls is first  # nothing encoded again

    async def test_a_changed_plan_is_never_served_stale(self, euler: EulerV2) -> None:
        """A sub-account learnt from a log, a resolve that prices a collateral in another unit, a sub-account the
        vault released: each time the calls a fresh build gives."""
        await watching(euler, (sub(OWNER, 1), VAULT))
        first = euler.plan(OWNER).calls
        status = "ControllerStatus(address,address,bool)"
        euler.touched_by(log(EVC, status, word(sub(OWNER, 2)), word(VAULT), data=encode(["bool"], [True])))
        grown = euler.plan(OWNER).calls
        assert grown[:4] == first and grown[4].data == calldata("getControllers(address)", sub(OWNER, 2))
        assert grown == rebuilt(euler, OWNER)
        vault = euler.vaults[VAULT]
        weth = vault.priced[WETH_VAULT]._replace(unit=10**6)
        euler.vaults[VAULT] = vault._replace(priced={**vault.priced, WETH_VAULT: weth})
        requoted = euler.plan(OWNER).calls
        assert requoted[2].data == calldata("getQuote(uint256,address,address)", 10**6, WETH, USD)
        assert requoted == rebuilt(euler, OWNER)
        euler.plan(OWNER).decode(results([], FAILED) + results([VAULT], liquidity({}, 0)), 9)  # sub-account 1 released
        assert euler.plan(OWNER).calls == requoted[4:] == rebuilt(euler, OWNER)
