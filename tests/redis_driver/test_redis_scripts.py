"""The driver's Lua scripts: one key each, and reloaded when the server forgets them."""

from __future__ import annotations

import re

from ratelimit_core.redis.lua import SCRIPT_NAMES, script_source
from support.redis_storages import MakeBackend, Storage


def test_every_script_touches_only_the_key_it_declares() -> None:
    for name in SCRIPT_NAMES:
        source = script_source(name)
        assert set(re.findall(r"KEYS\[(\w+)\]", source)) == {"1"}, name


async def test_scripts_are_reloaded_after_script_flush(make_backend: MakeBackend, storage: Storage) -> None:
    backend = make_backend()
    assert (await backend.counter_incr("k")).value == 1
    await storage.client().script_flush()
    assert (await backend.counter_incr("k")).value == 2
    assert (await backend.set_add("s", "m")).size == 1
    assert (await backend.bucket_consume("b", rate=1, burst=2)).remaining == 1
