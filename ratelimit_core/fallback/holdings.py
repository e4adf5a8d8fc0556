"""`Holdings`: the set members this process holds, to give back to a primary that lost them.

Every member this process adds (through the primary or, during an outage, the
fallback) is held until it removes it or its lease ends without a refresh. Memory
is bounded by the members live now: an expired member is dropped as later adds
pass it, without waiting for an outage.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator

from ..clock import Clock

__all__ = ["Holdings", "Member"]

Member = tuple[str, str]
"""(set key, member)."""


class Holdings:
    """Held members and their leases; `clock` (ms) tells when a lease has ended."""

    __slots__ = ("_by_lease", "_clock", "_lease_of")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lease_of: dict[Member, int | None] = {}
        # One queue per lease length, in order of last refresh, which within a queue
        # is the order of expiry: expired members are always at the front.
        self._by_lease: dict[int | None, OrderedDict[Member, float]] = {}

    def __repr__(self) -> str:
        return f"Holdings({len(self._lease_of)} members)"

    def __len__(self) -> int:
        return len(self._lease_of)

    def __contains__(self, member: object) -> bool:
        return member in self._lease_of

    def hold(self, key: str, member: str, lease_ms: int | None) -> None:
        """`member` of `key` is held (again) from now, for `lease_ms` (None: until released)."""
        held = (key, member)
        previous = self._lease_of.get(held, False)
        if previous is not False and previous != lease_ms:
            del self._by_lease[previous][held]
        queue = self._by_lease.get(lease_ms)
        if queue is None:
            queue = self._by_lease[lease_ms] = OrderedDict()
        now = self._clock()
        queue.pop(held, None)
        queue[held] = math.inf if lease_ms is None else now + lease_ms
        self._lease_of[held] = lease_ms
        self._drop_expired(queue, now)

    def release(self, key: str, member: str) -> None:
        """`member` of `key` is no longer held (absent: nothing happens)."""
        held = (key, member)
        lease_ms = self._lease_of.pop(held, False)
        if lease_ms is not False:
            del self._by_lease[lease_ms][held]

    def live(self) -> Iterator[tuple[str, str, int | None]]:
        """(key, member, lease_ms) of every member still held now."""
        now = self._clock()
        for queue in self._by_lease.values():
            self._drop_expired(queue, now)
        for (key, member), lease_ms in list(self._lease_of.items()):
            yield key, member, lease_ms

    def clear(self) -> None:
        self._lease_of.clear()
        self._by_lease.clear()

    def _drop_expired(self, queue: OrderedDict[Member, float], now: int) -> None:
        while queue:
            held, ends = next(iter(queue.items()))
            if ends > now:
                return
            del queue[held]
            del self._lease_of[held]
