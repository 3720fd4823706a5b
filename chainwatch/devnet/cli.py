"""`chainwatch devnet deploy`: deploy the devnet onto a running Anvil and write its addresses to a file."""

from __future__ import annotations

import time
from pathlib import Path

from chainwatch.devnet.deploy import deploy_devnet, devnet_to_json


async def deploy_command(rpc_url: str, out: Path) -> None:
    """Deploy onto the Anvil at `rpc_url`, write the devnet JSON to `out`, print a one-line summary."""
    started = time.monotonic()
    devnet = await deploy_devnet(rpc_url)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(devnet_to_json(devnet))
    aave = devnet.aave_v3
    print(
        f"devnet deployed on chain {devnet.chain_id} in {time.monotonic() - started:.1f} s: "
        f"Aave v3 pool {aave.pool}, reserves {', '.join(aave.reserves)}; wrote {out}"
    )
