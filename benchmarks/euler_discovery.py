"""Start-up discovery of Euler v2 sub-accounts for many owners, before and after: the old sweep (getControllers of
all 256 sub-accounts of every owner) against the EVC's ControllerStatus logs then getControllers of the logged
sub-accounts alone (`EulerV2.discover`), on a fresh devnet Anvil. Prints figures; asserts nothing about speed.

    .venv/bin/python -m benchmarks.euler_discovery --owners 500
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time

from eth_utils import to_checksum_address

from chainwatch.abi import calldata
from chainwatch.config import EulerV2Config
from chainwatch.devnet.anvil import running_anvil
from chainwatch.devnet.deploy import deploy_devnet
from chainwatch.devnet.euler import EulerActions
from chainwatch.multicall import Call
from chainwatch.protocols.euler_v2 import EulerV2
from chainwatch.reader import Reader
from chainwatch.rpc import Rpc


async def run(owners: int) -> None:
    async with running_anvil() as node:
        devnet = await deploy_devnet(node.http_url)
        assert devnet.euler_v2 is not None
        euler = devnet.euler_v2
        actions = EulerActions(node.http_url, devnet, euler)
        borrowers = (await actions_accounts(node.http_url))[1:4]
        for owner, sub_id in zip(borrowers, (0, 7, 255)):
            await actions.open_position(owner, collateral={"WETH": 1}, borrow=1000, sub_id=sub_id)
        await actions.aclose()
        # Owners whose prefixes differ in their first bytes, the borrowers among them.
        watched = [*borrowers, *(to_checksum_address(os.urandom(20).hex().rjust(40, "0")) for _ in range(owners - 3))]
        rpc = Rpc([node.http_url])
        try:
            reader = Reader(rpc, devnet.multicall3)
            head = await rpc.block_number()
            config = EulerV2Config(name="euler", evc=euler.evc, vaults=(euler.borrow_vault,))

            protocol = EulerV2(config, log_range=100)
            await protocol.resolve(reader, head)
            started = time.perf_counter()
            subs = [f"0x{(int(owner, 16) & ~0xFF) | i:040x}" for owner in watched for i in range(256)]
            await reader.read([Call(target=euler.evc, data=calldata("getControllers(address)", s), gas=30_000)
                               for s in subs], head)  # fmt: skip
            sweep = time.perf_counter() - started

            protocol = EulerV2(config, log_range=100)
            await protocol.resolve(reader, head)
            started = time.perf_counter()
            found = await protocol.discover(rpc, reader, watched, head)
            logs = time.perf_counter() - started
        finally:
            await rpc.close()
    print(f"Euler discovery, {owners} owners, chain of {head} blocks (log range 100), 3 borrowing sub-accounts")
    print(f"  before (getControllers x 256 per owner, {len(subs)} calls): {sweep:8.2f} s")
    print(f"  after  (ControllerStatus logs, then {len(found)} getControllers): {logs:8.2f} s")
    print(f"  peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


async def actions_accounts(http_url: str) -> list[str]:
    from web3 import AsyncHTTPProvider, AsyncWeb3

    web3 = AsyncWeb3(AsyncHTTPProvider(http_url))
    try:
        return [to_checksum_address(a) for a in await web3.eth.accounts]
    finally:
        await web3.provider.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--owners", type=int, default=500)
    asyncio.run(run(max(3, parser.parse_args().owners)))


if __name__ == "__main__":
    main()
