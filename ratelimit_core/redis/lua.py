"""The Lua scripts of the Redis driver, read from ``scripts/*.lua``.

Redis has no ``require``, so the helpers in ``prelude.lua`` are put in front of
each script body; every script then stands alone, touches only ``KEYS[1]`` and
runs unchanged on Redis Cluster.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Final

from ..primitives import PRIMITIVES

__all__ = ["SCRIPT_NAMES", "script_source"]

SCRIPT_NAMES: Final = tuple(PRIMITIVES)
"""One script per primitive, named after it (``scripts/<name>.lua``)."""


def _read(name: str) -> str:
    return files(__package__).joinpath("scripts", f"{name}.lua").read_text(encoding="utf-8")


@cache
def script_source(name: str) -> str:
    """The full text of script `name` (prelude included), read once per process."""
    if name not in SCRIPT_NAMES:
        raise KeyError(name)
    return _read("prelude") + "\n" + _read(name)
