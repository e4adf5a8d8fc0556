"""Players who join, chat and leave at random, holding every frame and close code to the wire contract.

Each `Player` is one task with its own seeded `random.Random`: it opens sockets (a
user of its own, or one of `SHARED_USERS`, who share a per-user limit), sends chat
frames, bursts, binary frames and now and then an oversized frame, idles, and closes
sockets, until a deadline; the sockets it holds then stay open, listed in the
`Roster`. Whatever happens to the storage meanwhile, a client may only see
(`WIRE_CONTRACT`):

- at connect: a welcome, or the error frame ``connection_limit_exceeded`` / ``room_full``
  with ``retry_after_ms`` = ``WS_RATE_CONN_RETRY_MS``, then close 4008;
- for each frame it sends: its own echo (text) or size (binary), or the error frame
  ``rate_limit_exceeded`` with a positive ``retry_after_ms`` of at most one token's
  wait; after a refusal, possibly close 4010; for an oversized frame the error frame
  ``payload_too_large`` (``retry_after_ms`` null), then close 4009;
- the chat of the other members of its room, at any time;
- close 1000 in answer to its own close.

Anything else (another frame or code, a connect that fails, a frame that gets no
outcome within `FRAME_WAIT_S`, a close nobody asked for) is recorded in `Roster.violations`.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Origin

from ratelimit_core.policies import CloseCode, ErrorCode
from ratelimit_core.policies.codes import ERROR_FRAME_TYPE
from support.app_servers import AppServer

__all__ = ["FRAME_WAIT_S", "ROOMS", "SHARED_USERS", "WIRE_CONTRACT", "Player", "Roster", "Seat"]

ROOMS: Final = tuple(f"r{number}" for number in range(5))
SHARED_USERS: Final = tuple(f"duo-{number}" for number in range(3))
WIRE_CONTRACT: Final = {
    "WS_RATE_CONN_PER_USER": 2,
    "WS_RATE_CONN_PER_IP": 1000,  # every client is 127.0.0.1: the IP set holds every socket, never refuses
    "WS_RATE_ROOM_MAX_MEMBERS": 8,
    "WS_RATE_MSG_RPS": 20,
    "WS_RATE_MSG_BURST": 10,
    "WS_RATE_MSG_STRIKES": 5,
    "WS_MAX_PAYLOAD_BYTES": 1024,
    "WS_RATE_CONN_RETRY_MS": 5000,
}
"""The limits the players are checked against (the test passes them to the servers)."""
FRAME_WAIT_S: Final = 10.0
"""Bound on a connect, on a frame's outcome and on a close: far above a frozen Redis's cost (the backend timeout)."""
_MAX_SEATS: Final = 3
_SHARED_SHARE: Final = 0.3
_STRIKES: Final = WIRE_CONTRACT["WS_RATE_MSG_STRIKES"]
_MAX_TOKEN_WAIT_MS: Final = math.ceil(1000 / WIRE_CONTRACT["WS_RATE_MSG_RPS"])


@dataclass(frozen=True, slots=True)
class Seat:
    """A socket a server welcomed, and where: the connection whose slots Redis must hold while it lives."""

    sid: str
    process: AppServer
    room: str
    user: str
    socket: ClientConnection = field(compare=False)


@dataclass
class Roster:
    """What every player shares: the open seats, every user ever used, what was seen, what broke the contract."""

    live: dict[str, Seat] = field(default_factory=dict)
    users: set[str] = field(default_factory=set)
    seen: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    def violated(self, where: str, what: str) -> None:
        self.violations.append(f"{where}: {what}")


class Player:
    """One task of joins, chat and leaves on `processes`, drawn from `rng`, until a deadline (see the module)."""

    def __init__(self, name: str, processes: tuple[AppServer, ...], roster: Roster, rng: random.Random) -> None:
        self.name = name
        self._processes = processes
        self._roster = roster
        self._rng = rng
        self._seats: list[Seat] = []
        self._joins = 0
        self._sent = 0
        self._refusals: Counter[str] = Counter()
        """Rate refusals each seat received (by sid): a close 4010 needs `_STRIKES` of them first."""

    async def play(self, until: float) -> None:
        """Play until the event loop's clock passes `until`; the seats held then stay open."""
        loop = asyncio.get_running_loop()
        rng = self._rng
        while loop.time() < until:
            draw = rng.random()
            if not self._seats or (len(self._seats) < _MAX_SEATS and draw < 0.35):
                await self._join()
            elif draw < 0.85:
                await self._act(rng.choice(self._seats))
            else:
                await self._leave(rng.choice(self._seats))
            await asyncio.sleep(rng.uniform(0.02, 0.2))

    async def settle(self) -> None:
        """After `play`: drop the seats the server closed since their last exchange (`Roster.live`: what is open)."""
        for seat in list(self._seats):
            await self._confirm_open(seat, "after its last exchange")

    # -- joining and leaving ----------------------------------------------------------

    async def _join(self) -> None:
        rng = self._rng
        process, room = rng.choice(self._processes), rng.choice(ROOMS)
        self._joins += 1
        user = rng.choice(SHARED_USERS) if rng.random() < _SHARED_SHARE else f"{self.name}-{self._joins}"
        self._roster.users.add(user)
        where = f"{user} joining {room} on {process}"
        try:
            socket = await connect(
                process.ws_url(room, user),
                origin=Origin(process.origin),
                open_timeout=FRAME_WAIT_S,
                close_timeout=FRAME_WAIT_S,
                max_size=None,
                max_queue=None,  # a socket that idles must still answer the server's pings
            )
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            self._roster.violated(where, f"connect failed: {type(exc).__name__}: {exc}")
            return
        frame = await self._next_frame(socket, where)
        if frame is None:
            await socket.close()
            return
        if frame.get("type") == "welcome":
            expected = {"type": "welcome", "room": room, "user": user, "counted_as": f"user:{user}", "pid": process.pid}
            if frame != expected:
                self._roster.violated(where, f"welcome {frame}, expected {expected}")
            seat = Seat(f"{self.name}.{self._joins}", process, room, user, socket)
            self._seats.append(seat)
            self._roster.live[seat.sid] = seat
            self._roster.seen["welcome"] += 1
            return
        if not _is_error(frame, (ErrorCode.CONNECTION_LIMIT_EXCEEDED, ErrorCode.ROOM_FULL), _connect_retry):
            self._roster.violated(where, f"first frame {frame}: neither a welcome nor a documented connect denial")
            await socket.close()
            return
        self._roster.seen[frame["code"]] += 1
        await self._expect_close(socket, CloseCode.CONNECTION_REFUSED, where)

    async def _leave(self, seat: Seat) -> None:
        await seat.socket.close()
        if seat.socket.close_code != 1000:
            # The server may have closed first: for strikes, after the last exchange's final refusal.
            self._closed_by_server(seat, "before the client's close")
            return
        self._drop(seat)

    def _drop(self, seat: Seat) -> None:
        self._seats.remove(seat)
        del self._roster.live[seat.sid]

    # -- frames -------------------------------------------------------------------------

    async def _act(self, seat: Seat) -> None:
        rng = self._rng
        draw = rng.random()
        if draw < 0.4:
            await self._exchange(seat, [self._text(seat) for _ in range(rng.randint(1, 3))])
        elif draw < 0.6:
            await self._exchange(seat, [self._text(seat) for _ in range(rng.randint(8, 16))])
        elif draw < 0.7:
            await self._exchange(seat, [rng.randbytes(rng.randint(1, 512))])
        elif draw < 0.75:
            await self._oversized(seat)
        else:
            await self._idle(seat, rng.uniform(0.1, 0.8))

    def _text(self, seat: Seat) -> str:
        self._sent += 1
        return f"{seat.sid} #{self._sent}"

    async def _exchange(self, seat: Seat, payloads: list[str | bytes]) -> None:
        """Send `payloads`, then read until each got its outcome: its echo or size, or a rate refusal."""
        awaited = _Awaited.of(payloads)
        outcomes, refusals_before = 0, self._refusals[seat.sid]
        try:
            for payload in payloads:
                await seat.socket.send(payload)
        except ConnectionClosed:
            pass  # closed for strikes meanwhile: what is left to read says why
        while outcomes < len(payloads):
            try:
                frame = await asyncio.wait_for(seat.socket.recv(), FRAME_WAIT_S)
            except ConnectionClosed:
                self._closed_by_server(seat, f"after {outcomes} of {len(payloads)} outcomes")
                return
            except TimeoutError:
                self._roster.violated(seat.sid, f"{len(payloads) - outcomes} frames got no outcome in {FRAME_WAIT_S} s")
                return
            message = _frame(frame)
            if self._is_outcome(seat, message, awaited):
                outcomes += 1
            elif not self._others_chat(message):
                self._roster.violated(seat.sid, f"frame {message} while {payloads!r:.80} awaited outcomes")
        if self._refusals[seat.sid] > refusals_before:
            # The last refusal may have been the one that closes (4010): its close comes after the frame.
            await self._confirm_open(seat, "after the refusals of its last exchange")

    def _is_outcome(self, seat: Seat, message: dict[str, Any], awaited: _Awaited) -> bool:
        """True for the outcome of a frame `seat` sent (counted as seen); a refusal also counts towards a close."""
        if awaited.echo(message, seat.user):
            self._roster.seen["echo"] += 1
        elif awaited.size(message):
            self._roster.seen["binary"] += 1
        elif _is_error(message, (ErrorCode.RATE_LIMIT_EXCEEDED,), _one_token_wait):
            self._refusals[seat.sid] += 1
            self._roster.seen[ErrorCode.RATE_LIMIT_EXCEEDED] += 1
        else:
            return False
        return True

    async def _oversized(self, seat: Seat) -> None:
        """A text frame over the cap, counted in UTF-8 bytes: the error frame, then close 4009."""
        await seat.socket.send("é" * WIRE_CONTRACT["WS_MAX_PAYLOAD_BYTES"])
        while True:
            try:
                frame = await asyncio.wait_for(seat.socket.recv(), FRAME_WAIT_S)
            except (ConnectionClosed, TimeoutError) as exc:
                self._drop(seat)
                self._roster.violated(seat.sid, f"no payload_too_large frame after an oversized frame: {exc!r}")
                return
            message = _frame(frame)
            if _is_error(message, (ErrorCode.PAYLOAD_TOO_LARGE,), _no_retry):
                self._roster.seen[ErrorCode.PAYLOAD_TOO_LARGE] += 1
                self._drop(seat)
                await self._expect_close(seat.socket, CloseCode.PAYLOAD_TOO_LARGE, seat.sid)
                return
            if not self._others_chat(message):
                self._roster.violated(seat.sid, f"frame {message} while payload_too_large was awaited")

    async def _idle(self, seat: Seat, for_s: float) -> None:
        """Read for `for_s` seconds: only the room's chat may come."""
        loop = asyncio.get_running_loop()
        until = loop.time() + for_s
        while (left := until - loop.time()) > 0:
            try:
                frame = await asyncio.wait_for(seat.socket.recv(), left)
            except TimeoutError:
                return
            except ConnectionClosed:
                self._closed_by_server(seat, "while idle")
                return
            message = _frame(frame)
            if not self._others_chat(message):
                self._roster.violated(seat.sid, f"frame {message} while idle")

    async def _confirm_open(self, seat: Seat, when: str) -> None:
        """Check that `seat` is still open, without a sleep: the pong comes after any close the server already sent."""
        try:
            pong = await seat.socket.ping()
            await asyncio.wait_for(pong, FRAME_WAIT_S)
        except ConnectionClosed:
            self._closed_by_server(seat, when)
        except TimeoutError:
            self._roster.violated(seat.sid, f"no pong within {FRAME_WAIT_S} s {when}")

    def _closed_by_server(self, seat: Seat, when: str) -> None:
        """A close this client did not ask for: only 4010, once the socket got at least `_STRIKES` rate refusals.

        (The server closes after that many refusals in a row, each sent as a frame; the
        client cannot tell "in a row" itself, since an echo of an earlier frame may reach
        it after a later refusal, nor when the close comes, since it may read the last
        refusal in one exchange and the close in the next.)
        """
        self._drop(seat)
        code, refusals = seat.socket.close_code, self._refusals[seat.sid]
        if code == CloseCode.RATE_LIMITED and refusals >= _STRIKES:
            self._roster.seen["close 4010"] += 1
        else:
            self._roster.violated(seat.sid, f"closed by the server with {code} {when}, after {refusals} rate refusals")

    def _others_chat(self, message: dict[str, Any]) -> bool:
        """True for the chat of another member of the room (a frame any member may get at any time)."""
        shape = message.keys() == {"type", "user", "text"} and message.get("type") == "chat"
        if shape:
            self._roster.seen["others' chat"] += 1
        return shape

    async def _next_frame(self, socket: ClientConnection, where: str) -> dict[str, Any] | None:
        try:
            return _frame(await asyncio.wait_for(socket.recv(), FRAME_WAIT_S))
        except ConnectionClosed as exc:
            self._roster.violated(where, f"closed ({exc.rcvd}) before any frame")
        except TimeoutError:
            self._roster.violated(where, f"no first frame within {FRAME_WAIT_S} s")
        return None

    async def _expect_close(self, socket: ClientConnection, code: int, where: str) -> None:
        try:
            await asyncio.wait_for(socket.wait_closed(), FRAME_WAIT_S)
        except TimeoutError:
            self._roster.violated(where, f"not closed within {FRAME_WAIT_S} s after a denial that closes")
            await socket.close()
            return
        if socket.close_code != code:
            self._roster.violated(where, f"closed with {socket.close_code}, expected {code}")
        else:
            self._roster.seen[f"close {code}"] += 1


@dataclass
class _Awaited:
    """What an exchange still waits for: the echo of each text frame, the size of each binary one."""

    texts: set[str]
    sizes: Counter[int]

    @classmethod
    def of(cls, payloads: list[str | bytes]) -> _Awaited:
        texts = {payload for payload in payloads if isinstance(payload, str)}
        sizes = Counter(len(payload) for payload in payloads if isinstance(payload, bytes))
        return cls(texts, sizes)

    def echo(self, message: dict[str, Any], user: str) -> bool:
        """True (and no longer awaited) for the echo of an awaited text sent by `user`."""
        if message.get("type") == "chat" and message.get("user") == user and message.get("text") in self.texts:
            self.texts.discard(message["text"])
            return True
        return False

    def size(self, message: dict[str, Any]) -> bool:
        """True (and no longer awaited) for the size of an awaited binary frame."""
        if message.get("type") == "binary" and self.sizes[message.get("bytes")] > 0:
            self.sizes[message["bytes"]] -= 1
            return True
        return False


def _frame(data: str | bytes) -> dict[str, Any]:
    """A frame from the server as a dict (one that is not a JSON object becomes ``{"unparsed": ...}``)."""
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"unparsed": data}


def _is_error(frame: dict[str, Any], codes: tuple[str, ...], retry_ok: Callable[[object], bool]) -> bool:
    """True for the middleware's error frame with one of `codes` and a ``retry_after_ms`` that `retry_ok` accepts."""
    if frame.keys() != {"type", "code", "message", "retry_after_ms"} or frame["type"] != ERROR_FRAME_TYPE:
        return False
    return frame["code"] in codes and isinstance(frame["message"], str) and retry_ok(frame["retry_after_ms"])


def _connect_retry(retry: object) -> bool:
    """A connect denial's hint is ``WS_RATE_CONN_RETRY_MS``."""
    return retry == WIRE_CONTRACT["WS_RATE_CONN_RETRY_MS"]


def _one_token_wait(retry: object) -> bool:
    """A rate refusal's hint is the real wait for one token: positive, at most one token's interval."""
    return isinstance(retry, int) and 0 < retry <= _MAX_TOKEN_WAIT_MS


def _no_retry(retry: object) -> bool:
    """Waiting does not make an oversized frame smaller: no hint."""
    return retry is None
