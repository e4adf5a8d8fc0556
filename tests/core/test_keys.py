"""Key encoding: every (prefix, primitive, key) has its own storage key, and long keys are bounded."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ratelimit_core import Backend, InvalidArgument
from ratelimit_core.keys import BUCKET, COUNTER, MAX_RAW_KEY_CHARS, SET, check_prefix, storage_key

KINDS = (COUNTER, SET, BUCKET)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def test_short_keys_are_kept_readable() -> None:
    assert storage_key("rl:", COUNTER, "user:42") == "rl:c:user:42"


def test_the_three_primitives_never_share_a_storage_key() -> None:
    assert len({storage_key("rl:", kind, "k") for kind in KINDS}) == 3


def test_keys_longer_than_the_raw_limit_are_hashed() -> None:
    at_limit, over_limit = "k" * MAX_RAW_KEY_CHARS, "k" * (MAX_RAW_KEY_CHARS + 1)
    assert storage_key("rl:", COUNTER, at_limit) == f"rl:c:{at_limit}"
    assert storage_key("rl:", COUNTER, over_limit) == f"rl:c:#{_digest(over_limit)}"


def test_a_ten_kilobyte_key_becomes_a_short_storage_key() -> None:
    assert len(storage_key("rl:", SET, "é" * 5_000)) == len("rl:s:#") + 64


def test_a_key_starting_with_hash_is_hashed_so_it_cannot_pose_as_a_hashed_key() -> None:
    long = "k" * 1_000
    impostor = f"#{_digest(long)}"
    assert storage_key("rl:", COUNTER, impostor) != storage_key("rl:", COUNTER, long)
    assert storage_key("rl:", COUNTER, "#") == f"rl:c:#{_digest('#')}"


def test_lone_surrogates_are_encodable_and_distinct() -> None:
    assert storage_key("rl:", COUNTER, "\ud800" * 200) != storage_key("rl:", COUNTER, "\ud801" * 200)


@given(st.text(), st.text())
def test_different_keys_never_share_a_storage_key(first: str, second: str) -> None:
    assume(first != second)
    assert storage_key("rl:", COUNTER, first) != storage_key("rl:", COUNTER, second)


@given(st.sampled_from(KINDS), st.text(), st.sampled_from(KINDS), st.text())
def test_different_kinds_or_keys_never_share_a_storage_key(kind_a: str, key_a: str, kind_b: str, key_b: str) -> None:
    assume((kind_a, key_a) != (kind_b, key_b))
    assert storage_key("rl:", kind_a, key_a) != storage_key("rl:", kind_b, key_b)  # type: ignore[arg-type]


def test_prefix_must_be_a_str_and_may_be_empty() -> None:
    assert check_prefix("") == ""
    with pytest.raises(InvalidArgument, match="prefix"):
        check_prefix(b"rl:")


async def test_a_long_key_and_its_hashed_form_do_not_share_state(backend: Backend) -> None:
    long = "k" * 1_000
    await backend.counter_incr(long, 1)
    await backend.counter_incr(f"#{_digest(long)}", 2)
    assert (await backend.counter_get(long), await backend.counter_get(f"#{_digest(long)}")) == (1, 2)


async def test_keys_at_and_over_the_raw_limit_do_not_share_state(backend: Backend) -> None:
    keys = ["k" * (MAX_RAW_KEY_CHARS + delta) for delta in (-1, 0, 1, 2)]
    for amount, key in enumerate(keys, start=1):
        await backend.counter_incr(key, amount)
    assert [await backend.counter_get(key) for key in keys] == [1, 2, 3, 4]
