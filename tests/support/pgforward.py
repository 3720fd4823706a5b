"""A TCP forwarder to PostgreSQL's Unix socket that a test can cut: a partition of one process from the database
(its connections closed, new ones refused) while the process itself keeps running; or black-hole: every byte
either way silently dropped, no connection closed, as when a route or a firewall loses the packets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


class PgForwarder:
    def __init__(self, socket_path: Path) -> None:
        self._socket = socket_path
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.cut_off = False
        self.black_holed = False
        self.port = 0

    def url(self, database_url: str) -> str:
        """`database_url` (a Unix socket URL of the embedded server) reached through this forwarder instead."""
        parts = urlsplit(database_url)
        return f"postgresql://{parts.username}:@127.0.0.1:{self.port}{parts.path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        """Closes every forwarded connection; new ones are closed at once until `restore`."""
        self.cut_off = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def black_hole(self) -> None:
        """From now on every byte is dropped in both directions; both ends stay open and hear nothing."""
        self.black_holed = True

    def restore(self) -> None:
        self.cut_off = False
        self.black_holed = False

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            client_writer.transport.abort()
            return
        try:
            server_reader, server_writer = await asyncio.open_unix_connection(str(self._socket))
        except OSError:
            client_writer.transport.abort()
            return
        self._writers |= {client_writer, server_writer}
        await asyncio.gather(self._pump(client_reader, server_writer), self._pump(server_reader, client_writer))
        for writer in (client_writer, server_writer):
            self._writers.discard(writer)
            writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if self.black_holed:
                    continue
                writer.write(data)
                await writer.drain()
        writer.transport.abort()  # one side gone: the other goes too, as on a cut cable


@asynccontextmanager
async def forwarding(database_url: str) -> AsyncIterator[PgForwarder]:
    """A forwarder to the Unix socket named by `database_url`'s host (the embedded server's directory)."""
    (host,) = parse_qs(urlsplit(database_url).query)["host"]
    port = urlsplit(database_url).port or 5432
    forwarder = PgForwarder(Path(host) / f".s.PGSQL.{port}")
    await forwarder.start()
    try:
        yield forwarder
    finally:
        await forwarder.close()
