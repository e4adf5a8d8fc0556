"""What Redis did over a window: commands, socket reads, bytes, CPU and memory, from ``INFO all``.

Commands are what clients sent (``commandstats``): every command except those
the library's scripts run inside Redis (read from ``ratelimit_core/redis/scripts``;
Redis counts those as commands of their own) and this suite's own (INFO,
FLUSHALL). Since the driver bundles the script calls of one round trip (up to
256 calls to one ``EVALSHA``), a command is no longer one script run: what a
window cost the server is its CPU, ``used_cpu_user + used_cpu_sys`` (every
thread of the process) and, where Redis reports it (6.2 and later), the same for
the main thread alone, which runs every command and is what one shard has to
spare. Each snapshot is one ``INFO all`` call; the window between two snapshots
counts the first snapshot's INFO (its command, read and request bytes, and
about one INFO's CPU: Redis reads its CPU time while it answers), which
`RedisWindow` leaves out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, Self

import redis

__all__ = ["RedisSnapshot", "RedisWindow"]

_OWN_COMMANDS: Final = frozenset({"info", "flushall"})
"""Commands this suite sends itself, left out of the counts."""


def _script_commands() -> frozenset[str]:
    """The commands the library's Lua scripts run inside Redis (``redis.call('ZADD', ...)``)."""
    scripts = resources.files("ratelimit_core.redis") / "scripts"
    found: set[str] = set()
    for script in scripts.iterdir():
        if script.name.endswith(".lua"):
            found.update(name.lower() for name in re.findall(r"redis\.p?call\(['\"](\w+)['\"]", script.read_text()))
    return frozenset(found)


_NOT_COMMANDS: Final = _OWN_COMMANDS | _script_commands()
_INFO_REQUEST_BYTES: Final = len(b"*2\r\n$4\r\nINFO\r\n$3\r\nall\r\n")


def _cpu_s(info: dict[str, Any], suffix: str = "") -> float | None:
    user, system = info.get(f"used_cpu_user{suffix}"), info.get(f"used_cpu_sys{suffix}")
    return None if user is None or system is None else float(user) + float(system)


@dataclass(frozen=True, slots=True)
class RedisSnapshot:
    commands: int
    """Commands clients sent, the suite's own and those run inside scripts left out."""
    reads: int
    """``total_reads_processed``: socket reads. A round trip is at least one, a request over 16 KB several
    (Redis reads a client's socket 16 KB at a time), and requests of several clients are never one."""
    bytes_in: int
    bytes_out: int
    used_memory: int
    cpu_s: float
    """``used_cpu_user + used_cpu_sys``: CPU seconds of every thread of the server."""
    main_thread_cpu_s: float | None
    """The same for the main thread (None before Redis 6.2)."""
    info_us: int
    """Microseconds Redis spent in INFO so far (to take the suite's own out of a window)."""
    command_us: int
    """Microseconds Redis spent running the commands counted in `commands` (``usec`` of ``commandstats``)."""
    by_command: tuple[tuple[str, int], ...]
    """(command, count) of every command counted in `commands`."""

    @classmethod
    def take(cls, client: redis.Redis) -> Self:
        info = client.info("all")
        counted = {
            name.removeprefix("cmdstat_"): value
            for name, value in info.items()
            if name.startswith("cmdstat_") and name.removeprefix("cmdstat_") not in _NOT_COMMANDS
        }
        by_command = tuple((name, int(value["calls"])) for name, value in counted.items())
        cpu = _cpu_s(info)
        if cpu is None:
            raise RuntimeError("INFO has no used_cpu_user/used_cpu_sys: the load suite needs Redis's CPU figures")
        return cls(
            by_command=by_command,
            commands=sum(count for _, count in by_command),
            reads=int(info.get("total_reads_processed", 0)),
            bytes_in=int(info["total_net_input_bytes"]),
            bytes_out=int(info["total_net_output_bytes"]),
            used_memory=int(info["used_memory"]),
            cpu_s=cpu,
            main_thread_cpu_s=_cpu_s(info, "_main_thread"),
            info_us=int(info.get("cmdstat_info", {}).get("usec", 0)),
            command_us=sum(int(value["usec"]) for value in counted.values()),
        )


@dataclass(frozen=True, slots=True)
class RedisWindow:
    """The difference between two snapshots, the suite's own INFO left out."""

    commands: int
    reads: int
    bytes_in: int
    bytes_out: int
    memory: int
    cpu_s: float
    """Server CPU seconds (every thread), less the first snapshot's INFO."""
    main_thread_cpu_s: float | None
    """Main-thread CPU seconds, less the first snapshot's INFO (None before Redis 6.2)."""
    command_s: float
    """Wall-clock seconds Redis spent inside the counted commands (``commandstats`` usec): how long they
    held the server, time the OS gave other processes meanwhile included. Redis's CPU besides goes to
    reading, parsing and answering them."""
    by_command: dict[str, int]
    """Commands by name (``evalsha``, ...), those that ran in the window only."""

    @classmethod
    def between(cls, before: RedisSnapshot, after: RedisSnapshot) -> Self:
        earlier = dict(before.by_command)
        by_command = {name: count - earlier.get(name, 0) for name, count in after.by_command}
        own_s = (after.info_us - before.info_us) / 1e6
        main: float | None = None
        if before.main_thread_cpu_s is not None and after.main_thread_cpu_s is not None:
            main = max(0.0, after.main_thread_cpu_s - before.main_thread_cpu_s - own_s)
        return cls(
            by_command={name: count for name, count in by_command.items() if count},
            commands=after.commands - before.commands,
            reads=max(0, after.reads - before.reads - 1),
            bytes_in=max(0, after.bytes_in - before.bytes_in - _INFO_REQUEST_BYTES),
            bytes_out=after.bytes_out - before.bytes_out,
            memory=after.used_memory - before.used_memory,
            cpu_s=max(0.0, after.cpu_s - before.cpu_s - own_s),
            main_thread_cpu_s=main,
            command_s=(after.command_us - before.command_us) / 1e6,
        )

    @classmethod
    def total(cls, windows: Iterable[RedisWindow]) -> Self:
        """Several windows as one (their sums; main-thread CPU None if any window lacks it)."""
        found = list(windows)
        by_command: dict[str, int] = {}
        for window in found:
            for name, count in window.by_command.items():
                by_command[name] = by_command.get(name, 0) + count
        mains = [window.main_thread_cpu_s for window in found]
        return cls(
            by_command=by_command,
            commands=sum(window.commands for window in found),
            reads=sum(window.reads for window in found),
            bytes_in=sum(window.bytes_in for window in found),
            bytes_out=sum(window.bytes_out for window in found),
            memory=sum(window.memory for window in found),
            cpu_s=sum(window.cpu_s for window in found),
            command_s=sum(window.command_s for window in found),
            main_thread_cpu_s=None if None in mains else sum(m for m in mains if m is not None),
        )
