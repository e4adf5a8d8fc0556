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

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar, cast

from ..backend import Backend
from ..primitives import PRIMITIVES
from .coalesce import ScriptCall
from .commands import ScriptArguments, script_step

__all__ = ["RedisBatch"]

T = TypeVar("T")
P = ParamSpec("P")

RunAll = Callable[[Sequence[ScriptCall[Any]]], Awaitable[None]]


def _queues_script(
    method: Callable[Concatenate[Any, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[RedisBatch, P], ScriptCall[T]]:
    """`Backend`'s `method` with its signature, checked at once and queued as one script call of its primitive."""
    primitive = PRIMITIVES[method.__name__]
    function = primitive.define(script_step(primitive), is_async=False)
    function.__qualname__ = f"RedisBatch.{method.__name__}"
    function.__doc__ = method.__doc__
    return cast("Callable[Concatenate[RedisBatch, P], ScriptCall[T]]", function)


class RedisBatch:
    """Calls collected in an ``async with`` block and sent when it ends (see `RedisBackend.batch`)."""

    __slots__ = ("_arguments", "_calls", "_closed", "_run_all")

    def __init__(self, arguments: ScriptArguments, run_all: RunAll) -> None:
        self._arguments = arguments
        self._run_all = run_all
        self._calls: list[ScriptCall[Any]] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"RedisBatch(calls={len(self._calls)}, closed={self._closed})"

    def __len__(self) -> int:
        return len(self._calls)

    def _submit(self, call: ScriptCall[T]) -> ScriptCall[T]:
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

    counter_incr = _queues_script(Backend.counter_incr)
    counter_decr = _queues_script(Backend.counter_decr)
    counter_get = _queues_script(Backend.counter_get)
    set_add = _queues_script(Backend.set_add)
    set_remove = _queues_script(Backend.set_remove)
    set_size = _queues_script(Backend.set_size)
    set_members = _queues_script(Backend.set_members)
    bucket_consume = _queues_script(Backend.bucket_consume)
    bucket_peek = _queues_script(Backend.bucket_peek)
    bucket_reset = _queues_script(Backend.bucket_reset)
