"""Outages played on a real redis-server under live clients: killed, frozen and restarted, always on its own port.

`RedisFaults.play` draws a schedule from a seeded `random.Random`: a calm spell, then
one fault, again and again until a deadline. The faults come in shuffled rounds of
all three kinds, so every kind is played whatever the seed:

- ``kill``: SIGKILL (the data goes with it), down for a while, started again on the same port;
- ``freeze``: SIGSTOP for a while (connections stay open, nothing answers), then SIGCONT;
- ``restart``: a graceful stop (SIGTERM; no persistence, so the data goes too) and a start at once.

The server binary is started and stopped through mirakuru, which blocks: those calls
run in a thread so that the clients on the event loop keep playing meanwhile.
`heal` leaves the server up and answering however the schedule was interrupted.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Final

from support.servers import ServerProcess

__all__ = ["FAULT_KINDS", "Fault", "RedisFaults"]

FAULT_KINDS: Final = ("kill", "freeze", "restart")


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault played: its kind, when it began (seconds from the start of `play`) and how long Redis was out."""

    kind: str
    at_s: float
    out_s: float

    def __str__(self) -> str:
        return f"{self.kind} at {self.at_s:.1f} s for {self.out_s:.2f} s"


@dataclass
class RedisFaults:
    """Plays faults on `server`, drawn from `rng`; calm spells and outages last `calm_s` and `out_s` (min, max)."""

    server: ServerProcess
    rng: random.Random
    calm_s: tuple[float, float] = (0.5, 2.0)
    out_s: tuple[float, float] = (0.2, 2.0)
    played: list[Fault] = field(default_factory=list)
    _frozen: bool = False

    async def play(self, for_s: float) -> None:
        """Play faults until `for_s` seconds have passed (the last outage may end up to `out_s` later)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        kinds: list[str] = []
        while True:
            await asyncio.sleep(self.rng.uniform(*self.calm_s))
            if loop.time() - start >= for_s:
                return
            if not kinds:
                kinds = self.rng.sample(FAULT_KINDS, len(FAULT_KINDS))
            kind = kinds.pop()
            began = loop.time()
            await self._fault(kind, self.rng.uniform(*self.out_s))
            self.played.append(Fault(kind, began - start, loop.time() - began))

    async def _fault(self, kind: str, out_s: float) -> None:
        if kind == "kill":
            await asyncio.to_thread(self.server.kill)
            await asyncio.sleep(out_s)
            await asyncio.to_thread(self.server.revive)
        elif kind == "freeze":
            self.server.pause()
            self._frozen = True
            await asyncio.sleep(out_s)
            self.server.resume()
            self._frozen = False
        elif kind == "restart":
            await asyncio.to_thread(self.server.stop)
            await asyncio.to_thread(self.server.revive)
        else:
            raise ValueError(f"kind must be one of {FAULT_KINDS}, got {kind!r}")

    async def heal(self) -> None:
        """Leave the server running and answering (after an interrupted `play`); does nothing if it already is."""
        if self._frozen:
            self.server.resume()
            self._frozen = False
        if not self.server.running:
            await asyncio.to_thread(self.server.revive)

    def __str__(self) -> str:
        return "; ".join(str(fault) for fault in self.played) or "no fault played"
