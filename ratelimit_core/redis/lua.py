"""The Lua scripts of the Redis driver, read from ``scripts/*.lua``.

Redis has no ``require``, so the helpers in ``prelude.lua`` are put in front of
each script body; every script then stands alone, touches only ``KEYS[1]`` and
runs unchanged on Redis Cluster.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

__all__ = ["SCRIPT_NAMES", "script_source"]

SCRIPT_NAMES = (
    "counter_incr",
    "counter_decr",
    "counter_get",
    "set_add",
    "set_remove",
    "set_size",
    "set_members",
    "bucket_consume",
    "bucket_peek",
    "bucket_reset",
)


def _read(name: str) -> str:
    return files(__package__).joinpath("scripts", f"{name}.lua").read_text(encoding="utf-8")


@cache
def script_source(name: str) -> str:
    """The full text of script `name` (prelude included), read once per process."""
    if name not in SCRIPT_NAMES:
        raise KeyError(name)
    return _read("prelude") + "\n" + _read(name)
