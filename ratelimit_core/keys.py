"""How a backend turns (prefix, primitive, key) into one storage key.

Every string is a valid key. The stored key is ``prefix + kind + ":" + part``,
where `kind` names the primitive (``c`` counter, ``s`` set, ``b`` bucket), so the
three primitives never share state. `part` is the key itself when it is at most
`MAX_RAW_KEY_CHARS` characters and does not start with ``#``; otherwise it is
``#`` followed by the SHA-256 of the key, which bounds key length and keeps raw
and hashed forms from ever colliding.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from .errors import InvalidArgument

__all__ = ["BUCKET", "COUNTER", "MAX_RAW_KEY_CHARS", "SET", "check_prefix", "storage_key"]

Kind = Literal["c", "s", "b"]
COUNTER: Kind = "c"
SET: Kind = "s"
BUCKET: Kind = "b"

MAX_RAW_KEY_CHARS = 128


def check_prefix(prefix: object) -> str:
    """A prefix is any str that does not end in the middle of nothing: '' is allowed."""
    if not isinstance(prefix, str):
        raise InvalidArgument(f"prefix must be a str, got {prefix!r}")
    return prefix


def storage_key(prefix: str, kind: Kind, key: str) -> str:
    """The storage key for `key` of primitive `kind` under `prefix`."""
    if len(key) > MAX_RAW_KEY_CHARS or key.startswith("#"):
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{prefix}{kind}:#{digest}"
    return f"{prefix}{kind}:{key}"
