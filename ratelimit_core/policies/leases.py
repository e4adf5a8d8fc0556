"""`Leases`: the set members one connection holds, kept alive while it lives.

Each slot (a user's socket, an IP's socket, a room membership) is a set member
whose lease ends `lease_ms` after it was last written. The live connection calls
`refresh` more often than that; a process that dies stops refreshing, so its
slots free themselves when the lease runs out instead of leaking forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from ..backend import Backend
from ..errors import BackendError

__all__ = ["DEFAULT_LEASE_MS", "Leases", "Slot"]

logger = logging.getLogger(__name__)

DEFAULT_LEASE_MS: Final = 60_000


@dataclass(frozen=True, slots=True)
class Slot:
    """One held set member: `member` in the set at `key`."""

    key: str
    member: str


class Leases:
    """The slots of one connection: refreshed while it lives, released exactly once.

    `refresh` and `release` are serialised, so a refresh still in flight when the
    connection ends finishes before the slots are removed and can never bring a
    released slot back.
    """

    __slots__ = ("_backend", "_lease_ms", "_lock", "_released", "_slots")

    def __init__(self, backend: Backend, slots: Iterable[Slot], lease_ms: int | None) -> None:
        self._backend = backend
        self._slots = tuple(slots)
        self._lease_ms = lease_ms
        self._lock = asyncio.Lock()
        self._released = False

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"Leases({[slot.key for slot in self._slots]!r}, {state})"

    @property
    def slots(self) -> tuple[Slot, ...]:
        return self._slots

    @property
    def lease_ms(self) -> int | None:
        return self._lease_ms

    @property
    def released(self) -> bool:
        return self._released

    async def refresh(self) -> bool:
        """Extend every lease by `lease_ms` from now; False once released (nothing is written then).

        A slot that already expired (say the event loop stalled) is added back
        without a capacity check: the connection is live, so it must be counted.
        Storage failures raise `BackendError`; the caller decides whether to retry.
        """
        async with self._lock:
            if self._released:
                return False
            for slot in self._slots:
                await self._backend.set_add(slot.key, slot.member, lease_ms=self._lease_ms)
            return True

    async def release(self) -> None:
        """Remove every slot; later calls do nothing.

        Never raises for storage failures: a removal that fails is logged and the
        slot is left to expire with its lease.
        """
        async with self._lock:
            if self._released:
                return
            self._released = True
            for slot in self._slots:
                try:
                    await self._backend.set_remove(slot.key, slot.member)
                except BackendError as exc:
                    logger.warning("could not release slot %r (it expires with its lease): %s", slot.key, exc)
