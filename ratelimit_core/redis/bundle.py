"""`Bundler`: the script calls of one round trip as few commands, several calls to an EVALSHA.

A round trip that carries several calls sends them as EVALSHAs of the bundle script
(`lua.bundle_source`), up to `MAX_BUNDLE` calls each, instead of one EVALSHA per call:
Redis then parses, looks up and starts one script per bundle, and this process reads
one reply per bundle. A heartbeat that refreshes 3,000 slots is 12 commands, not 3,000.
A call alone in its round trip goes as its own script's EVALSHA, as before.

Nothing changes for the caller: each call of a bundle runs its own script body on its
own key and arguments, gets its own reply or its own error reply (one call failing
does not fail the others), and the calls run in the order they were issued. A bundle
runs atomically as a whole, which is more than each call needs; `MAX_BUNDLE` bounds how
long it holds the server. When the bundle as a whole fails (a lost connection, NOSCRIPT
for the bundle script), every call of it gets that failure, as every call of the round
trip would: `Coalescer` then decides, call by call, what may be sent again.

On Redis Cluster a script may only touch keys of one hash slot, so only calls whose
keys share a slot are bundled (keys with the same ``{hash tag}``); the others go one
EVALSHA each, in the cluster pipeline that sends each node its part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from redis.crc import key_slot

from .lua import BUNDLE, SCRIPT_NAMES
from .pipeline import Command

if TYPE_CHECKING:
    from .coalesce import ScriptCall

__all__ = ["MAX_BUNDLE", "Bundler", "Group", "replies_of_calls"]

MAX_BUNDLE: Final = 256
"""Calls in one bundle at most: a bundle of set refreshes holds the server for about a millisecond."""

Group = tuple[int, ...]
"""The indices, in the round trip's calls, of the calls one command carries (one: its own EVALSHA)."""


class Bundler:
    """Makes the commands of a round trip from its calls, and gives each call its reply back.

    `shas` maps every script name of `SCRIPT_NAMES` and `BUNDLE` to its SHA-1.
    `by_slot`: bundle only calls whose keys share a Redis Cluster hash slot.
    """

    __slots__ = ("_bundle_sha", "_by_slot", "_numbers", "_shas")

    def __init__(self, shas: Mapping[str, str], *, by_slot: bool) -> None:
        self._shas = dict(shas)
        self._bundle_sha = shas[BUNDLE]
        self._numbers = {name: number for number, name in enumerate(SCRIPT_NAMES, start=1)}
        self._by_slot = by_slot

    def commands(self, calls: Sequence[ScriptCall[Any]]) -> tuple[list[Command], list[Group]]:
        """The commands that run `calls`, and for each command the calls it carries."""
        groups = self._groups(calls)
        commands: list[Command] = []
        for group in groups:
            if len(group) == 1:
                call = calls[group[0]]
                commands.append(("EVALSHA", self._shas[call.name], 1, call.key, *call.args))
            else:
                commands.append(self._bundle([calls[i] for i in group]))
        return commands, groups

    def _groups(self, calls: Sequence[ScriptCall[Any]]) -> list[Group]:
        if len(calls) == 1:
            return [(0,)]
        if not self._by_slot:
            return _chunks(range(len(calls)))
        by_slot: dict[int, list[int]] = {}
        for i, call in enumerate(calls):
            by_slot.setdefault(key_slot(call.key), []).append(i)
        return [group for indices in by_slot.values() for group in _chunks(indices)]

    def _bundle(self, calls: Sequence[ScriptCall[Any]]) -> Command:
        keys = [call.key for call in calls]
        arguments: list[bytes | str | int] = []
        numbers = self._numbers
        for call in calls:
            arguments += (numbers[call.name], len(call.args), *call.args)
        return ("EVALSHA", self._bundle_sha, len(keys), *keys, *arguments)


def _chunks(indices: Sequence[int]) -> list[Group]:
    return [tuple(indices[start : start + MAX_BUNDLE]) for start in range(0, len(indices), MAX_BUNDLE)]


def replies_of_calls(groups: Sequence[Group], replies: Sequence[Any], count: int) -> list[Any]:
    """Each of `count` calls' reply (or error), from the `replies` of the commands `groups` describes.

    A command that failed as a whole gives its failure to every call it carried.
    """
    out: list[Any] = [None] * count
    for group, reply in zip(groups, replies, strict=True):
        if len(group) == 1:
            out[group[0]] = reply
        elif isinstance(reply, BaseException):
            for i in group:
                out[i] = reply
        else:
            if not isinstance(reply, list) or len(reply) != len(group):
                raise TypeError(f"the bundle script replied {reply!r:.200} to {len(group)} calls")
            for i, each in zip(group, reply, strict=True):
                out[i] = each
    return out
