"""`FallbackBackend`'s recovery: what replaying N held connection slots onto Redis costs.

Each run holds N slots through a `FallbackBackend` over a real `RedisBackend`,
shaped as the Channels adapter takes them (3 per socket: ``conn:id:<user>``,
``conn:addr:<ip>``, ``room:<room>``, 60 s leases). Then the primary goes away
(it refuses every call with `BackendUnavailable`, keeping its data), a tenth of
the sockets leave and as many new ones arrive, and the primary comes back. The
figures are the process's CPU time, the wall time and the Redis round trips
from the call that finds a probe due until `degraded` is False and nothing the
recovery started is still running; then Redis must hold exactly the slots still
held. Only the public API is used, so the figures measure whatever
`FallbackBackend` does today.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from ratelimit_core import BackendUnavailable, FallbackBackend, ManualClock, RedisBackend
from ratelimit_core.backend import BucketResult, CounterResult, SetResult
from ratelimit_core.redis.batch import RedisBatch

from .measure import Figure, cpu_clock, wall_clock
from .scales import Scale

__all__ = ["CPU", "ROUND_TRIPS", "WALL", "WRONG", "recovery_figures", "slots_of"]

SLOTS = {"full": (1_000, 4_000, 10_000), "quick": (1_000, 10_000), "smoke": (30,)}
"""Held slots per case, by mode. The issue's figure is 10,000."""
_RUNS = {"full": 3, "quick": 1, "smoke": 1}
"""Runs per case, by mode (fewer than the other sections': each run holds every slot anew)."""

CPU = "FallbackBackend recovery, CPU"
WALL = "FallbackBackend recovery, wall"
ROUND_TRIPS = "FallbackBackend recovery, round trips"
WRONG = "slots wrong in Redis after recovery"

_LEASE_MS = 60_000
_COOLDOWN_MS = 1_000
# Generous: the figure is the replay's cost, not the breaker's patience with a busy machine.
_TIMEOUT_MS = 10_000
_CHURN = 10
"""One socket in this many leaves during the outage, and as many new ones arrive."""
_CONNECTING = 100
"""Sockets connecting at once while the slots are taken (the RedisBackend coalesces them)."""
_PROBES = 5
_RECOVERY_LIMIT_S = 120.0
_CAPACITY = {"conn:id:": 5, "conn:addr:": 10, "room:": 50}
"""Per user 2 sockets, per IP 4, per room 20: every slot the benchmark asks for is granted."""


class _SwitchableRedis(RedisBackend):
    """A `RedisBackend` that raises `BackendUnavailable` while `down` is set: an outage that keeps the data.

    A subclass rather than a wrapper, so that a `FallbackBackend` sees a `RedisBackend`
    (its `batch` and `coalescer` included) and replays onto it as onto any other.
    """

    down = False

    def _answer(self) -> None:
        if self.down:
            raise BackendUnavailable("the benchmark switched the primary off")

    async def counter_incr(
        self, key: str, amount: int = 1, *, limit: int | None = None, window_ms: int | None = None
    ) -> CounterResult:
        self._answer()
        return await super().counter_incr(key, amount, limit=limit, window_ms=window_ms)

    async def counter_decr(self, key: str, amount: int = 1) -> int:
        self._answer()
        return await super().counter_decr(key, amount)

    async def counter_get(self, key: str) -> int:
        self._answer()
        return await super().counter_get(key)

    async def set_add(
        self, key: str, member: str, *, capacity: int | None = None, lease_ms: int | None = None
    ) -> SetResult:
        self._answer()
        return await super().set_add(key, member, capacity=capacity, lease_ms=lease_ms)

    async def set_remove(self, key: str, member: str) -> int:
        self._answer()
        return await super().set_remove(key, member)

    async def set_size(self, key: str) -> int:
        self._answer()
        return await super().set_size(key)

    async def set_members(self, key: str) -> frozenset[str]:
        self._answer()
        return await super().set_members(key)

    async def bucket_consume(self, key: str, *, rate: float, burst: int, cost: int = 1) -> BucketResult:
        self._answer()
        return await super().bucket_consume(key, rate=rate, burst=burst, cost=cost)

    async def bucket_peek(self, key: str, *, rate: float, burst: int, cost: int = 1) -> BucketResult:
        self._answer()
        return await super().bucket_peek(key, rate=rate, burst=burst, cost=cost)

    async def bucket_reset(self, key: str) -> None:
        self._answer()
        await super().bucket_reset(key)

    async def ping(self) -> None:
        self._answer()
        await super().ping()

    def batch(self) -> RedisBatch:
        self._answer()
        return super().batch()


def _socket_keys(socket: int) -> tuple[str, str, str]:
    ip = socket // 4
    return f"conn:id:user{socket // 2}", f"conn:addr:10.0.{ip // 256}.{ip % 256}", f"room:r{socket // 20}"


def _capacity(key: str) -> int:
    return next(capacity for prefix, capacity in _CAPACITY.items() if key.startswith(prefix))


def slots_of(label: str) -> int:
    """The held slots of a figure's ``keys`` label (``"30"``, ``"1k"``, ``"10k"``)."""
    return int(label[:-1]) * 1_000 if label.endswith("k") else int(label)


def _label(slots: int) -> str:
    return f"{slots // 1_000}k" if slots % 1_000 == 0 else str(slots)


class _Sockets:
    """What the benchmark holds: key -> members, kept as the sockets connect and leave."""

    def __init__(self, backend: FallbackBackend) -> None:
        self.backend = backend
        self.held: dict[str, set[str]] = {}

    async def connect(self, socket: int) -> None:
        member = f"socket-{socket:06d}"
        for key in _socket_keys(socket):
            result = await self.backend.set_add(key, member, capacity=_capacity(key), lease_ms=_LEASE_MS)
            if result.added:
                self.held.setdefault(key, set()).add(member)

    async def leave(self, socket: int) -> None:
        member = f"socket-{socket:06d}"
        for key in _socket_keys(socket):
            await self.backend.set_remove(key, member)
            self.held.get(key, set()).discard(member)

    async def connect_all(self, sockets: Iterable[int]) -> None:
        batch = list(sockets)
        for start in range(0, len(batch), _CONNECTING):
            await asyncio.gather(*(self.connect(s) for s in batch[start : start + _CONNECTING]))

    def slots(self) -> int:
        return sum(len(members) for members in self.held.values())


def _others() -> set[asyncio.Task[object]]:
    """The tasks other than this one still running (ones the recovery started, say)."""
    current = asyncio.current_task()
    return {task for task in asyncio.all_tasks() if task is not current and not task.done()}


async def _recover(backend: FallbackBackend, clock: ManualClock, probe_key: str) -> None:
    """Make a probe due, make a call, and wait for the tasks it started; again if it did not recover."""
    deadline = wall_clock() + _RECOVERY_LIMIT_S
    for _ in range(_PROBES):
        clock.advance(_COOLDOWN_MS + 1)
        await backend.set_size(probe_key)
        await asyncio.sleep(0)  # a task the call started gets its first step
        while (running := _others()) and wall_clock() < deadline:
            await asyncio.wait(running, timeout=deadline - wall_clock())
        if not backend.degraded and not _others():
            return
    raise RuntimeError(
        f"FallbackBackend did not recover within {_PROBES} due probes or {_RECOVERY_LIMIT_S:.0f} s"
        f" (degraded={backend.degraded}, other tasks still running: {len(_others())})"
    )


@dataclass(frozen=True, slots=True)
class _Run:
    cpu_ms: float
    wall_ms: float
    round_trips: int
    wrong: int
    slots: int
    sockets: int
    churn: int


async def _wrong_slots(primary: RedisBackend, held: dict[str, set[str]]) -> int:
    """Members Redis lacks or holds too many, over every key the benchmark touched."""
    keys = list(held)
    found = []
    for start in range(0, len(keys), _CONNECTING):
        found += await asyncio.gather(*(primary.set_members(key) for key in keys[start : start + _CONNECTING]))
    return sum(len(members ^ held[key]) for key, members in zip(keys, found, strict=True))


async def _run_once(url: str, slots: int, run: int) -> _Run:
    sockets = -(-slots // 3)
    churn = max(1, sockets // _CHURN)
    clock = ManualClock(0)
    # A prefix of its own per run, on a private server: nothing to clear before or after.
    primary = _SwitchableRedis.from_url(url, prefix=f"bench:recovery:{slots}:{run}:")
    backend = FallbackBackend(primary, timeout_ms=_TIMEOUT_MS, cooldown_ms=_COOLDOWN_MS, clock=clock)
    try:
        model = _Sockets(backend)
        await model.connect_all(range(sockets))
        primary.down = True
        for socket in range(0, sockets, _CHURN)[:churn]:
            await model.leave(socket)
        await model.connect_all(range(sockets, sockets + churn))
        if not backend.degraded:
            raise RuntimeError("FallbackBackend did not notice the outage")
        primary.down = False
        gc.collect()
        trips, cpu, wall = primary.coalescer.round_trips, cpu_clock(), wall_clock()
        await _recover(backend, clock, _socket_keys(1)[0])
        cpu, wall = cpu_clock() - cpu, wall_clock() - wall
        trips = primary.coalescer.round_trips - trips
        wrong = await _wrong_slots(primary, model.held)
        return _Run(cpu * 1_000, wall * 1_000, trips, wrong, model.slots(), sockets, churn)
    finally:
        await backend.aclose()


async def _runs(url: str, slots: int, runs: int) -> list[_Run]:
    # Every run plays an outage on purpose: the breaker's WARNING about it is expected, not news.
    breaker_log = logging.getLogger("ratelimit_core.fallback")
    level = breaker_log.level
    breaker_log.setLevel(logging.ERROR)
    try:
        return [await _run_once(url, slots, run) for run in range(runs)]
    finally:
        breaker_log.setLevel(level)


async def recovery_figures(url: str, scale: Scale, notes: list[str]) -> list[Figure]:
    """Recovery of each mode's slot counts against the private server at `url`, the median of its runs."""
    figures = []
    for slots in SLOTS[scale.name]:
        runs = await _runs(url, slots, _RUNS[scale.name])
        first, label = runs[0], _label(slots)
        note = (
            f"{first.slots:,} slots held ({first.sockets:,} sockets x 3, 60 s leases);"
            f" {first.churn:,} sockets left and {first.churn:,} came during the outage; median of {len(runs)}"
        )
        for subject, unit, values in (
            (CPU, "ms", [r.cpu_ms for r in runs]),
            (WALL, "ms", [r.wall_ms for r in runs]),
            (ROUND_TRIPS, "trips", [float(r.round_trips) for r in runs]),
        ):
            figures.append(
                Figure(
                    "recovery",
                    subject,
                    label,
                    value=statistics.median(values),
                    unit=unit,
                    runs=tuple(values),
                    note=note if subject == CPU else "",
                )
            )
        wrong = tuple(float(r.wrong) for r in runs)
        worst = max(wrong)
        figures.append(Figure("recovery", WRONG, label, value=worst, unit="slots", runs=wrong, note="worst run"))
        if worst:
            notes.append(f"recovery: after recovering {slots:,} slots, Redis was wrong about {worst:,} of them")
    notes.append("recovery round trips count script calls' pipelines (the probe's PING is not counted)")
    return figures
