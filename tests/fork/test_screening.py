"""Screening on real Aave v3: a WETH answer re-reads only the holders it can bring near a warn line, whether WETH's
oracle source is its aggregator itself or a Chainlink proxy in front of it; the far ones cost nothing. A huge
`screen_margin`, or a source that transforms the answer (proxy-shaped, but multiplying it), reads them all again."""

from __future__ import annotations

from decimal import Decimal

from structlog.testing import capture_logs

from chainwatch.abi import calldata

from tests.fork.conftest import CHAT, Chain, StartWatcher, health_and_block, positions_read_at
from tests.fork.test_spine import health_at
from tests.support.botapi import BotApiServer
from tests.support.rpcproxy import RpcProxy

STRICT_CHAT = 777  # watches `farther` with a warn line of 8.0: that watch's line, not [alerts]', is the one screened


class Book:
    """near: 1 WETH / 1,000 USDC (health 1.70 at $2,000); far: 10 WETH (17.0); farther: 5 WETH (8.5), watched by
    a strict chat of its own (warn 8.0); wbtc: 0.05 WBTC (2.25), not exposed to WETH at all. [alerts] warn is 1.5."""

    def __init__(self, chain: Chain) -> None:
        self.near, self.far, self.farther, self.wbtc = chain.accounts[:4]

    async def open(self, chain: Chain) -> None:
        for account, supply in ((self.near, {"WETH": 1}), (self.far, {"WETH": 10}), (self.farther, {"WETH": 5}),
                                (self.wbtc, {"WBTC": Decimal("0.05")})):  # fmt: skip
            await chain.actions.open_position(account, supply=supply, borrow={"USDC": 1000})

    def watches(self) -> str:
        plain = "".join(f'[[watch]]\naddress = "{a}"\nlabel = "{n}"\n\n'
                        for n, a in (("near", self.near), ("far", self.far), ("wbtc", self.wbtc)))  # fmt: skip
        return plain + (f'[[watch]]\naddress = "{self.farther}"\nlabel = "farther"\nchat_id = {STRICT_CHAT}\n'
                        f"warn = 8.0\ncritical = 2.0\n")  # fmt: skip


async def oracle_price(chain: Chain, symbol: str, block: int) -> int:
    """What Aave's oracle prices the asset at (8 decimals): the answer its source returns."""
    data = calldata("getAssetPrice(address)", chain.devnet.aave_v3.reserves[symbol].asset)
    raw = await chain.web3.eth.call({"to": chain.devnet.aave_v3.oracle, "data": "0x" + data.hex()}, block)
    return int.from_bytes(raw, "big")


def screened_at(logs: list[dict[str, object]], block: int) -> list[object]:
    return [e["skipped"] for e in logs if e["event"] == "recompute.screened" and e["block"] == block]


class TestScreening:
    async def test_far_holders_are_not_read_and_the_near_one_is_alerted(
        self, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer, proxy: RpcProxy
    ) -> None:
        """$1,950: every WETH holder stays 2% above its line, so the block costs no eth_call. $1,900: only `farther`
        (8.08 against its chat's 8.0 + 2%) is read. $1,700: `near` (1.445) and `farther` (7.2) are read and
        warned, each to its own chat; `far` (14.45) is still not read."""
        book = Book(chain)
        await book.open(chain)
        running = await start_watcher(watched=[], extra=book.watches())
        with capture_logs() as logs:
            before = proxy.count("eth_call")
            quiet = await chain.actions.set_price("WETH", 1950)
            await running.settled(quiet)
            assert proxy.count("eth_call") == before
            assert screened_at(logs, quiet) == [3] and positions_read_at(logs, quiet) == []

            strict = await chain.actions.set_price("WETH", 1900)
            await running.settled(strict)
            assert screened_at(logs, strict) == [2] and positions_read_at(logs, strict) == [1]
            assert bot_api.messages == []

            crash = await chain.actions.set_price("WETH", 1700)
            await running.settled(crash)
            assert screened_at(logs, crash) == [1] and positions_read_at(logs, crash) == [2]
        warned = sorted((m.chat_id, m.text.split()[1], m.text) for m in bot_api.messages)
        assert [(chat, kind) for chat, kind, _ in warned] == [(STRICT_CHAT, "WARN"), (CHAT, "WARN")]
        assert book.farther in warned[0][2] and book.near in warned[1][2]
        for (_, _, text), account in zip(warned, (book.farther, book.near)):
            health, block = health_and_block(text)
            assert block == crash and health == await health_at(chain, account, block)

    async def test_a_huge_margin_reads_every_holder(
        self, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """With `screen_margin` far beyond any health, every WETH holder is read on each WETH answer (the WBTC one,
        not exposed, is not)."""
        book = Book(chain)
        await book.open(chain)
        running = await start_watcher(watched=[], extra=book.watches(), refresh_extra="screen_margin = 1e9")
        with capture_logs() as logs:
            block = await chain.actions.set_price("WETH", 1950)
            await running.settled(block)
        assert screened_at(logs, block) == [] and positions_read_at(logs, block) == [3]
        assert bot_api.messages == []


class TestScreeningThroughAProxy:
    async def test_a_proxy_fed_price_screens_out_the_safe_holders_and_alerts_the_crossing_ones(
        self, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer, proxy: RpcProxy
    ) -> None:
        """WETH's oracle source made a FeedProxy (as on Neverland): the aggregator's answer is the proxy's, so the
        same story as with the bare aggregator: $1,950 costs no eth_call, $1,700 reads and warns `near` and
        `farther` only, at the health the Pool reports. Neither `far` nor `pair` (5 WETH and 0.1 WBTC against
        1,000 USDC: 13.0, two collaterals known as one total) is ever read."""
        book, pair = Book(chain), chain.accounts[4]
        await chain.actions.reprice_through("WETH")
        await book.open(chain)
        await chain.actions.open_position(pair, supply={"WETH": 5, "WBTC": Decimal("0.1")}, borrow={"USDC": 1000})
        extra = book.watches() + f'\n[[watch]]\naddress = "{pair}"\nlabel = "pair"\n'
        running = await start_watcher(watched=[], extra=extra)
        with capture_logs() as logs:
            before = proxy.count("eth_call")
            quiet = await chain.actions.set_price("WETH", 1950)
            await running.settled(quiet)
            assert proxy.count("eth_call") == before
            assert screened_at(logs, quiet) == [4] and positions_read_at(logs, quiet) == []
            crash = await chain.actions.set_price("WETH", 1700)
            await running.settled(crash)
            assert screened_at(logs, crash) == [2] and positions_read_at(logs, crash) == [2]
        assert await oracle_price(chain, "WETH", crash) == 1700 * 10**8  # the proxy's answer is the aggregator's
        assert await health_at(chain, pair, crash) > Decimal("11.05")  # what screening bounded it at: all of it -15%
        warned = sorted((m.chat_id, m.text) for m in bot_api.messages)
        assert [chat for chat, _ in warned] == [STRICT_CHAT, CHAT]
        for (_, text), account in zip(warned, (book.farther, book.near)):
            health, block = health_and_block(text)
            assert account in text and block == crash and health == await health_at(chain, account, block)

    async def test_a_source_that_transforms_the_answer_reads_every_holder(
        self, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer, proxy: RpcProxy
    ) -> None:
        """WETH's source a ScaledFeed (aggregator() and phaseId() like a proxy, the answer x 1.01): the aggregator's
        answer is not the oracle's price, so each WETH answer reads all three WETH holders, through the RPC."""
        book = Book(chain)
        await chain.actions.reprice_through("WETH", scale=(101, 100))
        await book.open(chain)
        running = await start_watcher(watched=[], extra=book.watches())
        with capture_logs() as logs:
            before = proxy.count("eth_call")
            block = await chain.actions.set_price("WETH", 1950)
            await running.settled(block)
        assert proxy.count("eth_call") > before
        assert await oracle_price(chain, "WETH", block) == 1950 * 101 * 10**6  # not the aggregator's answer
        assert screened_at(logs, block) == [] and positions_read_at(logs, block) == [3]
        assert bot_api.messages == []
