"""The `Backend` protocol every storage driver implements, and its result types.

All times are integer milliseconds; rates are tokens per second. Each method is
one atomic step: no other caller, in this process or another, can observe or act
between its read and its write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, Protocol, Self, cast, runtime_checkable

from .errors import BackendError

__all__ = [
    "ADD_MANY_YIELD_EVERY",
    "AddsMany",
    "Backend",
    "BucketResult",
    "ClosesOnExit",
    "CounterResult",
    "SetResult",
    "ShowsProgress",
    "add_many",
]


@dataclass(frozen=True, slots=True)
class CounterResult:
    """The outcome of `Backend.counter_incr`."""

    allowed: bool
    """False when the increment would have passed `limit`; nothing changed then."""
    value: int
    """The counter after the call (the unchanged value when refused)."""
    reset_after_ms: int | None
    """Milliseconds left in the counter's window, or None when it has no window."""
    degraded: bool = field(default=False, compare=False)
    """True when a `FallbackBackend` answered without its primary (not part of equality)."""
    unavailable: bool = field(default=False, compare=False)
    """True when refused only because the primary is down (`FallbackBackend` with ``on_error="deny"``)."""


@dataclass(frozen=True, slots=True)
class SetResult:
    """The outcome of `Backend.set_add`."""

    added: bool
    """True when the member is in the set after the call (new or already present)."""
    size: int
    """Live members after the call."""
    degraded: bool = field(default=False, compare=False)
    """True when a `FallbackBackend` answered without its primary (not part of equality)."""
    unavailable: bool = field(default=False, compare=False)
    """True when refused only because the primary is down (`FallbackBackend` with ``on_error="deny"``)."""


@dataclass(frozen=True, slots=True, init=False)
class BucketResult:
    """The outcome of `Backend.bucket_consume` (and of `Backend.bucket_peek`)."""

    allowed: bool
    """True when the tokens were taken (for a peek: when a consume of `cost` would pass now)."""
    remaining: int
    """Whole tokens left after the call."""
    retry_after_ms: int
    """0 when allowed; otherwise the exact wait until `cost` tokens are there."""
    reset_after_ms: int
    """Milliseconds until the bucket is full again (0 when it is full)."""
    degraded: bool = field(default=False, compare=False)
    """True when a `FallbackBackend` answered without its primary (not part of equality)."""
    unavailable: bool = field(default=False, compare=False)
    """True when refused only because the primary is down (`FallbackBackend` with ``on_error="deny"``)."""

    def __init__(  # noqa: PLR0917 (positional in the dataclass's field order)
        self,
        allowed: bool,
        remaining: int,
        retry_after_ms: int,
        reset_after_ms: int,
        degraded: bool = False,
        unavailable: bool = False,
    ) -> None:
        # Built once per message on the hot path: writing the slots directly costs half
        # of what the generated frozen __init__ does (one object.__setattr__ per field).
        _set_allowed(self, allowed)
        _set_remaining(self, remaining)
        _set_retry_after_ms(self, retry_after_ms)
        _set_reset_after_ms(self, reset_after_ms)
        _set_degraded(self, degraded)
        _set_unavailable(self, unavailable)


# The slot descriptors' setters, in field order (`__slots__` follows the fields).
_set_allowed, _set_remaining, _set_retry_after_ms, _set_reset_after_ms, _set_degraded, _set_unavailable = (
    vars(BucketResult)[name].__set__ for name in BucketResult.__slots__
)


@runtime_checkable
class Backend(Protocol):
    """Atomic rate-limit primitives over some storage.

    Keys and set members are arbitrary strings; the backend namespaces them under
    its prefix and by primitive, so a counter and a set with the same key never
    share state. Invalid arguments raise `InvalidArgument` (a `ValueError`) before
    storage is touched; storage that cannot be reached raises `BackendUnavailable`.
    """

    async def counter_incr(
        self, key: str, amount: int = 1, *, limit: int | None = None, window_ms: int | None = None
    ) -> CounterResult:
        """Add `amount` unless the result would exceed `limit`.

        A new key gets a fixed window of `window_ms` (later calls never extend it,
        and a `window_ms` given for an existing key is ignored). A refused call on a
        missing key creates nothing.
        """
        ...

    async def counter_decr(self, key: str, amount: int = 1) -> int:
        """Subtract `amount`, never below 0, keeping the window; a key at 0 is removed."""
        ...

    async def counter_get(self, key: str) -> int:
        """The counter's value; 0 for a missing or expired key."""
        ...

    async def set_add(
        self, key: str, member: str, *, capacity: int | None = None, lease_ms: int | None = None
    ) -> SetResult:
        """Add `member`, refreshing its lease (`None` makes it permanent).

        A member already present is always accepted. A new member is refused when
        the set holds `capacity` live members. A lease ends at its expiry instant.
        """
        ...

    async def set_remove(self, key: str, member: str) -> int:
        """Remove `member` (absent is a no-op) and return the live size after."""
        ...

    async def set_size(self, key: str) -> int:
        """Live members in the set."""
        ...

    async def set_members(self, key: str) -> frozenset[str]:
        """The live members of the set."""
        ...

    async def bucket_consume(self, key: str, *, rate: float, burst: int, cost: int = 1) -> BucketResult:
        """Take `cost` tokens from a bucket of `burst` tokens refilling at `rate`/s.

        A new bucket is full. On refusal nothing is taken. The stored state expires
        by itself once the bucket would be full again.

        A clock reading earlier than the bucket's last update (the clock stepped
        backwards) refills nothing, and the update time is re-based to that reading,
        on a refusal too: `retry_after_ms` holds (that much later, unless the clock
        steps back again, the same call passes if nothing else took tokens) and
        `reset_after_ms` counts from now. The time between the last update and the step is not refilled, so
        tokens never appear from nowhere, and the level never exceeds `burst`.
        """
        ...

    async def bucket_peek(self, key: str, *, rate: float, burst: int, cost: int = 1) -> BucketResult:
        """The bucket as it is now, taking nothing (for operators and dashboards).

        `remaining` is the whole tokens there now; `allowed` and `retry_after_ms`
        say whether, and after how long, `bucket_consume` of `cost` would pass.
        After the clock stepped backwards it re-bases the update time to now, as
        `bucket_consume` does, so that this `retry_after_ms` holds as well.
        """
        ...

    async def bucket_reset(self, key: str) -> None:
        """Forget the bucket's state: it is full again."""
        ...

    async def ping(self) -> None:
        """Return when the storage answers; raise `BackendUnavailable` otherwise."""
        ...

    async def clear(self) -> None:
        """Delete every key under this backend's prefix (for tests)."""
        ...

    async def aclose(self) -> None:
        """Release connections; the backend must not be used afterwards."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


ADD_MANY_YIELD_EVERY: Final = 256
"""Adds a `set_add_many` prepares or takes in between two turns of the event loop (about a millisecond of
work), so that a heartbeat of thousands of slots does not hold back the frames' checks."""


@runtime_checkable
class AddsMany(Protocol):
    """What a backend offers, beyond `Backend`, to refresh many set members at once (optional).

    The lease heartbeat of a process refreshes every slot it holds; a backend with
    `set_add_many` takes them in one call, without a task or a coroutine per slot. A
    backend without it gets one `set_add` per slot, issued together.
    """

    async def set_add_many(
        self, members: Sequence[tuple[str, str]], *, lease_ms: int | None = None
    ) -> list[SetResult | BackendError]:
        """`Backend.set_add` of each ``(key, member)`` with `lease_ms` and without a capacity, together.

        Each add is atomic on its own key, as `set_add` is; the adds are not one
        transaction. Returns each add's result, or its own storage failure
        (`BackendError`, `BackendUnavailable`), in order: one failing does not stop
        the others. Invalid arguments raise `InvalidArgument` before anything is written.
        """
        ...


@runtime_checkable
class ShowsProgress(Protocol):
    """What a backend offers, beyond `Backend`, to show that a long call moves (optional).

    `FallbackBackend` takes any reply as a sign of life: while one call carries many
    writes (a heartbeat of thousands of slots), the replies to its first parts keep
    it from being taken for a silent primary.
    """

    @property
    def replies_read(self) -> int:
        """Replies received from storage so far, for any call; it only grows."""
        ...


async def add_many(
    backend: Backend, members: Sequence[tuple[str, str]], lease_ms: int | None
) -> list[SetResult | BackendError]:
    """`AddsMany.set_add_many` on `backend` where its class defines it, else one `set_add` per member, together.

    Only a method of the class counts: a wrapper that overrides `set_add` and hands
    every other name to the backend it wraps (``__getattr__``) gets its own `set_add`
    called, not the wrapped backend's `set_add_many`. A failure that is no
    `BackendError` (a bug below) is raised, after every add ended.
    """
    if callable(getattr(type(backend), "set_add_many", None)):
        return await cast("AddsMany", backend).set_add_many(members, lease_ms=lease_ms)
    outcomes = await asyncio.gather(
        *(backend.set_add(key, member, lease_ms=lease_ms) for key, member in members), return_exceptions=True
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, BackendError):
            raise outcome
    return cast("list[SetResult | BackendError]", outcomes)


class ClosesOnExit:
    """``async with`` for a backend: leaving the block calls its `aclose`.

    A convenience the drivers inherit; the `Backend` protocol does not require it.
    """

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
