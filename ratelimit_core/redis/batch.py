"""`RedisBatch`: several primitive calls sent together in one round trip.

For a caller that holds many checks at once (one message that must pass a user's,
a room's and a server-wide limit)::

    async with backend.batch() as batch:
        user = batch.bucket_consume(f"user:{uid}", rate=10, burst=20)
        room = batch.bucket_consume(f"room:{room_id}", rate=100, burst=200)
    if user.result().allowed and room.result().allowed:
        ...

Each method checks its arguments at once (raising `InvalidArgument`) and returns a
`ScriptCall`; leaving the block sends them all, as one pipelined round trip through
the backend's `Coalescer` (so it waits for at most one round trip already in flight).
`result()` then gives each call's result or raises its own error: one call failing
does not fail the others. If the block raises, nothing is sent. Each call is atomic
on its own; the batch as a whole is not a transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

from ..backend import BucketResult, CounterResult, SetResult
from .coalesce import ScriptCall
from .commands import ScriptCommands

__all__ = ["RedisBatch"]

T = TypeVar("T")

RunAll = Callable[[Sequence[ScriptCall[Any]]], Awaitable[None]]


class RedisBatch:
    """Calls collected in an ``async with`` block and sent when it ends (see `RedisBackend.batch`)."""

    __slots__ = ("_calls", "_closed", "_commands", "_run_all")

    def __init__(self, commands: ScriptCommands, run_all: RunAll) -> None:
        self._commands = commands
        self._run_all = run_all
        self._calls: list[ScriptCall[Any]] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"RedisBatch(calls={len(self._calls)}, closed={self._closed})"

    def __len__(self) -> int:
        return len(self._calls)

    def _add(self, call: ScriptCall[T]) -> ScriptCall[T]:
        if self._closed:
            raise RuntimeError("this batch was already sent or abandoned; start a new one with backend.batch()")
        self._calls.append(call)
        return call

    async def send(self) -> None:
        """Send the calls collected so far; leaving the ``async with`` block does this."""
        self._closed = True
        if self._calls:
            await self._run_all(self._calls)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._closed:
            return
        if exc_type is None:
            await self.send()
        self._closed = True  # a block that raised sends nothing, and the batch takes no more calls

    # The primitives of `Backend`, with the same arguments.

    def counter_incr(
        self, key: str, amount: int = 1, *, limit: int | None = None, window_ms: int | None = None
    ) -> ScriptCall[CounterResult]:
        return self._add(self._commands.counter_incr(key, amount, limit=limit, window_ms=window_ms))

    def counter_decr(self, key: str, amount: int = 1) -> ScriptCall[int]:
        return self._add(self._commands.counter_decr(key, amount))

    def counter_get(self, key: str) -> ScriptCall[int]:
        return self._add(self._commands.counter_get(key))

    def set_add(
        self, key: str, member: str, *, capacity: int | None = None, lease_ms: int | None = None
    ) -> ScriptCall[SetResult]:
        return self._add(self._commands.set_add(key, member, capacity=capacity, lease_ms=lease_ms))

    def set_remove(self, key: str, member: str) -> ScriptCall[int]:
        return self._add(self._commands.set_remove(key, member))

    def set_size(self, key: str) -> ScriptCall[int]:
        return self._add(self._commands.set_size(key))

    def set_members(self, key: str) -> ScriptCall[frozenset[str]]:
        return self._add(self._commands.set_members(key))

    def bucket_consume(self, key: str, *, rate: float, burst: int, cost: int = 1) -> ScriptCall[BucketResult]:
        return self._add(self._commands.bucket_consume(key, rate=rate, burst=burst, cost=cost))

    def bucket_peek(self, key: str, *, rate: float, burst: int, cost: int = 1) -> ScriptCall[BucketResult]:
        return self._add(self._commands.bucket_peek(key, rate=rate, burst=burst, cost=cost))

    def bucket_reset(self, key: str) -> ScriptCall[None]:
        return self._add(self._commands.bucket_reset(key))
