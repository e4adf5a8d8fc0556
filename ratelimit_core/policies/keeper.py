"""`LeaseKeeper`: one heartbeat for every live connection of a process, instead of one per connection.

The keeper holds the `Leases` of live connections and, once per interval, refreshes
them all at once: every write of every lease goes in one `add_many` call (see
`refresh_together`), so a backend with `AddsMany.set_add_many` (Redis, memory, and
`FallbackBackend` over them) takes the whole heartbeat as one call, with no task per
connection or slot, and Redis gets it as one round trip at idle (or a few sent at
the same moment, when the writes exceed what one round trip carries). Each
interval is shortened by a random part of up to `jitter` of it, so that the
processes of a deployment, started together, do not refresh together; an
interval is never longer than `interval_ms`, so a lease is refreshed at least
that often.

One task runs while the keeper holds a lease and ends when it holds none (no
timer runs for an idle process). A failing refresh is logged and retried at the
next tick: nothing a refresh raises ends the task. `Leases` keeps its own
guarantees (a refresh never brings a released slot back; a release waits for the
refresh in flight). `release_all` gives every held slot back at once (a server
shutting down), `aclose` stops the task.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from ..arguments import check_count
from ..errors import BackendError, InvalidArgument
from .leases import Leases, refresh_together

__all__ = ["DEFAULT_JITTER", "LeaseKeeper"]

logger = logging.getLogger(__name__)

DEFAULT_JITTER = 0.1
"""The largest part of an interval taken off at random."""


class LeaseKeeper:
    """Refreshes the `Leases` it holds every `interval_ms` (less up to `jitter` of it, at random).

    Bound to the event loop of its first `keep` while its task runs. `rng` gives
    floats in [0, 1) (inject one to make the spread reproducible).
    """

    __slots__ = ("_held", "_interval_s", "_jitter", "_refreshing", "_rng", "_task", "refreshes", "refreshes_started")

    def __init__(
        self, interval_ms: int, *, jitter: float = DEFAULT_JITTER, rng: Callable[[], float] = random.random
    ) -> None:
        self._interval_s = check_count("interval_ms", interval_ms) / 1000
        if not 0 <= jitter < 1:
            raise InvalidArgument(f"jitter must be at least 0 and below 1 (a part of the interval), got {jitter!r}")
        self._jitter = jitter
        self._rng = rng
        self._held: dict[Leases, None] = {}
        """Insertion-ordered set of the leases kept alive."""
        self._task: asyncio.Task[None] | None = None
        self._refreshing: asyncio.Future[list[bool | BaseException]] | None = None
        """The last refresh's writes, which go on when the task is stopped (`aclose` waits for them)."""
        self.refreshes = 0
        """Refreshes of the held leases completed, failed or not (for diagnostics and tests)."""
        self.refreshes_started = 0
        """Refreshes begun: one more than `refreshes` while one is in flight (a count of heartbeats that
        agrees with the backend's count of round trips at any moment, which `refreshes` lags)."""

    def __repr__(self) -> str:
        running = self._task is not None and not self._task.done()
        return f"LeaseKeeper(interval={self._interval_s * 1000:g} ms, held={len(self._held)}, running={running})"

    @property
    def interval_ms(self) -> int:
        """The longest time between two refreshes, in milliseconds (each is shortened by up to `jitter`)."""
        return round(self._interval_s * 1000)

    def __len__(self) -> int:
        """Leases held now."""
        return len(self._held)

    def keep(self, leases: Leases) -> None:
        """Refresh `leases` at every tick from now on, until it is released or `forget` is called.

        Leases without slots are not held (there is nothing to refresh). Call from a
        running event loop: the keeper's task starts there if it is not running.
        """
        if not leases.slots or leases.released:
            return
        self._held[leases] = None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ratelimit lease keeper")

    def forget(self, leases: Leases) -> None:
        """Stop refreshing `leases`; the task stops with the last lease.

        A refresh already in flight still finishes, and a release waits for it (see `Leases`).
        """
        self._held.pop(leases, None)
        if not self._held:
            self._stop()

    def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()  # the writes of a refresh in flight go on (each `Leases.refresh` is shielded)

    async def _run(self) -> None:
        # Ticks are spaced from start to start, so a refresh that takes long (thousands of slots
        # on a loaded machine) does not stretch the period; one that overruns is followed at once.
        loop = asyncio.get_running_loop()
        due = loop.time()
        while self._held:
            due = max(due, loop.time() - self._interval_s) + self._interval_s * (1 - self._jitter * self._rng())
            await asyncio.sleep(max(0.0, due - loop.time()))
            await self.refresh_now()
        if self._task is asyncio.current_task():
            self._task = None  # nothing held: the next `keep` starts a new task

    async def refresh_now(self) -> None:
        """Refresh every held lease at once; drop the released ones. Never raises (failures are logged)."""
        held = list(self._held)
        if not held:
            return
        self.refreshes_started += 1
        self._refreshing = refreshing = asyncio.ensure_future(refresh_together(held))
        try:
            outcomes = await asyncio.shield(refreshing)
        except Exception as exc:
            outcomes = [exc] * len(held)
        self.refreshes += 1
        failures: list[BackendError] = []
        for leases, outcome in zip(held, outcomes, strict=True):
            if outcome is False:
                self._held.pop(leases, None)  # released meanwhile
            elif isinstance(outcome, BackendError):
                failures.append(outcome)
            elif isinstance(outcome, BaseException):
                # A bug below, not an outage: the keeper must outlive it, or the live slots would expire.
                logger.error("could not refresh connection leases (retrying at the next heartbeat)", exc_info=outcome)
        if failures:
            logger.warning(
                "could not refresh the leases of %d connection(s) (retrying at the next heartbeat): %s",
                len(failures),
                failures[0],
            )

    async def release_all(self, timeout_s: float | None = None) -> int:
        """Release every held lease at once and stop holding them; how many were still unreleased after `timeout_s`.

        The removals go on after the timeout (see `Leases.release`); cancelling the
        caller does not stop them either.
        """
        held, self._held = list(self._held), {}
        self._stop()
        if not held:
            return 0
        removals = [asyncio.ensure_future(leases.release()) for leases in held]
        _, pending = await asyncio.wait(removals, timeout=timeout_s)
        return len(pending)

    async def aclose(self) -> None:
        """Stop the task and forget every lease (not released: their slots expire with their leases).

        Returns once the writes of a refresh in flight have ended too.
        """
        self._held.clear()
        task = self._task
        self._stop()
        pending = [each for each in (task, self._refreshing) if each is not None and not each.done()]
        if pending:
            await asyncio.wait(pending)
