"""`HeldCalls`: a backend whose chosen calls wait at a gate, and still reach storage when their caller gives up.

Redis runs a command whose client was cancelled or timed out: the command was
already sent. So a held call runs as its own task that the caller only awaits
(shielded): cancelling the caller leaves the call on its way, and it reaches
the real backend once its gate opens. A test can then cancel at that exact
await, open the gate, and check what storage holds afterwards.

Every `set_remove` is counted per (key, member), so a test can prove that each
slot is removed exactly once. (A plain module, not a conftest: test modules of
both ``core`` and ``channels`` import it.)
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from ratelimit_core import Backend

__all__ = ["Gate", "HeldCalls", "Match", "calls_to", "nth_call"]

Match = Callable[[str, str, dict[str, Any]], bool]
"""Whether a call is held: ``match(method, key, kwargs)``."""


class Gate:
    """Where held calls wait: `started` is set when one arrives, and they all go on once `go` is set."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.go = asyncio.Event()


def calls_to(method: str, key_part: str = "", **kwargs: Any) -> Match:
    """Calls of `method` on a key containing `key_part`, with the given keyword arguments."""

    def match(name: str, key: str, given: dict[str, Any]) -> bool:
        return name == method and key_part in key and all(given.get(k) == v for k, v in kwargs.items())

    return match


def nth_call(n: int) -> Match:
    """The `n`-th call (from 0) of any storage method, and only that one."""
    count = -1

    def match(name: str, key: str, given: dict[str, Any]) -> bool:
        nonlocal count
        count += 1
        return count == n

    return match


class HeldCalls:
    """Delegates every call to `backend`; calls a `hold` matches wait at its gate first."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.removals: Counter[tuple[str, str]] = Counter()
        """``set_remove`` calls made, per (key, member)."""
        self._gates: list[tuple[Match, Gate]] = []
        self._before = asyncio.all_tasks()

    def hold(self, match: Match) -> Gate:
        """Hold the calls `match` selects (the first matching hold wins) until the gate's `go`."""
        gate = Gate()
        self._gates.append((match, gate))
        return gate

    async def settle(self) -> None:
        """Open every gate, then wait until every task started since this object was made has ended.

        That covers the calls storage was sent and the clean-up a cancelled caller
        left running (a removal goes on after its caller was cancelled twice).
        Everything those tasks start meanwhile is waited for too.
        """
        for _, gate in self._gates:
            gate.go.set()
        current = asyncio.current_task()
        async with asyncio.timeout(30):
            while pending := asyncio.all_tasks() - self._before - {current}:
                await asyncio.wait(pending)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.backend, name)

        async def call(key: str, *args: Any, **kwargs: Any) -> Any:
            if name == "set_remove":
                self.removals[key, args[0] if args else kwargs["member"]] += 1
            # Every matcher sees every call (so that `nth_call` counts right); the first match holds it.
            matched = [gate for match, gate in self._gates if match(name, key, kwargs)]
            if not matched:
                return await method(key, *args, **kwargs)
            gate = matched[0]

            async def in_storage(gate: Gate = gate) -> Any:
                await gate.go.wait()
                return await method(key, *args, **kwargs)

            sent = asyncio.ensure_future(in_storage())
            gate.started.set()
            return await asyncio.shield(sent)

        return call
