"""A JSON-RPC proxy between chainwatch and Anvil, for tests: counts requests by method and can cut WebSockets.

HTTP requests are forwarded as they are; a WebSocket is pumped both ways to a WebSocket of its own on Anvil.
`drop_websockets()` closes every live client connection, as a flaky provider would.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web


class RpcProxy:
    def __init__(self, upstream_http: str, upstream_ws: str) -> None:
        self.upstream_http = upstream_http
        self.upstream_ws = upstream_ws
        self.calls: Counter[str] = Counter()
        self.websocket_connections = 0
        # While set, WebSocket upgrades are refused (503), as by a provider in an outage; HTTP still passes.
        self.refuse_websockets = False
        # While set, eth_getLogs by blockHash (EIP-234) is answered with an error, as some providers do.
        self.refuse_block_hash_logs = False
        # While set, newHeads notifications carry an all-zero logsBloom, as from a node that does not fill it.
        self.empty_blooms = False
        # HTTP requests of these methods are answered with a JSON-RPC error, as by a provider in trouble.
        self.fail_methods: set[str] = set()
        self._sockets: set[web.WebSocketResponse] = set()
        self._session: aiohttp.ClientSession | None = None
        self.http_url = ""
        self.ws_url = ""

    def count(self, method: str) -> int:
        return self.calls[method]

    async def drop_websockets(self) -> int:
        """Closes every client WebSocket; returns how many were open."""
        sockets = list(self._sockets)
        for socket in sockets:
            await socket.close(code=1011, message=b"proxy dropped the connection")
        return len(sockets)

    def _downstream_text(self, text: str) -> str:
        if not self.empty_blooms or '"logsBloom"' not in text:
            return text
        payload = json.loads(text)
        payload["params"]["result"]["logsBloom"] = "0x" + "00" * 256
        return json.dumps(payload)

    def _count_body(self, body: bytes | str) -> None:
        try:
            payload = json.loads(body)
        except ValueError:
            return
        for request in payload if isinstance(payload, list) else [payload]:
            if isinstance(request, dict) and isinstance(request.get("method"), str):
                self.calls[request["method"]] += 1

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            if self.refuse_websockets:
                return web.Response(status=503, text="websocket refused by the test proxy")
            return await self._pump(request)
        body = await request.read()
        self._count_body(body)
        if self.fail_methods and any(f'"{method}"'.encode() in body for method in self.fail_methods):
            failure = {"jsonrpc": "2.0", "id": json.loads(body).get("id"), "error": {"code": -32000, "message": "injected failure"}}
            return web.json_response(failure)
        if self.refuse_block_hash_logs and b'"blockHash"' in body and b"eth_getLogs" in body:
            refusal = {"jsonrpc": "2.0", "id": json.loads(body).get("id"), "error": {"code": -32602, "message": "blockHash not supported"}}
            return web.json_response(refusal)
        assert self._session is not None
        async with self._session.post(self.upstream_http, data=body, headers={"Content-Type": "application/json"}) as upstream:
            return web.Response(body=await upstream.read(), status=upstream.status, content_type="application/json")

    async def _pump(self, request: web.Request) -> web.WebSocketResponse:
        client = web.WebSocketResponse(max_msg_size=2**24)
        await client.prepare(request)
        self.websocket_connections += 1
        self._sockets.add(client)
        assert self._session is not None
        try:
            async with self._session.ws_connect(self.upstream_ws, max_msg_size=2**24) as upstream:

                async def downstream() -> None:
                    async for message in upstream:
                        if message.type != aiohttp.WSMsgType.TEXT or client.closed:
                            break
                        await client.send_str(self._downstream_text(message.data))
                    await client.close()

                pump_down = asyncio.create_task(downstream())
                async for message in client:
                    if message.type != aiohttp.WSMsgType.TEXT:
                        break
                    self._count_body(message.data)
                    await upstream.send_str(message.data)
                pump_down.cancel()
        finally:
            self._sockets.discard(client)
        return client


@asynccontextmanager
async def running_proxy(upstream_http: str, upstream_ws: str) -> AsyncIterator[RpcProxy]:
    proxy = RpcProxy(upstream_http, upstream_ws)
    app = web.Application()
    app.router.add_route("*", "/", proxy._handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    async with aiohttp.ClientSession() as session:
        proxy._session = session
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        proxy.http_url = f"http://127.0.0.1:{port}/"
        proxy.ws_url = f"ws://127.0.0.1:{port}/"
        try:
            yield proxy
        finally:
            await proxy.drop_websockets()
            await runner.cleanup()
