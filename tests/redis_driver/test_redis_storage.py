"""Where and how the driver stores state: key names, encodings, clear()."""

from __future__ import annotations

import pytest
from redis.exceptions import ResponseError

from ratelimit_core import BackendError, BackendUnavailable, ManualClock, RedisBackend
from ratelimit_core.keys import BUCKET, COUNTER, SET, storage_key
from support.redis_storages import MakeBackend, Storage

ODD_TEXT = [
    "plain",
    "é ünïcödé ✓ 🚦",
    "a:b:c",
    "{hash}tag}",
    "line\nbreak\r\n",
    " spaced out ",
    "\ud800lone\udfffsurrogates",
    "",
    "x" * 10_000,
]


async def _all_keys(storage: Storage, prefix: str) -> set[bytes]:
    client = storage.client()
    return {key async for key in client.scan_iter(match=prefix.encode() + b"*")}


async def test_every_key_lives_under_the_prefix_with_its_kind(
    make_backend: MakeBackend, storage: Storage, prefix: str
) -> None:
    backend = make_backend(ManualClock(1_000_000))
    await backend.counter_incr("k", window_ms=1_000)
    await backend.set_add("k", "m", lease_ms=1_000)
    await backend.bucket_consume("k", rate=1, burst=5)
    expected = {storage_key(prefix, kind, "k").encode() for kind in (COUNTER, SET, BUCKET)}
    assert await _all_keys(storage, prefix) == expected


async def test_long_keys_are_stored_under_a_bounded_hashed_name(
    make_backend: MakeBackend, storage: Storage, prefix: str
) -> None:
    backend = make_backend()
    long_key = "k" * 10_000
    await backend.counter_incr(long_key, 7)
    (stored,) = await _all_keys(storage, prefix)
    assert stored == storage_key(prefix, COUNTER, long_key).encode()
    assert len(stored) <= len(prefix) + len("c:#") + 64
    assert await backend.counter_get(long_key) == 7


async def test_distinct_keys_never_share_state(make_backend: MakeBackend) -> None:
    backend = make_backend()
    keys = [*ODD_TEXT, "a", "a ", "a\n", "#a", "x" * 128, "x" * 129, "x" * 130, "\udc80", "\ud800"]
    for amount, key in enumerate(keys, start=1):
        await backend.counter_incr(key, amount)
    assert [await backend.counter_get(key) for key in keys] == list(range(1, len(keys) + 1))


@pytest.mark.parametrize("decode_responses", [False, True])
async def test_any_member_round_trips(make_backend: MakeBackend, decode_responses: bool) -> None:
    backend = make_backend(decode_responses=decode_responses)
    for key in ("plain", "\ud800key"):
        for member in ODD_TEXT:
            assert (await backend.set_add(key, member)).added
        assert await backend.set_members(key) == frozenset(ODD_TEXT)
        assert await backend.set_remove(key, "\ud800lone\udfffsurrogates") == len(ODD_TEXT) - 1


async def test_clear_deletes_only_its_own_prefix_even_with_glob_characters(
    make_backend: MakeBackend, storage: Storage, prefix: str
) -> None:
    globby = make_backend(prefix=prefix + "*?[a]\\")
    neighbour = make_backend(prefix=prefix + "x")
    await globby.counter_incr("k")
    await neighbour.counter_incr("k")
    await globby.clear()
    assert await globby.counter_get("k") == 0
    assert await neighbour.counter_get("k") == 1
    assert await _all_keys(storage, prefix) == {storage_key(prefix + "x", COUNTER, "k").encode()}


async def test_foreign_data_under_a_key_raises_backend_error(
    make_backend: MakeBackend, storage: Storage, prefix: str
) -> None:
    backend = make_backend()
    await storage.client().set(storage_key(prefix, COUNTER, "k"), "not a hash")
    with pytest.raises(BackendError) as caught:
        await backend.counter_incr("k")
    assert not isinstance(caught.value, BackendUnavailable)
    assert isinstance(caught.value.__cause__, ResponseError)


async def test_counter_is_exact_beyond_two_to_the_53(make_backend: MakeBackend) -> None:
    backend = make_backend()
    for _ in range(10):
        await backend.counter_incr("k", 10**15)
    await backend.counter_incr("k", 3)
    assert await backend.counter_get("k") == 10**16 + 3
    assert await backend.counter_decr("k", 1) == 10**16 + 2
    refused = await backend.counter_incr("k", 1, limit=10**15)
    assert (refused.allowed, refused.value) == (False, 10**16 + 2)


async def test_aclose_leaves_a_client_it_was_given_open(storage: Storage, prefix: str) -> None:
    client = storage.client()
    async with RedisBackend(client, prefix=prefix) as backend:
        await backend.counter_incr("k")
        await backend.clear()
    assert await client.ping()
