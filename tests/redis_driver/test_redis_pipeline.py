"""`pipeline`, the one module on redis-py's private API: its stated version range, and the public way around it.

The direct way is checked by every other Redis test, on the redis-py the run
installs; the tox envs run them at both ends of `SUPPORTED_REDIS_PY`.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import redis
import redis.asyncio

from ratelimit_core import ManualClock, RedisBackend
from ratelimit_core.redis import connect, pipeline
from ratelimit_core.redis.connect import client_from_url
from ratelimit_core.redis.pipeline import SUPPORTED_REDIS_PY, direct_fits, direct_supported
from support.redis_storages import MakeBackend


def test_the_installed_redis_py_takes_the_direct_way() -> None:
    # Every tox env installs a redis-py inside the range, so the suite checks the direct way at both ends.
    assert direct_supported(), f"redis-py {redis.__version__} is outside SUPPORTED_REDIS_PY {SUPPORTED_REDIS_PY}"


def test_the_range_runs_from_its_oldest_release_up_to_but_excluding_its_first_newer_one() -> None:
    oldest, first_newer = SUPPORTED_REDIS_PY
    assert direct_supported(oldest)
    assert not direct_supported((oldest[0] - 1, 99))
    assert direct_supported((first_newer[0] - 1, 99))
    assert not direct_supported(first_newer)


def test_an_older_redis_py_is_refused_at_import_naming_what_to_install() -> None:
    script = textwrap.dedent(
        """
        import redis
        redis.__version__ = "5.3.1"
        try:
            import ratelimit_core.redis
        except ImportError as exc:
            print(exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    oldest = ".".join(map(str, SUPPORTED_REDIS_PY[0]))
    assert f"needs redis-py >= {oldest}, found 5.3.1" in done.stdout, done.stderr
    assert f"redis[hiredis]>={oldest}" in done.stdout


def test_only_a_pooled_plain_client_takes_the_direct_way() -> None:
    assert direct_fits(redis.asyncio.Redis())
    assert not direct_fits(redis.asyncio.Redis(single_connection_client=True))
    assert not direct_fits(client_from_url("redis+cluster://127.0.0.1:7000"))


@pytest.fixture
def public_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a redis-py newer than the range: backends made from now on use redis-py's own pipeline."""

    async def never(*args: Any) -> Any:
        raise AssertionError("the direct way was taken")

    for module in (pipeline, connect):
        monkeypatch.setattr(module, "direct_supported", lambda: False)
    monkeypatch.setattr(pipeline, "_direct_round_trip", never)


@pytest.mark.usefixtures("public_pipeline")
async def test_on_redis_pys_own_pipeline_concurrent_calls_and_batches_give_the_results_of_sequential_calls(
    make_backend: MakeBackend, prefix: str
) -> None:
    clock = ManualClock(1_000_000)
    keys = [f"k{n}" for n in range(10)]
    sequential = make_backend(clock, prefix="seq:" + prefix)
    expected = [(await sequential.counter_incr(key, n + 1, limit=5)).value for n, key in enumerate(keys)]
    expected += [await sequential.counter_get(key) for key in keys]
    backend = make_backend(clock)
    results = [
        result.value
        for result in await asyncio.gather(*(backend.counter_incr(k, n + 1, limit=5) for n, k in enumerate(keys)))
    ]
    async with backend.batch() as batch:
        gets = [batch.counter_get(key) for key in keys]
    assert results + [call.result() for call in gets] == expected


def test_on_a_newer_redis_py_a_url_client_never_sends_a_command_again(public_pipeline: None) -> None:
    # redis-py's own pipeline sends a round trip again as the client's retry says.
    backend = RedisBackend.from_url("redis://127.0.0.1:6379/0")
    assert backend.client.connection_pool.connection_kwargs["retry"].get_retries() == 0
