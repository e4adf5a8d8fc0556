"""Checks per second on Redis: ours against the raw EVALSHA floor and the peers, 1 and 50 callers.

The floor is what any Redis limiter pays at least: redis-py's ``evalsha`` of a
one-key script (our bucket script, with the arguments a check sends), one call per
check, on a client with the same settings as ours. Ours goes through
`RedisBackend`, whose concurrent calls coalesce into pipelined round trips; the
batch row sends 50 checks per ``backend.batch()`` from one caller. The message gate
rows admit one frame per check through `MessagePolicy` with the identity's bucket
alone, plus its type's bucket, plus the quota, and all three: the checks of one
frame are started together and go in one round trip, so each added limit costs a
script call, not a round trip (the notes give the round trips per frame).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from ratelimit_core.bucket import bucket_spec
from ratelimit_core.keys import BUCKET, storage_key
from ratelimit_core.policies import ClientIdentity, MessageGate, MessageLimits, MessagePolicy, MessageQuota, TypeRate
from ratelimit_core.redis import RedisBackend
from ratelimit_core.redis.connect import Client, client_from_url
from ratelimit_core.redis.lua import script_source

from .measure import Figure, interleaved, rate_of, wall_clock
from .peers import REDIS_PEERS, installed
from .scales import Scale

__all__ = ["fakeredis_figures", "redis_figures"]

Check = Callable[[str], Awaitable[object]]

_BATCH = 50
_PREFILL_WORKERS = 50
# (rate, burst): a bucket no run can drain, and one that stays empty once drained.
_ALLOWED: tuple[float, int] = (10**9, 10**9)
_DENIED: tuple[float, int] = (0.001, 1)


def _keys(scale: Scale, prefix: str) -> dict[str, list[str]]:
    return {"1": [f"{prefix}user:1"], "10k": [f"{prefix}user:{i}" for i in range(scale.many_keys)]}


async def _callers(check: Check, keys: Sequence[str], ops: int, callers: int) -> float:
    """Checks per second of `callers` tasks on one event loop, `ops` checks in all."""
    n = len(keys)
    per_caller = max(1, ops // callers)

    async def caller(offset: int) -> None:
        for i in range(per_caller):
            await check(keys[(offset + i * callers) % n])

    start = wall_clock()
    await asyncio.gather(*(caller(c) for c in range(callers)))
    return rate_of(per_caller * callers, wall_clock() - start)


async def _prefixed(check: Check, prefix: str, key: str) -> object:
    return await check(prefix + key)


async def _prefill(check: Check, keys: Sequence[str]) -> None:
    """One check on every key (drains the denied path's buckets), from a few concurrent workers."""

    async def worker(offset: int) -> None:
        for key in keys[offset::_PREFILL_WORKERS]:
            await check(key)

    await asyncio.gather(*(worker(w) for w in range(_PREFILL_WORKERS)))


class _Subjects:
    """Ours and the floor on one storage, for one path."""

    def __init__(self, client: Client, backend: RedisBackend, sha: str, allowed: bool) -> None:
        self.rate: float
        self.burst: int
        self.rate, self.burst = _ALLOWED if allowed else _DENIED
        spec = bucket_spec(self.rate, self.burst, 1)
        self.script_args = ("", 0, spec.per_ms, spec.unit, spec.full, spec.cost)
        self.client = client
        self.backend = backend
        self.sha = sha

    async def ours(self, key: str) -> object:
        return await self.backend.bucket_consume(key, rate=self.rate, burst=self.burst)

    async def floor(self, key: str) -> object:
        # The storage key ours uses for `key`, so that both see the same kind of state.
        stored = storage_key(self.backend.prefix, BUCKET, key)
        return await self.client.evalsha(self.sha, 1, stored, *self.script_args)

    async def batched(self, keys: Sequence[str], ops: int) -> float:
        n = len(keys)
        rounds = max(1, ops // _BATCH)
        start = wall_clock()
        for r in range(rounds):
            async with self.backend.batch() as batch:
                for i in range(_BATCH):
                    batch.bucket_consume(keys[(r * _BATCH + i) % n], rate=self.rate, burst=self.burst)
        return rate_of(rounds * _BATCH, wall_clock() - start)


Extras = dict[str, tuple[Check, bool]]
"""Other subjects measured in turn with ours and the floor: name -> (check, also with many callers)."""


async def _path(
    section: str, subjects: _Subjects, scale: Scale, keys: tuple[str, list[str]], *, path: str, extras: Extras
) -> list[Figure]:
    """Ours, the floor and `extras` in turn, one caller then many; the batch API with the many-callers group."""
    keys_name, names = keys
    await _prefill(subjects.ours, names)
    for check, _ in extras.values():
        await _prefill(check, names)
    figures = []
    for callers, ops in ((1, scale.redis_ops), (scale.callers, scale.concurrent_ops)):
        group: dict[str, Callable[[], Awaitable[float]]] = {
            "ours bucket_consume": partial(_callers, subjects.ours, names, ops, callers),
            "raw EVALSHA floor": partial(_callers, subjects.floor, names, ops, callers),
        }
        if callers > 1:
            group["ours batch of 50"] = partial(subjects.batched, names, ops)
        for name, (check, crowd) in extras.items():
            if callers == 1 or crowd:
                group[name] = partial(_callers, check, names, ops, callers)
        for subject, (value, values) in (await interleaved(scale.runs, group)).items():
            if subject == "ours batch of 50":
                note = f"backend.batch() of {_BATCH} checks, one caller"
                figures.append(Figure(section, subject, keys_name, path, 1, value, runs=values, note=note))
            else:
                figures.append(Figure(section, subject, keys_name, path, callers, value, runs=values))
    return figures


_FRAME = '{"type": "chat", "text": "hello"}'
_TYPE = (TypeRate("chat", 10**9, 10**9),)
_QUOTA = MessageQuota(10**15, 3_600_000)
GATE_LIMITS: dict[str, MessageLimits] = {
    "message gate: rate": MessageLimits(rate=10**9, burst=10**9),
    "message gate: rate + type": MessageLimits(rate=10**9, burst=10**9, types=_TYPE),
    "message gate: rate + quota": MessageLimits(rate=10**9, burst=10**9, quota=_QUOTA),
    "message gate: rate + type + quota": MessageLimits(rate=10**9, burst=10**9, types=_TYPE, quota=_QUOTA),
}
"""The message limits measured per frame (allowed path, one caller)."""


def _gate_check(backend: RedisBackend, limits: MessageLimits) -> Check:
    """Admit one frame from the identity named by the key (one gate per key, made once)."""
    policy = MessagePolicy(backend, limits)
    gates: dict[str, MessageGate] = {}

    async def admit(key: str) -> object:
        gate = gates.get(key)
        if gate is None:
            gate = gates[key] = policy.gate(ClientIdentity("10.0.0.1", key))
        return await gate.admit(_FRAME)

    return admit


async def frame_round_trips(backend: RedisBackend, limits: MessageLimits, frames: int) -> float:
    """Round trips per frame of one caller admitting `frames` frames through `limits`."""
    check = _gate_check(backend, limits)
    await check("warm")
    before = backend.coalescer.round_trips
    for _ in range(frames):
        await check("warm")
    return (backend.coalescer.round_trips - before) / frames


def _other_primitives(backend: RedisBackend, allowed: bool) -> Extras:
    """counter_incr and set_add (one caller), on keys of their own."""
    if allowed:
        return {
            "ours counter_incr": (lambda k: backend.counter_incr("c" + k, limit=10**15, window_ms=3_600_000), False),
            "ours set_add": (lambda k: backend.set_add("s" + k, "there", capacity=10, lease_ms=3_600_000), False),
            **{name: (_gate_check(backend, limits), False) for name, limits in GATE_LIMITS.items()},
        }
    return {
        "ours counter_incr": (lambda k: backend.counter_incr("d" + k, limit=1, window_ms=3_600_000), False),
        "ours set_add": (lambda k: backend.set_add("t" + k, "new", capacity=0, lease_ms=3_600_000), False),
    }


async def _ours_and_floor(
    section: str, client: Client, backend: RedisBackend, scale: Scale, *, url: str | None, notes: list[str]
) -> list[Figure]:
    """Every case; with a server `url`, also the other primitives and the peers on the many-keys case.

    Without one (fakeredis): one key, allowed only.
    """
    sha = await client.script_load(script_source("bucket_consume"))
    key_sets = _keys(scale, "")
    paths: tuple[str, ...] = ("allowed", "denied")
    if url is None:
        del key_sets["10k"]
        paths = ("allowed",)
    else:
        notes.extend(
            f"{peer.name} on Redis: {peer.module} is not installed, so it was not measured"
            for peer in REDIS_PEERS
            if not installed(peer.module)
        )
    figures = []
    for keys_name, keys in key_sets.items():
        for path in paths:
            allowed = path == "allowed"
            extras: Extras = {}
            closers: list[Callable[[], Awaitable[None]]] = []
            if url is not None and keys_name == "10k":
                extras.update(_other_primitives(backend, allowed))
                for peer in REDIS_PEERS:
                    if installed(peer.module):
                        check, close = peer.make(url, allowed)
                        # limits names its keys by the item and key alone: each strategy gets keys of its own.
                        extras[peer.name] = (partial(_prefixed, check, f"{peer.name}:"), True)
                        closers.append(close)
            try:
                subjects = _Subjects(client, backend, sha, allowed)
                figures += await _path(section, subjects, scale, (keys_name, keys), path=path, extras=extras)
            finally:
                for close in closers:
                    await close()
    return figures


async def redis_figures(url: str, scale: Scale, notes: list[str]) -> list[Figure]:
    """Every Redis figure against the server at `url` (a private one: it is written to freely)."""
    client = client_from_url(url)
    backend = RedisBackend.from_url(url, prefix="bench:ours:")
    try:
        figures = await _ours_and_floor("redis", client, backend, scale, url=url, notes=notes)
        for name, limits in GATE_LIMITS.items():
            trips = await frame_round_trips(backend, limits, 100)
            notes.append(f"{name}: {trips:.2f} round trips per frame, one caller")
        round_trips, sent = backend.coalescer.round_trips, backend.coalescer.calls_sent
        per_trip = sent / max(1, round_trips)
        notes.append(f"ours on Redis: {sent} script calls in {round_trips} round trips ({per_trip:.1f} a trip)")
        return figures
    finally:
        await backend.aclose()
        await client.aclose()


async def fakeredis_figures(scale: Scale, notes: list[str]) -> list[Figure]:
    """Ours and the floor on fakeredis (in-process Lua via lupa): the cost of the driver without a network."""
    if not installed("fakeredis") or not installed("lupa"):
        notes.append("fakeredis: fakeredis or lupa is not installed, so it was not measured")
        return []
    import fakeredis

    client: Any = fakeredis.FakeAsyncRedis()
    backend = RedisBackend(client, prefix="bench:ours:")
    try:
        # fakeredis runs Lua in-process and is slow: a fifth of the work is plenty to compare.
        small = replace(scale, redis_ops=max(1, scale.redis_ops // 5), concurrent_ops=max(1, scale.concurrent_ops // 5))
        return await _ours_and_floor("fakeredis", client, backend, small, url=None, notes=notes)
    finally:
        await client.aclose()
