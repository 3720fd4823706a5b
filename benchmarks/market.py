"""The benchmark's market: N Aave borrowers on a fresh devnet, an exact fraction of them exposed to WETH.

Exposed borrowers supply 1 WETH and borrow 1,000 USDC (health 1.70 at WETH $2,000); the others supply
0.05 WBTC and borrow 1,000 USDC (health 2.25, no WETH at all). Moving WETH to $1,600 takes every exposed
borrower to 1.36, below warn (1.5) and above critical (1.2), and leaves every other one where it was: the
move alerts exactly the exposed fraction, one WARN each.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from chainwatch.devnet.actions import DevnetActions, Position
from chainwatch.devnet.anvil import AnvilNode
from chainwatch.devnet.deploy import Devnet, deploy_devnet

AAVE: Final = "neverland-devnet"  # the Aave v3 `[[protocols]]` name in the benchmark's configs
WARN: Final = 1.5
CRITICAL: Final = 1.2
WETH_BEFORE: Final = 2000
WETH_AFTER: Final = 1600
HEALTH_EXPOSED: Final = 1.70  # before the move; 1.36 after
HEALTH_OTHERS: Final = 2.25
_EXPOSED = {"supply": {"WETH": Decimal(1)}, "borrow": {"USDC": Decimal(1000)}}  # 2000*0.85/1000 = 1.70 -> 1.36
_STEADY = {"supply": {"WBTC": Decimal("0.05")}, "borrow": {"USDC": Decimal(1000)}}  # 3000*0.75/1000 = 2.25
_OPEN_BATCH: Final = 2_000  # positions per open_positions call: bounds the plan held in memory at once


@dataclass(frozen=True)
class Market:
    devnet: Devnet
    accounts: list[str]
    exposed: frozenset[int]  # indices into `accounts` of the WETH borrowers
    setup_seconds: float
    # The protocol (its `[[protocols]]` name) of each account's one position; empty: all on Aave (`AAVE`).
    protocols: tuple[str, ...] = ()

    @property
    def mixed(self) -> bool:
        return bool(self.protocols)

    def protocol_of(self, index: int) -> str:
        return self.protocols[index] if self.protocols else AAVE

    def names(self) -> list[str]:
        """The protocols the accounts are on, in first-seen order."""
        return list(dict.fromkeys(self.protocols)) if self.protocols else [AAVE]

    def exposed_by_protocol(self) -> dict[str, int]:
        counts = dict.fromkeys(self.names(), 0)
        for index in self.exposed:
            counts[self.protocol_of(index)] += 1
        return counts

    def chat_of(self, index: int) -> int:
        """Each watched account alerts its own chat, as each user of the bot has one."""
        return 1_000_000 + index

    def index_of_chat(self, chat_id: int) -> int:
        return chat_id - 1_000_000


def exposed_indices(count: int, fraction: float) -> frozenset[int]:
    """round(count * fraction) indices spread evenly over the accounts, the first one included."""
    exposed = round(count * fraction)
    return frozenset(i * count // exposed for i in range(exposed)) if exposed else frozenset()


async def build_market(node: AnvilNode, count: int, fraction: float) -> Market:
    """Deploys the devnet on `node`, funds `count` borrowers and opens their positions."""
    started = time.monotonic()
    devnet = await deploy_devnet(node.http_url)
    exposed = exposed_indices(count, fraction)
    async with DevnetActions(node.http_url, devnet) as actions:
        accounts = [str(a) for a in await actions.fund_accounts(count, label="benchmark")]
        positions = [Position(account=a, **(_EXPOSED if i in exposed else _STEADY)) for i, a in enumerate(accounts)]
        for start in range(0, count, _OPEN_BATCH):
            await actions.open_positions(positions[start : start + _OPEN_BATCH])
    return Market(devnet=devnet, accounts=accounts, exposed=exposed, setup_seconds=time.monotonic() - started)
