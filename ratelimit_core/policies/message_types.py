"""Per-message-type rates: which type a frame has, and the bucket each type has per identity.

A `TypeRate` gives frames of one type (``"chat"``, ``"typing"``) a token bucket of
their own per sender identity, on top of the identity's bucket for every message.
The type comes from a resolver, ``resolver(text, data) -> str | None``; the default,
`json_message_type`, reads the ``"type"`` field of a JSON object in a text frame.
A frame whose type has no `TypeRate` (or that has no type) passes only the other limits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..arguments import check_count
from ..bucket import bucket_spec, burst_in_effect
from ..errors import InvalidArgument
from .identity import ClientIdentity

__all__ = [
    "MAX_TYPED_FRAME_CHARS",
    "MessageTypeResolver",
    "TypeRate",
    "json_message_type",
    "message_type_key",
]

MessageTypeResolver = Callable[[str | None, bytes | None], "str | None"]
"""``resolver(text, data)``: the type of a frame (exactly one of the two is set), or None for no type."""

MAX_TYPED_FRAME_CHARS: Final = 16_384
"""`json_message_type` parses only text frames up to this many characters: a larger frame
has no type (cap frames with a payload limit if that matters), so a huge frame costs no parse."""

_OBJECT_START: Final = re.compile(r"\s*\{")


def json_message_type(text: str | None, data: bytes | None = None) -> str | None:
    """The ``"type"`` string of a JSON object text frame; None for anything else, never raising.

    Binary frames, text over `MAX_TYPED_FRAME_CHARS`, text that is not a JSON object
    (checked on its first character before any parse), invalid or too deeply nested
    JSON and a ``"type"`` that is not a string all give None.
    """
    if text is None or len(text) > MAX_TYPED_FRAME_CHARS or _OBJECT_START.match(text) is None:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    return kind if isinstance(kind, str) else None


def message_type_key(identity: ClientIdentity, name: str) -> str:
    """The bucket of one identity's frames of type `name` (the name's length first, so no two pairs share a key)."""
    return f"msgtype:{len(name)}:{name}:{identity.key}"


@dataclass(frozen=True, slots=True)
class TypeRate:
    """The token bucket of one message type: `rate` per second, `burst` tokens (the rate rounded up by default)."""

    name: str
    """The type, as the resolver gives it (``"chat"``); a non-empty string."""
    rate: float
    """Frames of this type per second per identity (refill rate of its bucket); may be fractional."""
    burst: int | None = None
    """Bucket size; None: the rate rounded up (at least 1)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidArgument(f"a message type must be a non-empty str, got {self.name!r:.80}")
        if self.burst is not None:
            check_count(f"burst of message type {self.name!r}", self.burst)
        try:
            bucket_spec(self.rate, self.bucket_burst, 1)
        except InvalidArgument as exc:
            raise InvalidArgument(f"message type {self.name!r}: {exc}") from None

    @property
    def bucket_burst(self) -> int:
        """The burst in effect (the given one, or the rate rounded up, at least 1)."""
        return burst_in_effect(self.rate, self.burst)
