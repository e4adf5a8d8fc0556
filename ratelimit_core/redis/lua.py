"""The Lua scripts of the Redis driver, read from ``scripts/*.lua``.

Redis has no ``require``, so the helpers in ``prelude.lua`` are put in front of
each script body; every script then stands alone, touches only ``KEYS[1]`` and
runs unchanged on Redis Cluster.

The bundle script (`bundle_source`) is made from the same files: it runs several
calls of those scripts, on keys of its own, in one EVALSHA (see `bundle`).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Final

from ..primitives import PRIMITIVES

__all__ = ["BUNDLE", "SCRIPT_NAMES", "bundle_source", "script_source"]

SCRIPT_NAMES: Final = tuple(PRIMITIVES)
"""One script per primitive, named after it (``scripts/<name>.lua``)."""


BUNDLE: Final = "bundle"
"""The name of the bundle script (not a primitive: it runs the others)."""


def _read(name: str) -> str:
    return files(__package__).joinpath("scripts", f"{name}.lua").read_text(encoding="utf-8")


@cache
def script_source(name: str) -> str:
    """The full text of script `name` (prelude included), read once per process."""
    if name not in SCRIPT_NAMES:
        raise KeyError(name)
    return _read("prelude") + "\n" + _read(name)


def _indented(text: str) -> str:
    return "".join(f"  {line}" if line.strip() else line for line in text.splitlines(keepends=True))


@cache
def bundle_source() -> str:
    """The bundle script: calls of the scripts of `SCRIPT_NAMES`, one after the other, in one EVALSHA.

    ``KEYS[i]`` is the key of call i; ``ARGV`` holds, for each call in turn, the
    1-based number of its script in `SCRIPT_NAMES`, its argument count, then its
    arguments. Each body runs as it does alone, on ``KEYS = {KEYS[i]}`` and its own
    ``ARGV``, the prelude included. Returns one reply per call: its script's reply
    (false for none), or its own error reply, so that one call failing does not fail
    the others (its writes before the failure stay, as they would alone).
    """
    bodies = ",\n".join(f"  -- {name}\n  function()\n{_indented(_read(name))}  end" for name in SCRIPT_NAMES)
    return f"""-- bundle: several calls of the driver's scripts in one EVALSHA (see lua.py).
local bundle_keys, bundle_argv = KEYS, ARGV
-- The prelude and every body read these; each call gets its own.
local KEYS, ARGV = {{}}, {{}}

{_read("prelude")}
local scripts = {{
{bodies}
}}

local replies = {{}}
local at = 0
for i = 1, #bundle_keys do
  local script, count = scripts[tonumber(bundle_argv[at + 1])], tonumber(bundle_argv[at + 2])
  local argv = {{}}
  for j = 1, count do
    argv[j] = bundle_argv[at + 2 + j]
  end
  at = at + 2 + count
  KEYS, ARGV = {{bundle_keys[i]}}, argv
  local ok, reply = pcall(script)
  if not ok then
    -- redis.call raises its error reply as a table (Redis 7.2 on) or as its text ("WRONGTYPE ...");
    -- a Lua runtime error is text without a code. Each becomes the error reply it is alone.
    if type(reply) ~= 'table' then
      reply = tostring(reply)
      if not string.find(reply, '^[A-Z][A-Z_-]* ') then
        reply = 'ERR ' .. reply
      end
      reply = {{err = reply}}
    elseif not reply.err then
      reply = {{err = 'ERR ' .. tostring(reply)}}
    end
  elseif reply == nil then
    reply = false  -- a nil would end the reply array here
  end
  replies[i] = reply
end
return replies
"""
