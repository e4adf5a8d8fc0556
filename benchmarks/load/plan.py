"""How big a load run is (`LoadScale`), who connects where (`sockets`), and the limits the servers enforce."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from .client_worker import Socket

__all__ = [
    "IDLE_TIMEOUT_MS",
    "LIMITS",
    "SCALES",
    "SERVER_GC",
    "SERVER_GC_VARIABLE",
    "SOCKETS_PER_ROOM",
    "SOCKETS_PER_USER",
    "SUBJECTS",
    "LoadScale",
    "sockets",
]

SUBJECTS: Final = ("off", "memory", "redis")
"""The middleware off, on ``memory://``, and on the default stack (a Redis URL, the fallback on)."""
SOCKETS_PER_USER: Final = 2
SOCKETS_PER_ROOM: Final = 10
SLOTS_PER_SOCKET: Final = 3
"""A socket holds a user slot, an IP slot and a room place."""
IDLE_TIMEOUT_MS: Final = 50
"""``WS_RATE_BACKEND_TIMEOUT_MS`` of the idle windows' server (``--idle-timeout-ms``): the library's default. A
heartbeat is one call of every slot the process holds (3,000 at 1,000 sockets), answered bundle by bundle; each
bundle's reply shows the fallback that Redis is alive, so a heartbeat longer than the timeout is no outage."""

SERVER_GC: Final = ("default", "frozen")
"""``--server-gc``: the app servers' garbage collector as Python sets it, or frozen after start-up with a
first-generation threshold of 50,000 allocations (fewer, shorter full collections of a heap of thousands of
sockets: what a long-lived server can do for its tail latency)."""
SERVER_GC_VARIABLE: Final = "RATELIMIT_LOAD_GC"
"""The environment variable that carries ``--server-gc`` to the app servers (see `echo_app`)."""

LIMITS: Final[dict[str, object]] = {
    # Every user sits at its limit (2 sockets), so that a stale slot after a restart shows as a refusal.
    "WS_RATE_CONN_PER_USER": SOCKETS_PER_USER,
    # Every client is 127.0.0.1: the IP limit is counted (one slot per socket) but never reached.
    "WS_RATE_CONN_PER_IP": 10**7,
    "WS_RATE_ROOM_MAX_MEMBERS": 1_000,
    # Counted for every frame (one bucket per socket) but never reached.
    "WS_RATE_MSG_RPS": 10**6,
    "WS_RATE_MSG_BURST": 10**6,
    "WS_MAX_PAYLOAD_BYTES": 65_536,
}


@dataclass(frozen=True, slots=True)
class LoadScale:
    name: str
    sockets: int
    rounds: int
    """Rounds of every subject in turn; each figure is the median of its rounds."""
    window_s: float
    """Length of the throughput and the latency windows."""
    lease_ms: int
    """The lease of the idle windows' server; heartbeats come every third of it, so a window spans several."""
    idle_window_s: float
    connect_concurrency: int
    """Sockets opening at once, over all client workers."""
    restart_users: int
    """Users (2 sockets each) on the process that is stopped or killed."""
    crash_users: int
    """Users (2 sockets each) on the process that is killed; each retries every `retry_s` until admitted."""
    crash_lease_ms: int
    retry_s: float
    """A locked-out client's retry interval (jittered 0.5x to 1.5x): the lockout is measured to within 1.5x this."""
    clients: int = 2
    """Client worker processes."""

    @property
    def heartbeat_ms(self) -> int:
        return max(1, self.lease_ms // 3)

    def with_sockets(self, sockets: int) -> LoadScale:
        if sockets < 2 * SOCKETS_PER_ROOM:
            raise ValueError(f"--sockets must be at least {2 * SOCKETS_PER_ROOM}, got {sockets}")
        return replace(self, sockets=sockets)


SCALES: Final = {
    "full": LoadScale(
        "full", sockets=1_000, rounds=3, window_s=5.0, lease_ms=6_000, idle_window_s=6.0,
        connect_concurrency=50, restart_users=200, crash_users=50, crash_lease_ms=5_000, retry_s=0.2,
    ),
    "quick": LoadScale(
        "quick", sockets=50, rounds=1, window_s=1.5, lease_ms=3_000, idle_window_s=2.0,
        connect_concurrency=10, restart_users=10, crash_users=10, crash_lease_ms=2_000, retry_s=0.2,
    ),
}  # fmt: skip


def sockets(count: int, *, first: int = 0) -> list[Socket]:
    """`count` sockets: two per user, ten per room (``u<n>``, ``r<n>``), indices from `first`."""
    return [
        Socket(i, room=f"r{i // SOCKETS_PER_ROOM}", user=f"u{i // SOCKETS_PER_USER}")
        for i in range(first, first + count)
    ]
