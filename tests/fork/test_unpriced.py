"""A position whose oracle keeps reverting (a pull oracle gone stale) is "cannot be priced", never "healthy"."""

from __future__ import annotations

from chainwatch.devnet.morpho import MorphoActions
from tests.fork.conftest import CHAT, Chain, StartWatcher
from tests.support.botapi import BotApiServer

MAX_BLOCKS = 60  # bounded: the backoff doubles from one block, so a handful of reads happen well within this
REVERT_ALWAYS = "0x60006000fd"  # PUSH1 0 PUSH1 0 REVERT: every call fails, as a stale pull oracle's price() does


async def morpho_borrower(chain: Chain) -> tuple[str, str, str]:
    """A Morpho WETH/USDC borrower (health 1.72): the account, the market's oracle, and the [[protocols]] TOML."""
    morpho = chain.devnet.morpho_blue
    assert morpho is not None
    market = morpho.markets["WETH/USDC"]
    borrower = chain.accounts[0]
    async with MorphoActions(chain.node.http_url, morpho) as actions:
        await actions.open_position(borrower, "WETH/USDC", collateral=1, borrow=1000)
    protocol = f'[[protocols]]\nkind = "morpho_blue"\nname = "morpho"\nmorpho = "{morpho.morpho}"\nmarkets = ["{market.id}"]\n'
    return borrower, market.oracle, protocol


async def mine_until(chain: Chain, bot_api: BotApiServer, word: str, seen: int) -> None:
    """Mines blocks one at a time until a message whose state word is `word` arrives after `seen` messages."""
    for _ in range(MAX_BLOCKS):
        if any(m.text.split()[1] == word for m in bot_api.messages[seen:]):
            return
        await chain.web3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        try:  # each block gets a moment to be read and told; most need no message at all
            await bot_api.wait_for_message(CHAT, lambda m: m.text.split()[1] == word, after=seen, timeout=0.3)
            return
        except AssertionError:
            continue
    raise AssertionError(f"no {word} message within {MAX_BLOCKS} blocks: {[m.text for m in bot_api.messages]}")


async def test_reverting_oracle_is_told_once_as_unpriced_and_once_when_priced_again(
    chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer
) -> None:
    """The Morpho oracle reverts on every read: after three failed reads one UNPRICED message (no OK, no
    RECOVERED); when it answers again, one PRICED message with the health factor."""
    borrower, oracle, protocol = await morpho_borrower(chain)
    await start_watcher(protocols=protocol, watched=[borrower], refresh_every_blocks=1)
    code = await chain.web3.eth.get_code(oracle)
    await chain.web3.provider.make_request("anvil_setCode", [oracle, REVERT_ALWAYS])  # type: ignore[arg-type]
    await mine_until(chain, bot_api, "UNPRICED", 0)
    unpriced = [m for m in bot_api.messages if m.text.split()[1] == "UNPRICED"]
    assert len(unpriced) == 1 and borrower in unpriced[0].text and "cannot be read or priced" in unpriced[0].text
    assert [m.text.split()[1] for m in bot_api.messages] == ["UNPRICED"]
    seen = len(bot_api.messages)
    await chain.web3.provider.make_request("anvil_setCode", [oracle, "0x" + code.hex()])  # type: ignore[arg-type]
    await mine_until(chain, bot_api, "PRICED", seen)
    words = [m.text.split()[1] for m in bot_api.messages]
    assert words == ["UNPRICED", "PRICED"]
    # 1,720 / 1,000 less the interest of the blocks mined meanwhile: none when they all fall in one second of
    # Anvil's clock, so the health shown is 1.720 or a little below it, never above.
    shown = float(bot_api.messages[-1].text.split("Health factor ")[1].split()[0])
    assert 1.70 <= shown <= 1.72, bot_api.messages[-1].text


async def test_check_says_a_position_cannot_be_priced_instead_of_no_position(
    chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer
) -> None:
    """/check of an account whose only market's oracle reverts names that market as not priceable now."""
    borrower, oracle, protocol = await morpho_borrower(chain)
    await start_watcher(protocols=protocol, watched=[], bot="check_cooldown_seconds = 0")
    await chain.web3.provider.make_request("anvil_setCode", [oracle, REVERT_ALWAYS])  # type: ignore[arg-type]
    bot_api.send_text(1001, f"/check {borrower}")
    reply = await bot_api.wait_for_message(1001, timeout=20)
    assert "morpho market 0x" in reply.text and "cannot be read or priced now" in reply.text, reply.text
    assert "no position" not in reply.text
