"""`Leases`: the set members one connection holds, kept alive while it lives.

Each slot (a user's socket, an IP's socket, a room membership) is a set member
whose lease ends `lease_ms` after it was last written. The live connection calls
`refresh` more often than that; a process that dies stops refreshing, so its
slots free themselves when the lease runs out instead of leaking forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from ..backend import Backend, add_many
from ..errors import BackendError

__all__ = ["DEFAULT_LEASE_MS", "Leases", "Slot", "refresh_together"]

logger = logging.getLogger(__name__)

DEFAULT_LEASE_MS: Final = 60_000


@dataclass(frozen=True, slots=True)
class Slot:
    """One held set member: `member` in the set at `key`."""

    key: str
    member: str


class Leases:
    """The slots of one connection: refreshed while it lives, released exactly once.

    Each write runs as its own task that a cancelled caller does not cut short:
    storage may still run a call whose caller gave up, so the next step must wait
    for it rather than race it. `refresh` and `release` are serialised, so a
    refresh in flight when the connection ends finishes before the slots are
    removed and can never bring a released slot back.
    """

    __slots__ = ("_backend", "_lease_ms", "_lock", "_released", "_removal", "_slots")

    def __init__(self, backend: Backend, slots: Iterable[Slot], lease_ms: int | None) -> None:
        self._backend = backend
        self._slots = tuple(slots)
        self._lease_ms = lease_ms
        self._lock = asyncio.Lock()
        self._removal: asyncio.Task[None] | None = None
        """The one removal of every slot, started by the first `release`."""
        self._released = False

    def __repr__(self) -> str:
        state = "released" if self._released else "releasing" if self._removal is not None else "held"
        return f"Leases({[slot.key for slot in self._slots]!r}, {state})"

    @property
    def slots(self) -> tuple[Slot, ...]:
        """The set members held, in the order they were taken."""
        return self._slots

    @property
    def lease_ms(self) -> int | None:
        """How long each slot outlives its last refresh (None: held until released)."""
        return self._lease_ms

    @property
    def released(self) -> bool:
        """True once every slot's removal has been tried (not merely started)."""
        return self._released

    @property
    def _ending(self) -> bool:
        """`release` was called: nothing may be written any more."""
        return self._removal is not None or self._released

    async def refresh(self) -> bool:
        """Extend every lease by `lease_ms` from now; False once `release` was called (nothing is written then).

        A slot that already expired (say the event loop stalled) is added back
        without a capacity check: the connection is live, so it must be counted.
        Storage failures raise `BackendError`; the caller decides whether to retry.
        Cancelling the caller does not stop the writes: they finish (and any
        `release` waits for them), so a write still running in storage cannot
        bring a slot back after its removal.
        """
        if self._ending:
            return False
        # A caller cancelled meanwhile never sees the outcome; shield marks it retrieved.
        return await asyncio.shield(self._refresh_all())

    async def _refresh_all(self) -> bool:
        async with self._lock:
            if self._ending:
                return False
            # All issued at once (one round trip on a coalescing backend), and all ended before
            # the lock is let go, failed or not: a release must not overtake a write still running.
            outcomes = await add_many(self._backend, self._members(), self._lease_ms)
            failure = next((outcome for outcome in outcomes if isinstance(outcome, BaseException)), None)
            if failure is not None:
                raise failure
            return True

    def _members(self) -> list[tuple[str, str]]:
        return [(slot.key, slot.member) for slot in self._slots]

    async def release(self) -> None:
        """Remove every slot, once, whoever calls and however often.

        The first call starts the removal; every call (the first included) waits
        for that same removal. Cancelling a caller does not cut the removal short:
        it goes on, and the caller gets `CancelledError`. Never raises anything
        else: a removal that fails is logged and that slot is left to expire with
        its lease.
        """
        if self._removal is None:
            if not self._slots:  # nothing to remove (a refused or fail-open connection): no task
                self._released = True
                return
            self._removal = asyncio.ensure_future(self._remove_all())
        await asyncio.shield(self._removal)

    async def _remove_all(self) -> None:
        async with self._lock:
            # All issued at once: one round trip on a coalescing backend.
            removals = [self._backend.set_remove(slot.key, slot.member) for slot in self._slots]
            outcomes = await asyncio.gather(*removals, return_exceptions=True)
            for slot, outcome in zip(self._slots, outcomes, strict=True):
                if isinstance(outcome, BackendError):
                    logger.warning("could not release slot %r (it expires with its lease): %s", slot.key, outcome)
                elif isinstance(outcome, Exception):
                    # Not a storage failure but a bug below; the other slots went all the same.
                    logger.error("could not release slot %r (it expires with its lease)", slot.key, exc_info=outcome)
            self._released = True


async def refresh_together(held: Sequence[Leases]) -> list[bool | BaseException]:
    """`Leases.refresh` of each of `held`, their writes sent together: one `add_many` per backend and lease.

    A heartbeat of thousands of connections is then one call on a backend that has
    `AddsMany.set_add_many` (no task per connection or per slot). Each outcome is what
    that `refresh` would give: True, False once released (nothing written), or its
    failure (a `BackendError`, or a bug). The guarantees of `refresh` hold: a
    connection's lock is held while its writes run, so a release waits for them, and
    cancelling the caller does not cut them short.
    """
    return await asyncio.shield(_refresh_together(list(held)))


async def _refresh_together(held: list[Leases]) -> list[bool | BaseException]:
    outcomes: dict[Leases, bool | BaseException] = {}
    busy: list[Leases] = []
    taken: list[Leases] = []
    try:
        for leases in held:
            if leases._ending:
                outcomes[leases] = False
            elif leases._lock.locked():
                busy.append(leases)  # a refresh of its own is running: this one waits its turn
            else:
                await leases._lock.acquire()  # free, so taken at once, without yielding
                taken.append(leases)
        groups: dict[tuple[int, int | None], list[Leases]] = {}
        for leases in taken:
            groups.setdefault((id(leases._backend), leases._lease_ms), []).append(leases)
        parts = [*groups.values(), *([leases] for leases in busy)]
        written = await asyncio.gather(
            *(_refresh_group(group) for group in groups.values()),
            *(_refresh_alone(leases) for leases in busy),
            return_exceptions=True,
        )
    finally:
        for leases in taken:
            leases._lock.release()
    for part, outcome in zip(parts, written, strict=True):
        for leases, each in zip(part, _spread(outcome, part), strict=True):
            outcomes[leases] = each
    return [outcomes[leases] for leases in held]


async def _refresh_alone(leases: Leases) -> list[bool | BaseException]:
    return [await leases.refresh()]


async def _refresh_group(group: list[Leases]) -> list[bool | BaseException]:
    """The writes of `group` (one backend, one lease) in one `add_many`; each connection's outcome."""
    first = group[0]
    members = [member for leases in group for member in leases._members()]
    results = await add_many(first._backend, members, first._lease_ms)
    outcomes: list[bool | BaseException] = []
    start = 0
    for leases in group:
        end = start + len(leases._slots)
        failure = next((each for each in results[start:end] if isinstance(each, BaseException)), None)
        outcomes.append(True if failure is None else failure)
        start = end
    return outcomes


def _spread(outcome: list[bool | BaseException] | BaseException, group: list[Leases]) -> list[bool | BaseException]:
    """A group's outcomes, or the one failure that ended its whole call, for each connection of it."""
    return [outcome] * len(group) if isinstance(outcome, BaseException) else outcome
