"""`Meter`: what one stretch of a round cost the app server and Redis, and that cost per unit of work.

A stretch's Redis cost is read three ways, because since the driver bundles the
calls of a round trip (up to 256 to one ``EVALSHA``) they no longer agree: the
round trips and script calls the app's own backends counted (its ``/stats``), the
commands and socket reads Redis counted, and the CPU Redis spent (all threads,
and the main thread, which runs every command, where Redis reports it), next to
the wall-clock time Redis spent inside the commands (``commandstats``: how long
they held the server).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from .app_process import AppProcess
from .redis_stats import RedisSnapshot, RedisWindow

__all__ = ["Meter", "Reading", "redis_costs"]


@dataclass(frozen=True, slots=True)
class Reading:
    server_cpu_s: float
    """The app server's CPU seconds."""
    redis: RedisWindow
    round_trips: int
    """Round trips the app's Redis backends made (their coalescers' count)."""
    script_calls: int
    """Script calls the app's Redis backends sent (one per primitive: a bucket, a slot, ...)."""
    heartbeats: int
    """Heartbeats the app's lease keepers made (each refreshes every slot the process holds)."""
    wall_s: float


class Meter:
    """Made at the start of a stretch; `read` at its end."""

    def __init__(self, app: AppProcess, client: redis.Redis) -> None:
        self._app, self._client = app, client
        self._cpu = app.cpu_s()
        self._stats = app.backend_stats()
        self._redis = RedisSnapshot.take(client)
        self._wall = time.perf_counter()

    def read(self) -> Reading:
        cpu = self._app.cpu_s() - self._cpu
        window = RedisWindow.between(self._redis, RedisSnapshot.take(self._client))
        stats = self._app.backend_stats()
        return Reading(
            server_cpu_s=cpu,
            redis=window,
            round_trips=stats["round_trips"] - self._stats["round_trips"],
            script_calls=stats["calls"] - self._stats["calls"],
            heartbeats=stats["heartbeats"] - self._stats["heartbeats"],
            wall_s=time.perf_counter() - self._wall,
        )


def redis_costs(reading: Reading, units: float) -> dict[str, float]:
    """``{"Redis commands": ..., "Redis CPU": µs, ...}``: `reading`'s Redis cost per unit of work (a frame, ...)."""
    if units <= 0:
        return {}
    window = reading.redis
    found = {
        "Redis script calls": reading.script_calls / units,
        "Redis commands": window.commands / units,
        "Redis round trips": reading.round_trips / units,
        "Redis socket reads": window.reads / units,
        "Redis CPU": window.cpu_s / units * 1e6,
        "Redis time in commands": window.command_s / units * 1e6,
    }
    if window.main_thread_cpu_s is not None:
        found["Redis main-thread CPU"] = window.main_thread_cpu_s / units * 1e6
    return found
