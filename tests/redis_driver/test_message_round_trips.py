"""What one frame costs on Redis when it must pass several limits: the identity's bucket, its type's, the quota.

The gate starts its checks in one turn of the event loop and the coalescer sends the
calls of one turn together, so a frame costs one round trip whatever limits apply,
also behind a `FallbackBackend` (how the Channels adapter builds a backend by default).
"""

from __future__ import annotations

import json

import pytest

from ratelimit_core import Backend, FallbackBackend, ManualClock
from ratelimit_core.policies import (
    Allowed,
    ClientIdentity,
    Denial,
    MessageLimits,
    MessagePolicy,
    MessageQuota,
    TypeRate,
)
from ratelimit_core.redis import RedisBackend
from support.redis_storages import MakeBackend

ALICE = ClientIdentity("1.1.1.1", "alice")
CHAT = json.dumps({"type": "chat"})
EVERY_LIMIT = MessageLimits(rate=100, types=(TypeRate("chat", 100),), quota=MessageQuota(1000, 60_000))


def wrapped(backend: RedisBackend, wrapper: str) -> Backend:
    return FallbackBackend(backend) if wrapper == "fallback" else backend


@pytest.mark.parametrize("wrapper", ["plain", "fallback"])
@pytest.mark.parametrize(
    ("limits", "frame", "calls"),
    [
        (EVERY_LIMIT, CHAT, 3),
        (EVERY_LIMIT, "untyped", 2),
        (MessageLimits(rate=100), CHAT, 1),
        (MessageLimits(types=(TypeRate("chat", 100),)), CHAT, 1),
        (MessageLimits(quota=MessageQuota(10, 1000)), CHAT, 1),
    ],
)
async def test_a_lone_frame_costs_one_round_trip_whatever_limits_apply(
    make_backend: MakeBackend, wrapper: str, limits: MessageLimits, frame: str, calls: int
) -> None:
    redis = make_backend(ManualClock(1_000_000))
    gate = MessagePolicy(wrapped(redis, wrapper), limits).gate(ALICE)
    assert isinstance(await gate.admit(frame), Allowed)  # loads the scripts
    for _ in range(3):
        trips, sent = redis.coalescer.round_trips, redis.coalescer.calls_sent
        assert isinstance(await gate.admit(frame), Allowed)
        assert (redis.coalescer.round_trips - trips, redis.coalescer.calls_sent - sent) == (1, calls)


async def test_a_refused_frame_costs_one_round_trip_too(make_backend: MakeBackend) -> None:
    redis = make_backend(ManualClock(1_000_000))
    limits = MessageLimits(rate=1, burst=1, types=(TypeRate("chat", 1, 1),), quota=MessageQuota(1, 60_000))
    gate = MessagePolicy(redis, limits).gate(ALICE)
    assert isinstance(await gate.admit(CHAT), Allowed)
    trips = redis.coalescer.round_trips
    assert isinstance(await gate.admit(CHAT), Denial)
    assert redis.coalescer.round_trips - trips == 1


@pytest.mark.parametrize("wrapper", ["plain", "fallback"])
async def test_a_shadow_frame_over_every_limit_is_delivered_in_one_round_trip(
    make_backend: MakeBackend, wrapper: str
) -> None:
    redis = make_backend(ManualClock(1_000_000))
    limits = MessageLimits(rate=1, burst=1, types=(TypeRate("chat", 1, 1),), quota=MessageQuota(1, 60_000))
    gate = MessagePolicy(wrapped(redis, wrapper), limits, shadow=True).gate(ALICE)
    assert isinstance(await gate.admit(CHAT), Allowed)
    for _ in range(3):
        trips = redis.coalescer.round_trips
        verdict = await gate.admit(CHAT)
        assert isinstance(verdict, Allowed)
        assert verdict.shadowed is not None
        assert verdict.shadowed.code == "quota_exceeded"
        assert redis.coalescer.round_trips - trips == 1
