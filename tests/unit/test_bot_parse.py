"""The bot's argument parsing and texts: hostile input is refused with a reason or kept as typed."""

from __future__ import annotations

import pytest

from chainwatch.bot import parse
from chainwatch.bot.texts import MAX_MESSAGE, COMMANDS, distance_to_liquidation, help_text, split_message, usage

CHECKSUMMED = "0x52908400098527886E0F7030069857D2E4169EE7"


class TestAddress:
    @pytest.mark.parametrize("text", [CHECKSUMMED, CHECKSUMMED.lower(), "0x" + CHECKSUMMED[2:].upper()])
    def test_any_single_case_or_valid_checksum(self, text: str) -> None:
        """Lower, upper and correct EIP-55 case all give the checksummed address."""
        assert parse.address(text) == CHECKSUMMED

    @pytest.mark.parametrize(
        "text, says",
        [("0x52908400098527886e0F7030069857D2E4169EE7", "checksum"), ("0x1234", "not an address"),
         ("hello", "not an address"), ("0x" + "g" * 40, "not an address")],
    )  # fmt: skip
    def test_refused_with_the_reason(self, text: str, says: str) -> None:
        """A wrong checksum and a non-address are refused, each saying which."""
        with pytest.raises(parse.BadArguments, match=says):
            parse.address(text)


class TestLabel:
    @pytest.mark.parametrize("words", [["<b>vault</b>"], ["*_[x](y)"], ["🐳", "whale"], ["ünïcödé"]])
    def test_markup_and_emoji_kept_as_typed(self, words: list[str]) -> None:
        """Markup characters and emoji are kept: replies are plain text, so they cannot turn into markup."""
        assert parse.label(words) == " ".join(words)

    @pytest.mark.parametrize(
        "words, says",
        [(["x" * 4000], "at most"), (["a\u200bb"], "zero-width"), (["\u202egnp.exe"], "direction"),
         (["bell\x07"], "control"), (["all"], "may not be"), ([CHECKSUMMED], "may not be")],
    )  # fmt: skip
    def test_refused_with_the_reason(self, words: list[str], says: str) -> None:
        """Too long, invisible or direction-changing characters, `all` or an address: refused, saying why."""
        with pytest.raises(parse.BadArguments, match=says):
            parse.label(words)


class TestNumbers:
    @pytest.mark.parametrize("warn, critical", [("1.0", "0.9"), ("1.2", "1.5"), ("11", "2"), ("nan", "1.2"),
                                                ("inf", "1.2"), ("x", "1.1"), ("1.5", "1.0")])  # fmt: skip
    def test_thresholds_need_one_below_critical_below_warn_up_to_ten(self, warn: str, critical: str) -> None:
        """Any pair outside 1.0 < CRITICAL < WARN <= 10 is refused."""
        with pytest.raises(parse.BadArguments):
            parse.thresholds(warn, critical)

    def test_good_thresholds(self) -> None:
        """1.6 / 1.25 is accepted as floats."""
        assert parse.thresholds("1.6", "1.25") == (1.6, 1.25)

    @pytest.mark.parametrize("text, seconds", [("30m", 1800), ("2h", 7200), ("1d", 86400), ("2H", 7200)])
    def test_durations(self, text: str, seconds: int) -> None:
        """30m, 2h and 1d are minutes, hours and days."""
        assert parse.duration(text) == seconds

    @pytest.mark.parametrize("text", ["0m", "5", "1w", "-1h", "9999d", "1.5h"])
    def test_bad_durations(self, text: str) -> None:
        """Anything else, or beyond a year, is refused."""
        with pytest.raises(parse.BadArguments):
            parse.duration(text)

    def test_market_accepts_the_shortened_form_the_bot_prints(self) -> None:
        """`0xabababab…abab`, as alerts show Morpho ids, is taken as the id's prefix."""
        assert parse.market("0xABABABAB…abab") == "0xabababab"


class TestTexts:
    def test_long_reply_split_at_line_ends_within_the_limit(self) -> None:
        """A 10,000-character reply is cut into parts of at most 4,096 characters, no character lost."""
        text = "\n".join(f"line {i} " + "x" * 90 for i in range(100))
        parts = split_message(text)
        assert len(parts) > 1 and all(len(p) <= MAX_MESSAGE for p in parts)
        assert "\n".join(parts) == text

    def test_one_huge_line_is_cut_hard(self) -> None:
        """A single line longer than a message still fits, in pieces."""
        parts = split_message("y" * 9000)
        assert [len(p) for p in parts] == [4096, 4096, 808]

    def test_help_names_every_command_with_its_example_and_the_protocols(self) -> None:
        """/help lists each command, an example where it takes arguments, the protocols and a disclaimer."""
        text = help_text(["neverland", "morpho"])
        for name, form, _, example in COMMANDS:
            assert f"/{name}" in text and (not example or f"/{name} {example}" in text)
        assert "neverland, morpho" in text and "not financial advice" in text
        assert usage("threshold").startswith("Usage: /threshold ADDRESS|LABEL|all [PROTOCOL [MARKET]] WARN CRITICAL")

    @pytest.mark.parametrize("health, text", [(2.0, "50.0% from liquidation"), (1.0001, "0.0% from liquidation"),
                                              (0.99, "liquidatable now"), (float("inf"), "no debt")])  # fmt: skip
    def test_distance_to_liquidation(self, health: float, text: str) -> None:
        """How far collateral value may fall before liquidation, rounded down."""
        assert distance_to_liquidation(health) == text
