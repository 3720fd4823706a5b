"""A JSON-RPC proxy between chainwatch and Anvil, for tests: counts requests by method and can cut WebSockets.

HTTP requests are forwarded as they are; a WebSocket is pumped both ways to a WebSocket of its own on Anvil.
`drop_websockets()` closes every live client connection, as a flaky provider would. The WebSocket faults (a cutter
that drops every connection every few seconds, malformed or oversized frames pushed to the client) and the HTTP
faults (a seeded mix of 429s, 503s and bodies that are not JSON-RPC; an endpoint that refuses connections or never
answers: `inject_http_faults()`, `go_dead()`) are kept apart, each in its own section below.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import aiohttp
from aiohttp import web


@dataclass(frozen=True)
class HttpFaults:
    """Shares of HTTP JSON-RPC requests answered with a fault instead of the node's answer, drawn from a seeded
    random sequence: the same seed gives the same sequence of answers."""

    too_many_requests: float = 0.0  # 429 with `Retry-After: retry_after`
    unavailable: float = 0.0  # 503, no Retry-After
    not_json_rpc: float = 0.0  # 200 with an HTML error page or JSON that is not a JSON-RPC response
    retry_after: str = "1"
    seed: int = 0

    def __post_init__(self) -> None:
        assert self.too_many_requests + self.unavailable + self.not_json_rpc <= 1.0


DeadMode = Literal["refuse", "hang"]


class RpcProxy:
    def __init__(self, upstream_http: str, upstream_ws: str) -> None:
        self.upstream_http = upstream_http
        self.upstream_ws = upstream_ws
        self.calls: Counter[str] = Counter()
        self.requests: list[tuple[str, list[object]]] = []  # (method, params) of every request, in order
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
        # WebSocket faults: each client's subscription ids by kind ("newHeads", "logs"), and the cutter's state.
        self._subscriptions: dict[web.WebSocketResponse, dict[str, str]] = {}
        self._cutter: asyncio.Task[None] | None = None
        self.websocket_cuts = 0
        # The next this many real newHeads notifications go out with a hash one byte short (and cannot be used),
        # and the next this many real logs notifications without their blockHash.
        self.corrupt_next_heads = 0
        self.corrupt_next_logs = 0
        self._session: aiohttp.ClientSession | None = None
        self.http_url = ""
        self.ws_url = ""
        # HTTP faults, kept apart from the rest: see inject_http_faults() and go_dead().
        self.http_requests = 0  # HTTP JSON-RPC requests that reached the proxy, faulted or not
        self.http_answers: Counter[str] = Counter()  # by what was answered: forwarded, 429, 503, not_json_rpc, hung
        self._faults: HttpFaults | None = None
        self._fault_rng = random.Random(0)
        self._dead: DeadMode | None = None
        self._hung_release = asyncio.Event()  # set to let every hung request go (with a 503)
        self._site: web.TCPSite | None = None
        self._runner: web.AppRunner | None = None
        self._port = 0

    # -- HTTP faults -------------------------------------------------------------------------------------------
    def inject_http_faults(self, faults: HttpFaults | None) -> None:
        """From now on, answer HTTP requests with `faults`' mix (None: forward everything again)."""
        self._faults = faults
        self._fault_rng = random.Random(faults.seed if faults else 0)

    async def go_dead(self, mode: DeadMode) -> None:
        """"refuse": stop listening, so connections are refused; "hang": accept requests and never answer."""
        self._dead = mode
        self._hung_release.clear()
        if mode == "refuse" and self._site is not None:
            await self._site.stop()
            self._site = None

    async def revive(self) -> None:
        """Answer again, on the same port; requests hung meanwhile get a 503."""
        self._dead = None
        self._hung_release.set()
        if self._site is None and self._runner is not None:
            self._site = web.TCPSite(self._runner, "127.0.0.1", self._port)
            await self._site.start()

    def _fault_for(self, request_id: object) -> web.Response | None:
        faults = self._faults
        if faults is None:
            return None
        draw = self._fault_rng.random()
        if draw < faults.too_many_requests:
            self.http_answers["429"] += 1
            return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": faults.retry_after})
        draw -= faults.too_many_requests
        if draw < faults.unavailable:
            self.http_answers["503"] += 1
            return web.Response(status=503, text="Service Unavailable")
        draw -= faults.unavailable
        if draw < faults.not_json_rpc:
            self.http_answers["not_json_rpc"] += 1
            if self._fault_rng.random() < 0.5:
                return web.Response(status=200, text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
            return web.json_response({"status": "ok", "id": request_id})
        return None

    def count(self, method: str) -> int:
        return self.calls[method]

    async def drop_websockets(self) -> int:
        """Closes every client WebSocket; returns how many were open."""
        sockets = list(self._sockets)
        for socket in sockets:
            await socket.close(code=1011, message=b"proxy dropped the connection")
        return len(sockets)

    # -- WebSocket faults ------------------------------------------------------------------------------------------
    def start_cutting_websockets(self, every: float, *, times: int) -> None:
        """Drops every client WebSocket every `every` seconds, at most `times` times (so a scenario ends by itself)."""

        async def cut() -> None:
            for _ in range(times):
                await asyncio.sleep(every)
                if await self.drop_websockets():
                    self.websocket_cuts += 1

        self.stop_cutting_websockets()
        self._cutter = asyncio.create_task(cut())

    def stop_cutting_websockets(self) -> None:
        if self._cutter is not None:
            self._cutter.cancel()
            self._cutter = None

    MALFORMED_KINDS = ("head_bad_hash", "log_missing_field", "wrong_type", "envelope", "not_json")

    def malformed_frame(self, kind: str, subscriptions: dict[str, str]) -> str | bytes:
        """A frame of a malformed `kind` addressed to a client's real subscriptions (so it is read, not ignored)."""
        heads, logs = subscriptions.get("newHeads", "0x0"), subscriptions.get("logs", "0x0")
        head = {"number": "0x1", "hash": "0x" + "ab" * 31, "parentHash": "0x" + "cd" * 32, "logsBloom": "0x" + "00" * 256}
        item = {"address": "0x" + "11" * 20, "topics": ["0x" + "22" * 32], "data": "0x", "blockNumber": "0x1",
                "logIndex": "0x0", "transactionHash": "0x" + "33" * 32}  # fmt: skip  # no blockHash
        notifications = {
            "head_bad_hash": (heads, head),
            "log_missing_field": (logs, item),
            "wrong_type": (logs, 12345),
        }
        if kind == "not_json":
            return b"\x00{this is not json"
        if kind == "envelope":
            return json.dumps({"jsonrpc": "2.0", "method": "eth_subscription", "params": {"result": 1}})
        subscription, result = notifications[kind]
        return json.dumps({"jsonrpc": "2.0", "method": "eth_subscription",
                           "params": {"subscription": subscription, "result": result}})  # fmt: skip

    async def send_malformed(self, kind: str) -> int:
        """Pushes one malformed frame of `kind` to every client WebSocket; returns how many got it."""
        sent = 0
        for socket, subscriptions in list(self._subscriptions.items()):
            frame = self.malformed_frame(kind, subscriptions)
            if socket.closed:
                continue
            with contextlib.suppress(ConnectionError, RuntimeError):
                await (socket.send_bytes(frame) if isinstance(frame, bytes) else socket.send_str(frame))
                sent += 1
        return sent

    async def send_oversized(self, size: int) -> int:
        """Pushes one valid-JSON text frame of `size` bytes to every client WebSocket; returns how many got it."""
        head, tail = '{"jsonrpc": "2.0", "padding": "', '"}'
        frame = head + "x" * max(0, size - len(head) - len(tail)) + tail
        sent = 0
        for socket in list(self._subscriptions):
            if socket.closed:
                continue
            with contextlib.suppress(ConnectionError, RuntimeError):
                await socket.send_str(frame)
                sent += 1
        return sent

    def _corrupted(self, text: str) -> str:
        if '"eth_subscription"' not in text:
            return text
        if self.corrupt_next_heads > 0 and '"parentHash"' in text:
            self.corrupt_next_heads -= 1
            payload = json.loads(text)
            payload["params"]["result"]["hash"] = payload["params"]["result"]["hash"][:-2]
            return json.dumps(payload)
        if self.corrupt_next_logs > 0 and '"logIndex"' in text:
            self.corrupt_next_logs -= 1
            payload = json.loads(text)
            del payload["params"]["result"]["blockHash"]
            return json.dumps(payload)
        return text

    def _note_subscribe_request(self, text: str, pending: dict[object, str]) -> None:
        if '"eth_subscribe"' not in text:
            return
        request = json.loads(text)
        pending[request.get("id")] = request["params"][0]

    def _note_subscribe_answer(self, text: str, pending: dict[object, str], client: web.WebSocketResponse) -> None:
        if not pending or '"method"' in text:
            return
        answer = json.loads(text)
        kind = pending.pop(answer.get("id"), None)
        if kind is not None and isinstance(answer.get("result"), str):
            self._subscriptions.setdefault(client, {})[kind] = answer["result"]

    # -- HTTP and notification rewriting -----------------------------------------------------------------------------
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
                self.requests.append((request["method"], request.get("params") or []))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            if self.refuse_websockets:
                return web.Response(status=503, text="websocket refused by the test proxy")
            return await self._pump(request)
        body = await request.read()
        self._count_body(body)
        self.http_requests += 1
        if self._dead == "hang":
            self.http_answers["hung"] += 1
            await self._hung_release.wait()
            return web.Response(status=503, text="was hung by the test proxy")
        if (fault := self._fault_for(_request_id(body))) is not None:
            return fault
        if self.fail_methods and any(f'"{method}"'.encode() in body for method in self.fail_methods):
            failure = {"jsonrpc": "2.0", "id": json.loads(body).get("id"), "error": {"code": -32000, "message": "injected failure"}}
            return web.json_response(failure)
        if self.refuse_block_hash_logs and b'"blockHash"' in body and b"eth_getLogs" in body:
            refusal = {"jsonrpc": "2.0", "id": json.loads(body).get("id"), "error": {"code": -32602, "message": "blockHash not supported"}}
            return web.json_response(refusal)
        assert self._session is not None
        self.http_answers["forwarded"] += 1
        async with self._session.post(self.upstream_http, data=body, headers={"Content-Type": "application/json"}) as upstream:
            return web.Response(body=await upstream.read(), status=upstream.status, content_type="application/json")

    async def _pump(self, request: web.Request) -> web.WebSocketResponse:
        client = web.WebSocketResponse(max_msg_size=2**24)
        await client.prepare(request)
        self.websocket_connections += 1
        self._sockets.add(client)
        self._subscriptions[client] = {}
        subscribing: dict[object, str] = {}  # request id -> subscription kind, until the node answers
        assert self._session is not None
        try:
            async with self._session.ws_connect(self.upstream_ws, max_msg_size=2**24) as upstream:

                async def downstream() -> None:
                    async for message in upstream:
                        if message.type != aiohttp.WSMsgType.TEXT or client.closed:
                            break
                        self._note_subscribe_answer(message.data, subscribing, client)
                        await client.send_str(self._downstream_text(self._corrupted(message.data)))
                    await client.close()

                pump_down = asyncio.create_task(downstream())
                async for message in client:
                    if message.type != aiohttp.WSMsgType.TEXT:
                        break
                    self._count_body(message.data)
                    self._note_subscribe_request(message.data, subscribing)
                    await upstream.send_str(message.data)
                pump_down.cancel()
        finally:
            self._sockets.discard(client)
            self._subscriptions.pop(client, None)
        return client


def _request_id(body: bytes) -> object:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    return payload.get("id") if isinstance(payload, dict) else None


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
        proxy._site, proxy._runner, proxy._port = site, runner, port
        proxy.http_url = f"http://127.0.0.1:{port}/"
        proxy.ws_url = f"ws://127.0.0.1:{port}/"
        try:
            yield proxy
        finally:
            proxy.stop_cutting_websockets()
            proxy._hung_release.set()  # no request stays hung past the test
            await proxy.drop_websockets()
            await runner.cleanup()
