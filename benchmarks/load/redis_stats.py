"""What Redis did over a window: calls, reads (round trips), bytes in and out, memory, from ``INFO all``.

Redis counts the commands a Lua script runs inside it as commands of their own
(in ``commandstats`` and ``total_commands_processed``), so a call here is a
command a client sent: every command except those the library's scripts run
(read from ``ratelimit_core/redis/scripts``) and this suite's own (INFO,
FLUSHALL). Each snapshot is one ``INFO all`` call; the window between two
snapshots counts the first snapshot's INFO, which `RedisWindow` leaves out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Final, Self

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


_NOT_CALLS: Final = _OWN_COMMANDS | _script_commands()
_INFO_REQUEST_BYTES: Final = len(b"*2\r\n$4\r\nINFO\r\n$3\r\nall\r\n")


@dataclass(frozen=True, slots=True)
class RedisSnapshot:
    commands: int
    """Calls: commands clients sent, the suite's own and those run inside scripts left out."""
    reads: int
    """``total_reads_processed``: socket reads, about one per round trip (a pipeline is read at once)."""
    bytes_in: int
    bytes_out: int
    used_memory: int
    by_command: tuple[tuple[str, int], ...]
    """(command, calls) of every call counted in `commands`."""

    @classmethod
    def take(cls, client: redis.Redis) -> Self:
        info = client.info("all")
        by_command = tuple(
            (name.removeprefix("cmdstat_"), int(value["calls"]))
            for name, value in info.items()
            if name.startswith("cmdstat_") and name.removeprefix("cmdstat_") not in _NOT_CALLS
        )
        return cls(
            by_command=by_command,
            commands=sum(calls for _, calls in by_command),
            reads=int(info.get("total_reads_processed", 0)),
            bytes_in=int(info["total_net_input_bytes"]),
            bytes_out=int(info["total_net_output_bytes"]),
            used_memory=int(info["used_memory"]),
        )


@dataclass(frozen=True, slots=True)
class RedisWindow:
    """The difference between two snapshots, the suite's own INFO left out."""

    commands: int
    reads: int
    bytes_in: int
    bytes_out: int
    memory: int
    by_command: dict[str, int]
    """Calls per command (``evalsha``, ...), those that ran in the window only."""

    @classmethod
    def between(cls, before: RedisSnapshot, after: RedisSnapshot) -> Self:
        earlier = dict(before.by_command)
        by_command = {name: calls - earlier.get(name, 0) for name, calls in after.by_command}
        return cls(
            by_command={name: calls for name, calls in by_command.items() if calls},
            commands=after.commands - before.commands,
            reads=max(0, after.reads - before.reads - 1),
            bytes_in=max(0, after.bytes_in - before.bytes_in - _INFO_REQUEST_BYTES),
            bytes_out=after.bytes_out - before.bytes_out,
            memory=after.used_memory - before.used_memory,
        )
