"""A TCP proxy in front of the test PostgreSQL that can misbehave the way networks do.

- `eof_delay`: when the server closes a connection, its last bytes reach the client at once
  but the close itself only after this delay (the window in which asyncpg has read a FATAL
  message of a terminated backend but not yet seen the socket closed).
- `lose_reply_to(pattern)`: the next client message containing `pattern` reaches the server,
  which executes it, but the reply is lost and the connection dies (e.g. a COMMIT that
  committed while the client only saw a broken connection).
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit


class PgProxy:
    def __init__(self, upstream_dsn: str, *, eof_delay: float = 0.0) -> None:
        url = urlsplit(upstream_dsn)
        self._url = url
        self._upstream = (url.hostname or "127.0.0.1", url.port or 5432)
        self.eof_delay = eof_delay
        self._lose_reply_to: bytes | None = None
        self.lost_replies = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> PgProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def dsn(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        netloc = self._url.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{port}"
        return urlunsplit(self._url._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2
                                             else host))  # fmt: skip

    def lose_reply_to(self, pattern: bytes) -> None:
        self._lose_reply_to = pattern

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self._upstream)
        lose = asyncio.Event()
        up = asyncio.create_task(self._client_to_server(client_r, server_w, lose))
        down = asyncio.create_task(self._server_to_client(server_r, client_w, lose))
        self._tasks |= {up, down}
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
                self._tasks.discard(task)
            for writer in (client_w, server_w):
                writer.close()

    async def _client_to_server(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lose: asyncio.Event
    ) -> None:
        while data := await reader.read(65536):
            if self._lose_reply_to is not None and self._lose_reply_to in data:
                self._lose_reply_to = None
                lose.set()
            writer.write(data)
            await writer.drain()

    async def _server_to_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lose: asyncio.Event
    ) -> None:
        while data := await reader.read(65536):
            if lose.is_set():
                self.lost_replies += 1
                transport = writer.transport
                transport.abort()  # the client sees the connection die, not the reply
                return
            writer.write(data)
            await writer.drain()
        await asyncio.sleep(self.eof_delay)
