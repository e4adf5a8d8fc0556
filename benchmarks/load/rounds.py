"""The interleaved rounds: each subject (middleware off, on memory, on Redis) in turn, round after round.

In each round a subject's server gets all the sockets opened (connect rate,
Redis cost and memory per connection, process memory per socket), a window of
echoes as fast as the sockets go (throughput, CPU and Redis cost per echo), a
window at a fixed offered load of half what the middleware-off server sustained
in the same round (latency, and the Redis cost per echo when fewer frames share
a round trip), and the sockets closed again. The Redis cost is read as script
calls, commands, round trips, socket reads and Redis CPU (`meter`). These servers run
with the default lease (60 s), so a turn ends before the first heartbeat is due
(20 s after a socket opened; a longer turn is noted). Then a fourth server, on
the same Redis with a short lease (and the backend timeout `IDLE_TIMEOUT_MS`, the
library's default), holds the sockets through two idle windows
(all sockets, then half): what heartbeats cost, recorded as Redis figures, after
a window with nothing open (Redis's own CPU at rest, for comparison).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Final

import redis

from ratelimit_core.policies.leases import DEFAULT_LEASE_MS

from .app_process import AppProcess
from .clients import ClientPool
from .meter import Meter, Reading, redis_costs
from .plan import SLOTS_PER_SOCKET, LoadScale, sockets
from .redis_stats import RedisSnapshot, RedisWindow

__all__ = ["Metrics", "run_rounds"]

_SETTLE_S: Final = 0.5
"""Pause after opening or closing sockets, so that the server's own clean-up is not in the next window."""
_QUIET_S: Final = 0.3
_QUIET_MAX_S: Final = 30.0
"""After closing sockets, wait (at most this long) until the server has let go of them and Redis has seen no
command for `_QUIET_S`: a loaded server releases a close storm's slots well after its clients saw the
sockets close (at 2,000 sockets the releases otherwise fell into the next window)."""
_OPEN_TIMEOUT_S: Final = 10.0
"""Bound on one socket's opening (connect and welcome)."""

Metrics = dict[str, list[float]]
"""Metric name -> its value in each round."""


@dataclass
class _Subject:
    name: str
    app: AppProcess
    metrics: Metrics = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    commands: dict[str, dict[str, int]] = field(default_factory=dict)
    """Redis commands by name in each stretch of the first round (``connect``, ``echoes``, ...)."""

    def commands_of(self, stretch: str, window: RedisWindow) -> None:
        self.commands.setdefault(stretch, window.by_command)

    def record(self, metric: str, value: float) -> None:
        self.metrics.setdefault(metric, []).append(value)

    def record_redis(self, reading: Reading, units: float, per: str) -> None:
        """`reading`'s Redis cost per unit as ``Redis <cost> per <per>`` (commands, round trips, CPU, ...)."""
        for cost, value in redis_costs(reading, units).items():
            self.record(f"{cost} per {per}", value)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class _Round:
    """One subject's turn in one round."""

    def __init__(self, subject: _Subject, clients: ClientPool, client: redis.Redis, scale: LoadScale) -> None:
        self.subject, self.clients, self.client, self.scale = subject, clients, client, scale
        self.base = subject.app.ws_base()
        self.before = RedisSnapshot.take(client)
        """Redis before this turn opened anything: its memory afterwards is what the sockets hold."""
        self.closed = 0
        self.close_readings: list[Reading] = []

    def open(self) -> tuple[int, list[dict[str, Any]]]:
        """Open every socket; how many were admitted, and each worker's answer."""
        everyone = sockets(self.scale.sockets)
        per_worker = max(1, self.scale.connect_concurrency // self.clients.size)
        shares = [
            {"base": self.base, "sockets": share, "concurrency": per_worker, "timeout_s": _OPEN_TIMEOUT_S}
            for share in self.clients.share(everyone)
        ]
        answers = self.clients.call("open", shares, wait_s=len(everyone) * _OPEN_TIMEOUT_S)
        admitted = int(sum(a["admitted"] for a in answers))
        if admitted < len(everyone):
            outcomes: dict[str, int] = {}
            for answer in answers:
                for code, count in answer["codes"].items():
                    outcomes[code] = outcomes.get(code, 0) + count
            self.subject.notes.append(f"{self.subject.name}: {admitted} of {len(everyone)} admitted, {outcomes}")
        if admitted == 0:
            raise RuntimeError(
                f"no socket of {len(everyone)} was admitted by {self.subject.app!r}:\n{self.subject.app.log()}"
            )
        return admitted, answers

    def connect(self, first_round: bool) -> int:
        rss = self.subject.app.rss_bytes()
        meter = Meter(self.subject.app, self.client)
        admitted, answers = self.open()
        reading = meter.read()
        window = reading.redis
        self.subject.commands_of("connect", window)
        record = self.subject.record
        record("connect rate", admitted / max(a["seconds"] for a in answers))
        record("degraded admissions", sum(a["degraded"] for a in answers))
        record("server CPU per connect", reading.server_cpu_s / admitted * 1e6)
        self.subject.record_redis(reading, admitted, "connect")
        record("Redis memory per socket", window.memory / admitted)
        record("Redis memory per slot", window.memory / admitted / SLOTS_PER_SOCKET)
        time.sleep(_SETTLE_S)
        if first_round:  # later rounds reuse memory the allocator kept from the first
            record("server memory per socket", (self.subject.app.rss_bytes() - rss) / admitted)
        return admitted

    def saturate(self) -> float:
        meter = Meter(self.subject.app, self.client)
        answers = self.clients.call_all("saturate", self.scale.window_s + 60, duration_s=self.scale.window_s)
        reading = meter.read()
        echoes = int(sum(a["echoes"] for a in answers))
        if echoes == 0:
            raise RuntimeError(
                f"no echo in {self.scale.window_s} s from {self.subject.app!r}:\n{self.subject.app.log()}"
            )
        throughput: float = echoes / self.scale.window_s
        self.subject.record("echo throughput at saturation", throughput)
        self.subject.record("server CPU per echo", reading.server_cpu_s / echoes * 1e6)
        self.subject.commands_of("echoes at saturation", reading.redis)
        # Per frame sent, the last ones (echoed after the window closed) included.
        self.subject.record_redis(reading, sum(a["frames"] for a in answers), "echo")
        held = RedisSnapshot.take(self.client).used_memory - self.before.used_memory
        self.subject.record("Redis memory per socket, message bucket included", held / sum(self._held()))
        return throughput

    def _held(self) -> list[int]:
        return [answer["held"] for answer in self.clients.call_all("count", 30)]

    def paced(self, rate: float) -> None:
        share = rate / self.clients.size
        meter = Meter(self.subject.app, self.client)
        answers = self.clients.call_all("paced", self.scale.window_s + 60, rate=share, duration_s=self.scale.window_s)
        reading = meter.read()
        latencies = [value for answer in answers for value in answer["latencies_ms"]]
        if not latencies:
            raise RuntimeError(f"no echo at {rate:.0f}/s from {self.subject.app!r}:\n{self.subject.app.log()}")
        self.subject.record("offered load", rate)
        self.subject.record("p50 latency at the offered load", _percentile(latencies, 0.5))
        self.subject.record("p99 latency at the offered load", _percentile(latencies, 0.99))
        self.subject.record("echoes lost at the offered load", sum(a["sent"] for a in answers) - len(latencies))
        self.subject.record_redis(reading, sum(a["sent"] for a in answers), "echo at the offered load")

    def rest(self) -> None:
        """Redis's own CPU with nothing open on this server (its cron, the clients' idle connections)."""
        meter = Meter(self.subject.app, self.client)
        time.sleep(self.scale.idle_window_s / 2)
        reading = meter.read()
        self.subject.record("Redis CPU per s at rest", reading.redis.cpu_s / reading.wall_s * 1e6)
        if reading.redis.main_thread_cpu_s is not None:
            self.subject.record(
                "Redis main-thread CPU per s at rest", reading.redis.main_thread_cpu_s / reading.wall_s * 1e6
            )

    def idle(self, open_sockets: int, label: str) -> None:
        """Nothing but heartbeats for a window: what each open socket costs Redis and the server."""
        meter = Meter(self.subject.app, self.client)
        time.sleep(self.scale.idle_window_s)
        reading = meter.read()
        window, wall = reading.redis, reading.wall_s
        intervals = wall / (self.scale.heartbeat_ms / 1000)
        slots = open_sockets * SLOTS_PER_SOCKET
        self.subject.commands_of(f"idle, {label}", window)
        record = self.subject.record
        record(f"idle heartbeats per interval ({label})", reading.heartbeats / intervals)
        # Per heartbeat the process made (its keeper's count): a window holds 3 or 4 of them, jittered.
        beats = max(1, reading.heartbeats)
        record(f"idle Redis script calls per slot per heartbeat ({label})", reading.script_calls / slots / beats)
        record(f"idle Redis round trips per process per heartbeat ({label})", reading.round_trips / beats)
        record(f"idle Redis commands per process per heartbeat ({label})", window.commands / beats)
        record(f"idle Redis socket reads per process per heartbeat ({label})", window.reads / beats)
        record(f"idle Redis commands per socket per s ({label})", window.commands / open_sockets / wall)
        record(f"idle Redis bytes in per socket per s ({label})", window.bytes_in / open_sockets / wall)
        # How long a heartbeat's bundles hold the server, next to the backend timeout a call waits at most.
        record(f"idle Redis time in commands per process per heartbeat ({label})", window.command_s / beats * 1e6)
        if window.by_command.get("ping"):
            self.subject.notes.append(
                f"idle, {label}: {window.by_command['ping']} PING(s), the fallback's probe: a heartbeat timed out"
            )
        record(f"idle server CPU per socket per s ({label})", reading.server_cpu_s / open_sockets / wall * 1e6)
        cpus = {"Redis CPU": window.cpu_s, "Redis main-thread CPU": window.main_thread_cpu_s}
        for name, cpu_s in cpus.items():
            if cpu_s is not None:
                self._idle_cpu(name, cpu_s, open_sockets * max(1, reading.heartbeats), reading=reading, label=label)

    def _idle_cpu(self, name: str, cpu_s: float, socket_heartbeats: float, *, reading: Reading, label: str) -> None:
        """`name` per s of the window, and per socket per heartbeat.

        Redis's own work is left in: it is small next to heartbeats, and not steady enough to take out (at
        rest it spent 1 to 8 ms a second in these windows, more while it rehashed after a turn freed keys).
        """
        record = self.subject.record
        record(f"idle {name} per s ({label})", cpu_s / reading.wall_s * 1e6)
        record(f"idle {name} per socket per heartbeat ({label})", cpu_s / socket_heartbeats * 1e6)

    def close(self, indices: list[int] | None) -> None:
        meter = Meter(self.subject.app, self.client)
        answers = self.clients.call_all("close", 60, indices=indices, timeout_s=50)
        time.sleep(_SETTLE_S)
        self._until_released(still_open=sum(self._held()))
        reading = meter.read()
        self.subject.commands_of("close", reading.redis)
        self.closed += sum(answer["closed"] for answer in answers)
        self.close_readings.append(reading)

    def _until_released(self, still_open: int) -> None:
        """Wait until the server holds no more than `still_open` connections' leases (it forgets one as its
        release starts), then until Redis's command count holds still for `_QUIET_S` (each look an INFO)."""
        deadline = time.monotonic() + _QUIET_MAX_S
        while self.subject.app.backend_stats()["held"] > still_open and time.monotonic() < deadline:
            time.sleep(_QUIET_S)
        seen = RedisSnapshot.take(self.client).commands
        while time.monotonic() < deadline:
            time.sleep(_QUIET_S)
            now = RedisSnapshot.take(self.client).commands
            if now == seen:
                return
            seen = now
        self.subject.notes.append(f"{self.subject.name}: still releasing {_QUIET_MAX_S:g} s after a close")

    def record_disconnects(self) -> None:
        if not self.closed:
            return
        readings = self.close_readings
        total = Reading(
            server_cpu_s=sum(r.server_cpu_s for r in readings),
            redis=RedisWindow.total(r.redis for r in readings),
            round_trips=sum(r.round_trips for r in readings),
            script_calls=sum(r.script_calls for r in readings),
            heartbeats=sum(r.heartbeats for r in readings),
            wall_s=sum(r.wall_s for r in readings),
        )
        self.subject.record("server CPU per disconnect", total.server_cpu_s / self.closed * 1e6)
        self.subject.record_redis(total, self.closed, "disconnect")


def _turn(
    subject: _Subject, clients: ClientPool, client: redis.Redis, scale: LoadScale, *, rate: float | None, first: bool
) -> float:
    """One subject's turn; `rate` is the offered load (None: half its own throughput, for the off subject)."""
    turn = _Round(subject, clients, client, scale)
    started = time.perf_counter()
    try:
        turn.connect(first)
        throughput = turn.saturate()
        turn.paced(throughput / 2 if rate is None else rate)
    finally:
        turn.close(None)
    turn.record_disconnects()
    took = time.perf_counter() - started
    if took > DEFAULT_LEASE_MS / 3000:
        subject.notes.append(f"{subject.name}: a turn took {took:.0f} s, so its figures include lease heartbeats")
    return throughput


def _idle_turn(app: AppProcess, into: _Subject, clients: ClientPool, client: redis.Redis, scale: LoadScale) -> None:
    """The idle windows, on the short-lease server; recorded as figures of `into` (the Redis subject)."""
    turn = _Round(_Subject(into.name, app, into.metrics, into.notes, into.commands), clients, client, scale)
    turn.rest()
    try:
        admitted, _ = turn.open()
        time.sleep(_SETTLE_S)
        turn.idle(admitted, "all sockets")
        turn.close(list(range(0, scale.sockets, 2)))
        turn.idle(admitted - admitted // 2, "half the sockets")
    finally:
        turn.close(None)


def run_rounds(
    apps: dict[str, AppProcess], idle: AppProcess, clients: ClientPool, redis_url: str, scale: LoadScale
) -> tuple[dict[str, Metrics], list[str], dict[str, dict[str, int]]]:
    """Every subject in turn, then the idle windows on `idle`, `scale.rounds` times; metrics by round, and notes."""
    subjects = {name: _Subject(name, app) for name, app in apps.items()}
    with redis.Redis.from_url(redis_url) as client:
        for n in range(scale.rounds):
            rate: float | None = None  # the off subject goes first and sets it for the round
            for name, subject in subjects.items():
                throughput = _turn(subject, clients, client, scale, rate=rate, first=n == 0)
                if name == "off":
                    rate = throughput / 2
            _idle_turn(idle, subjects["redis"], clients, client, scale)
    notes = [note for subject in subjects.values() for note in subject.notes]
    return {name: subject.metrics for name, subject in subjects.items()}, notes, subjects["redis"].commands


def medians(metrics: dict[str, Metrics]) -> dict[str, dict[str, Any]]:
    """Each subject's metrics as ``{"value": median, "runs": [...]}``."""
    return {
        subject: {name: {"value": statistics.median(runs), "runs": runs} for name, runs in found.items()}
        for subject, found in metrics.items()
    }
