"""The least-privilege Redis ACL rule of the driver: every command it sends, on the keys under its prefix.

Redis checks a script's own ``redis.call``s against the calling user's rights too, so
the rule names the commands the scripts call (`SCRIPT_COMMANDS`) besides the ones the
driver sends (`DRIVER_COMMANDS`). `clear` needs `CLEAR_COMMANDS` beyond that, and a
Redis Cluster client `CLUSTER_COMMANDS` to find the cluster's nodes and slots. The
``ratelimit`` CLI (``inspect``, ``reset``, ``ping``) needs nothing beyond the rule.
The ``acl`` test environment runs the suite as a user with exactly `acl_rule`.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CLEAR_COMMANDS", "CLUSTER_COMMANDS", "DRIVER_COMMANDS", "SCRIPT_COMMANDS", "acl_rule"]

DRIVER_COMMANDS: Final = ("evalsha", "script|load", "ping")
"""Each primitive is an EVALSHA; SCRIPT LOAD after a NOSCRIPT; PING is `Backend.ping`."""
SCRIPT_COMMANDS: Final = (
    "time",
    "hget",
    "hmget",
    "hset",
    "hincrby",
    "del",
    "pexpire",
    "pexpireat",
    "persist",
    "zadd",
    "zcard",
    "zrange",
    "zrem",
    "zremrangebyscore",
    "zscore",
)
"""What the scripts in ``scripts/*.lua`` call (TIME only under the server's clock)."""
CLEAR_COMMANDS: Final = ("scan", "unlink")
"""`RedisBackend.clear`: SCAN for the keys under the prefix, UNLINK each."""
CLUSTER_COMMANDS: Final = ("cluster|slots", "command")
"""What redis-py's cluster client sends to learn the cluster's nodes and slots, and each command's keys."""

_GLOB_SPECIAL: Final = frozenset("*?[]\\")


def acl_rule(prefix: str = "rl:", *, clear: bool = True, cluster: bool = False) -> str:
    """The ACL rule (after ``ACL SETUSER name on >password``) for a driver whose keys start with `prefix`.

    It starts from nothing (``resetkeys resetchannels -@all``), so it can be applied
    to an existing user. ``clear=False`` leaves out what only `clear` needs;
    ``cluster=True`` adds what a Redis Cluster client needs. Every key the driver
    touches starts with `prefix`; no Pub/Sub channel is used.
    """
    pattern = "".join("\\" + c if c in _GLOB_SPECIAL else c for c in prefix) + "*"
    commands = [*DRIVER_COMMANDS, *SCRIPT_COMMANDS]
    if clear:
        commands += CLEAR_COMMANDS
    if cluster:
        commands += CLUSTER_COMMANDS
    return " ".join(["resetkeys", f"~{pattern}", "resetchannels", "-@all", *(f"+{name}" for name in commands)])
