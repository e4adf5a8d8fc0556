"""`LossyProxy`: a TCP proxy on 127.0.0.1 that can lose the reply to a script call.

It forwards each client connection to its server unchanged until told to lose
replies; then, for the next write that carries an EVALSHA, it forwards the write,
waits until the server has answered (so the server ran it), and closes the
client's connection instead of forwarding the answer: the client sees its
connection break after the server ran the script. Deterministic (no timers), and
every connection it made is closed by `close`. With `reply_delay_s` it also holds
each chunk of replies that long before forwarding it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

__all__ = ["LossyProxy"]

_EVALSHA = b"$7\r\nEVALSHA\r\n"
_CHUNK = 65536


@dataclass
class _Link:
    """One client connection and its connection to the server."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    losing: bool = False


@dataclass
class LossyProxy:
    """Listens on one loopback port per server it fronts (`front`); loses `lose` replies on request."""

    reply_delay_s: float = 0.0
    """Each chunk of replies is forwarded this long after the server sent it (a slow network that keeps
    answering: a long round trip's replies come at this pace)."""
    scripts_sent: int = 0
    """EVALSHAs forwarded to a server, over every connection."""
    replies_lost: int = 0
    connections: dict[int, int] = field(default_factory=dict)
    """Client connections accepted so far, by the port of the server they were forwarded to."""
    _to_lose: int = 0
    _listeners: list[asyncio.Server] = field(default_factory=list)
    _links: list[_Link] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def front(self, server_port: int) -> int:
        """Start forwarding a new loopback port to 127.0.0.1:`server_port`; returns the new port."""

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(server_port, reader, writer)

        listener = await asyncio.start_server(serve, "127.0.0.1", 0)
        self._listeners.append(listener)
        port: int = listener.sockets[0].getsockname()[1]
        return port

    @property
    def open_connections(self) -> int:
        """Client connections neither side has closed yet."""
        return sum(not link.client.transport.is_closing() for link in self._links)

    def lose(self, replies: int = 1) -> None:
        """Lose the replies to the next `replies` writes that carry a script call."""
        self._to_lose += replies

    async def _serve(self, server_port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections[server_port] = self.connections.get(server_port, 0) + 1
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", server_port)
        link = _Link(writer, server_writer)
        self._links.append(link)
        replies = asyncio.get_running_loop().create_task(self._replies(link, server_reader))
        self._tasks.add(replies)
        replies.add_done_callback(self._tasks.discard)
        try:
            while data := await reader.read(_CHUNK):
                scripts = data.count(_EVALSHA)
                self.scripts_sent += scripts
                if scripts and self._to_lose and not link.losing:
                    self._to_lose -= 1
                    link.losing = True  # before the write: the reply must not get through
                server_writer.write(data)
                await server_writer.drain()
        except ConnectionError:
            pass
        finally:
            self._cut(link)

    async def _replies(self, link: _Link, server_reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await server_reader.read(_CHUNK):
                if link.losing:
                    self.replies_lost += 1
                    break  # the server answered: it ran the script; the client never hears of it
                if self.reply_delay_s:
                    await asyncio.sleep(self.reply_delay_s)
                link.client.write(data)
                await link.client.drain()
        self._cut(link)

    def _cut(self, link: _Link) -> None:
        link.client.transport.abort()
        link.server.transport.abort()

    async def close(self) -> None:
        for listener in self._listeners:
            listener.close()
        for link in self._links:
            self._cut(link)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for listener in self._listeners:
            await listener.wait_closed()
