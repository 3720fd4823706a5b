"""What chainwatch puts on the wire: Monad's public endpoints accept JSON-RPC batches of 100 or only 1, so a pass
of many chunks must go as single requests, never as a batch array."""

from __future__ import annotations

import json

from aiohttp import web
from eth_abi import decode, encode

from chainwatch.multicall import Call
from chainwatch.reader import Reader
from chainwatch.rpc import Rpc

TARGET = "0x" + "11" * 20


async def test_a_many_chunk_read_sends_no_batch_array() -> None:
    """Ten chunks of aggregate3 reach a real HTTP JSON-RPC server as ten single JSON objects."""
    bodies: list[object] = []

    async def answer(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        bodies.append(body)
        (calls,) = decode(["(address,bool,bytes)[]"], bytes.fromhex(body["params"][0]["data"][2:])[4:])
        result = encode(["(bool,bytes)[]"], [[(True, payload) for _, _, payload in calls]])
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": "0x" + result.hex()})

    app = web.Application()
    app.router.add_post("/", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rpc = Rpc([f"http://127.0.0.1:{port}/"])
    try:
        calls = [Call(target=TARGET, data=bytes([i])) for i in range(50)]
        results = await Reader(rpc, TARGET, max_calls=5).read(calls, 7)
    finally:
        await rpc.close()
        await runner.cleanup()
    assert [r.data for r in results] == [bytes([i]) for i in range(50)]
    assert len(bodies) == 10 and all(isinstance(b, dict) and b["method"] == "eth_call" for b in bodies)
