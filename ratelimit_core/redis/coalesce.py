"""`Coalescer`: concurrent script calls on one event loop share pipelined round trips.

A call made while no round trip is in flight is sent on the next turn of the event
loop, together with every call made during the current turn: the checks a caller
issues at once (an admission's identity, IP and room slots, a heartbeat's leases)
go as one round trip, and a lone caller pays one turn of the loop, not a round
trip. Calls made while one is in flight wait for the next one to end, and then all
go together, as one pipeline of EVALSHAs. So a call waits for at most one in-flight
round trip, and under load each round trip carries what queued during the one
before: the per-command cost of redis-py (and of the network) is shared, which is
where the throughput comes from. There is no timer: the round trip that ends starts
the next one.

Two details keep many concurrent callers fast. The queue is sent on the next turn
of the event loop after a round trip ends, so that the callers it just answered,
if they check again at once, go in it too (otherwise the callers split into a group
of one and a group of all the others, and take turns). And a queue of at least
`2 * _MIN_SPLIT` calls found, when a round trip ends, with nothing else in flight goes
as two round trips on two connections, so that the server runs one while this process
reads the other's replies: then the two halves take turns, and neither side waits for
the other (a queue that started from idle, such as a heartbeat, is not split). A
batch of `_OWN_TRIP_CALLS` calls or more issued at once (a heartbeat) does not queue: it goes at once
on a round trip of its own (up to `_MAX_OWN_TRIP_CALLS`), so the calls queued meanwhile do not wait for
it. A queue longer than a round trip carries (`_MAX_BUNDLED_CALLS_PER_TRIP`, `_MAX_CALLS_PER_TRIP` on a
cluster) goes as several round trips, all at once.

Each call gets back exactly its own reply or its own error: a script error (say
WRONGTYPE) fails only that call; a lost connection or a timeout fails every call of
that round trip with `BackendUnavailable`. NOSCRIPT (the server's script cache was
flushed, or the server restarted) loads the scripts and sends again only the calls
that got it. A caller cancelled while it waits leaves the queue; if its call was
already sent, the reply is dropped.

A lost reply never makes a script run twice. When the connection breaks after the
scripts were sent, the server may have run them; only the calls in `RESENDABLE`
(running them twice changes nothing: reads, adding or removing a member, a reset)
are sent once more, on a new connection. The others fail with `BackendUnavailable`:
counter_incr(1) adds at most 1, bucket_consume takes at most its cost. The
transports below never send a command again themselves (see `pipeline`, and
`connect` for the cluster client's retry).

A round trip of several calls sends them bundled, up to `MAX_BUNDLE` calls to one
EVALSHA of the bundle script (see `bundle`); each call still gets its own reply or
error. A round trip on a plain client is one write on one pooled connection; on a
`RedisCluster` client it is redis-py's cluster pipeline, which splits it by node and
sends the parts concurrently (only calls on one hash slot are bundled, so any slot
works; MOVED and ASK replies are followed). `pipeline` chooses, and is the only
module that touches redis-py's private API.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Final, Generic, TypeVar

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from ..primitives import RESENDABLE
from .bundle import MAX_BUNDLE, Bundler, replies_of_calls
from .connect import Client, server_name
from .errors import REDIS_FAILURES, is_lost_connection, translated
from .lua import BUNDLE, bundle_source
from .pipeline import Progress, round_trip_for
from .tls_probe import refusal_behind

__all__ = ["RESENDABLE", "Coalescer", "ScriptCall"]

T = TypeVar("T")


class _NotRun:
    def __repr__(self) -> str:
        return "<not run>"


_NOT_RUN: Final = _NotRun()

_MAX_CALLS_PER_TRIP = 512
"""On a cluster (one command per call), a longer queue goes as several round trips at once, on
several connections: the callers of each are answered as soon as its own replies are back."""
_MAX_BUNDLED_CALLS_PER_TRIP = 16 * MAX_BUNDLE
"""The same bound on a plain client, where calls go in bundles: 4,096 calls, 16 commands."""
_MAX_OWN_TRIP_CALLS = 64 * MAX_BUNDLE
"""A batch issued at once (a heartbeat) goes on one round trip up to 16,384 calls, 64 commands (5,461
sockets of 3 slots), about 130 ms of Redis time; the round trip's deadline moves on with each reply (see
`pipeline`), and Redis serves its other connections between the bundles. A larger batch goes as
several round trips, all at once."""
_OWN_TRIP_CALLS = 256
"""Calls issued together (one `run_all`) from which they go on a round trip of their own, at once: a
heartbeat of thousands of slots would otherwise hold back every call queued behind it (the frames'
checks) for as long as Redis takes to run it. Redis reads a connection 16 KB at a time and serves the
other connections in between, so the calls on other connections go on meanwhile."""
_MIN_SPLIT = 8
"""Calls per round trip below which a queue is not split in two (a round trip has a fixed cost)."""


class ScriptCall(Generic[T]):
    """One EVALSHA of a driver script on one key, and, once it ran, its outcome.

    `result()` gives the decoded reply, or raises the call's own error
    (`BackendUnavailable`, `BackendError`).
    """

    __slots__ = ("args", "decode", "error", "key", "name", "reply")

    def __init__(self, name: str, key: bytes, args: tuple[bytes | str | int, ...], decode: Callable[[Any], T]) -> None:
        self.name = name
        self.key = key
        self.args = args
        self.decode = decode
        self.reply: Any = _NOT_RUN
        self.error: BaseException | None = None

    def __repr__(self) -> str:
        outcome = self.error if self.error is not None else self.reply
        return f"ScriptCall({self.name}, {self.key!r:.80}, {outcome!r:.80})"

    @property
    def done(self) -> bool:
        """True once the call ran (successfully or not)."""
        return self.error is not None or self.reply is not _NOT_RUN

    def result(self) -> T:
        """The decoded reply; raises the call's error, or `asyncio.InvalidStateError` before it ran."""
        if self.error is not None:
            raise self.error
        if self.reply is _NOT_RUN:
            raise asyncio.InvalidStateError(f"{self.name} on {self.key!r:.80} has not run yet")
        return self.decode(self.reply)


_Waiting = tuple[Sequence[ScriptCall[Any]], "asyncio.Future[None]"]


class Coalescer:
    """Runs `ScriptCall`s on one client, sharing round trips between concurrent callers.

    `sources` maps each script name to its Lua source. Bound to the event loop of its
    first call, like the client.
    """

    __slots__ = (
        "_bundler",
        "_client",
        "_in_flight",
        "_max_calls",
        "_max_own_calls",
        "_queue",
        "_send",
        "_server",
        "_shas",
        "_sources",
        "_trips",
        "calls_sent",
        "commands_sent",
        "progress",
        "round_trips",
    )

    def __init__(self, client: Client, sources: Mapping[str, str]) -> None:
        self._client = client
        self.progress = Progress()
        """Replies read so far (see `pipeline.Progress`)."""
        self._send = round_trip_for(client, self.progress)
        self._server = server_name(client)
        self._sources = {**sources, BUNDLE: bundle_source()}
        self._shas = {name: hashlib.sha1(source.encode()).hexdigest() for name, source in self._sources.items()}
        cluster = isinstance(client, RedisCluster)
        self._bundler = Bundler(self._shas, by_slot=cluster)
        self._max_calls = _MAX_CALLS_PER_TRIP if cluster else _MAX_BUNDLED_CALLS_PER_TRIP
        self._max_own_calls = _MAX_CALLS_PER_TRIP if cluster else _MAX_OWN_TRIP_CALLS
        self._in_flight = 0
        self._queue: list[_Waiting] = []
        self._trips: set[asyncio.Task[None]] = set()
        self.round_trips = 0
        """Round trips made (a NOSCRIPT resend counts as one more); for diagnostics."""
        self.calls_sent = 0
        """Script calls sent; ``calls_sent / round_trips`` is the mean batch size."""
        self.commands_sent = 0
        """EVALSHAs sent (a bundle of calls is one); ``calls_sent / commands_sent`` is the mean bundle size."""

    def __repr__(self) -> str:
        return f"Coalescer(in_flight={self._in_flight}, queued={len(self._queue)}, round_trips={self.round_trips})"

    async def load_scripts(self) -> None:
        """Load every script now (a warm-up): otherwise the first call of each pays one NOSCRIPT round trip.

        Raises `BackendError` (or `BackendUnavailable`) when the server cannot load them.
        """
        error = await self._load(set(self._sources))
        if error is not None:
            raise translated(error, "SCRIPT LOAD", self._server) if isinstance(error, REDIS_FAILURES) else error

    async def run(self, call: ScriptCall[T]) -> T:
        """Run one call and return its decoded reply (raises its error)."""
        # Not through `run_all`: one coroutine fewer alive per call while Redis answers.
        await self._enqueue((call,))
        return call.result()

    async def run_all(self, calls: Sequence[ScriptCall[Any]]) -> None:
        """Run `calls` in one round trip: on the next turn of the loop if none is in flight, else when it ends.

        At least `_OWN_TRIP_CALLS` calls (a heartbeat) go at once on a round trip of their
        own instead (several past `_MAX_OWN_TRIP_CALLS`), which the queue does not wait for.
        Never raises for a Redis failure: each call holds its own outcome afterwards.
        """
        if len(calls) >= _OWN_TRIP_CALLS:
            # Shielded: a caller that gives up does not cut the round trip short (its replies are dropped).
            await asyncio.shield(self._own_trips(calls))
            return
        await self._enqueue(calls)

    def _enqueue(self, calls: Sequence[ScriptCall[Any]]) -> asyncio.Future[None]:
        """Queue `calls` for the next round trip; the future is done once they ran (cancel it to leave the queue)."""
        waiter = asyncio.get_running_loop().create_future()
        self._queue.append((calls, waiter))
        if not self._in_flight:
            # Sent from a task of its own, which runs after every task already due on this
            # turn of the loop: calls issued together (each from its own task) go together.
            self._in_flight += 1
            self._spawn(self._send_queue(split=False))
        return waiter

    async def _own_trips(self, calls: Sequence[ScriptCall[Any]]) -> None:
        size = self._max_own_calls
        await asyncio.gather(*(self._answer(calls[start : start + size]) for start in range(0, len(calls), size)))

    async def _answer(self, calls: Sequence[ScriptCall[Any]]) -> None:
        """One round trip of `calls`; each holds its outcome after, a bug below included."""
        try:
            await self._round_trip(calls)
        except Exception as exc:  # a bug, not a Redis failure: every call of the round trip sees it
            for call in calls:
                if not call.done:
                    call.error = exc

    def _ended(self) -> None:
        """A round trip ended: send what queued meanwhile, or go idle."""
        if not self._queue:
            self._in_flight -= 1  # the next call starts a round trip of its own
            return
        # Sent from a task of its own, on the next turn of the event loop: no caller's result
        # waits for it, and the callers this round trip just answered, if they call again at
        # once, go in it too, which keeps concurrent callers together.
        self._spawn(self._send_queue(split=True))

    def _spawn(self, trip: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(trip)
        self._trips.add(task)  # a reference, so that the task is not collected mid-way
        task.add_done_callback(self._trips.discard)

    async def _send_queue(self, *, split: bool) -> None:
        waiting = [entry for entry in self._queue if not entry[1].done()]  # cancelled callers are left out
        self._queue = []
        if not waiting:
            self._in_flight -= 1
            return
        calls = sum(len(group) for group, _ in waiting)
        parts = -(-calls // self._max_calls)
        if split and parts == 1 and self._in_flight == 1 and calls >= 2 * _MIN_SPLIT:
            # Nothing else in flight: two round trips on two connections, so that the server
            # runs one while this process reads the other's replies and its callers call again.
            parts = 2
        size = -(-len(waiting) // min(parts, len(waiting)))
        chunks = [waiting[start : start + size] for start in range(0, len(waiting), size)]
        for chunk in chunks[1:]:  # all sent now: none of them waits for another
            self._in_flight += 1
            self._spawn(self._trip_for(chunk))
        await self._trip_for(chunks[0])

    async def _trip_for(self, waiting: list[_Waiting]) -> None:
        try:
            await self._answer([call for group, _ in waiting for call in group])
        except BaseException:
            # Cancelled (the event loop is closing): what is queued will not be sent either.
            for _, waiter in [*waiting, *self._queue]:
                waiter.cancel()
            self._queue = []
            self._in_flight -= 1
            raise
        for _, waiter in waiting:
            if not waiter.done():
                waiter.set_result(None)
        self._ended()

    async def _round_trip(self, calls: Sequence[ScriptCall[Any]]) -> None:
        replies = await self._send_once(calls)
        failed = [i for i, reply in enumerate(replies) if isinstance(reply, BaseException)]
        if failed:
            await self._recover(calls, replies, failed)
            await self._diagnose(replies)
        for call, reply in zip(calls, replies, strict=True):
            if isinstance(reply, REDIS_FAILURES):
                call.error = translated(reply, call.name, self._server)
            elif isinstance(reply, BaseException):
                call.error = reply  # not a Redis failure: a bug, which the caller should see as it is
            else:
                call.reply = reply

    async def _recover(self, calls: Sequence[ScriptCall[Any]], replies: list[Any], failed: list[int]) -> None:
        """Send again, once, the calls in `failed` that may be: they replace their entries of `replies`.

        A call whose connection broke may have run: it is sent again only if it is
        `RESENDABLE`. A call that got NOSCRIPT did not run: the scripts are loaded
        and it is sent again (after a resend too, e.g. on a server that restarted).
        """
        lost = [i for i in failed if calls[i].name in RESENDABLE and is_lost_connection(replies[i])]
        if lost:
            await self._send_again(calls, replies, lost)
        forgotten = [i for i in failed if isinstance(replies[i], NoScriptError)]
        if forgotten:
            load_error = await self._load({calls[i].name for i in forgotten})
            if load_error is not None:
                for i in forgotten:
                    replies[i] = load_error
            else:
                await self._send_again(calls, replies, forgotten)

    async def _diagnose(self, replies: list[Any]) -> None:
        """Replace lost connections by the TLS refusal they hide, if any (see `tls_probe`): one probe per round trip."""
        lost = [i for i, reply in enumerate(replies) if isinstance(reply, BaseException) and is_lost_connection(reply)]
        if lost:
            cause = await refusal_behind(replies[lost[0]], self._client)
            if cause is not replies[lost[0]]:
                for i in lost:
                    replies[i] = cause

    async def _send_again(self, calls: Sequence[ScriptCall[Any]], replies: list[Any], indices: list[int]) -> None:
        again = await self._send_once([calls[i] for i in indices])
        for i, reply in zip(indices, again, strict=True):
            replies[i] = reply

    async def _send_once(self, calls: Sequence[ScriptCall[Any]]) -> list[Any]:
        """One round trip; each reply, or each call's exception, in order. Never sends anything twice."""
        commands, groups = self._bundler.commands(calls)
        self.round_trips += 1
        self.calls_sent += len(calls)
        self.commands_sent += len(commands)
        try:
            replies = await self._send(commands)
        except Exception as exc:  # the round trip as a whole failed (connection lost, timeout)
            return [exc] * len(calls)
        return replies_of_calls(groups, replies, len(calls))

    async def _load(self, names: set[str]) -> Exception | None:
        """Load the scripts `names` and the bundle script (a flushed cache lost it too)."""
        try:
            for name in sorted({*names, BUNDLE}):
                await self._client.script_load(self._sources[name])
        except Exception as exc:
            return exc
        return None
