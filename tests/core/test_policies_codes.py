"""The wire codes, close reasons and the error frame of a Denial."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from ratelimit_core.policies import (
    CLOSE_CONNECTION_REFUSED,
    MAX_CLOSE_REASON_BYTES,
    ROOM_FULL,
    Denial,
    close_reason,
)


def test_wire_codes_are_the_documented_values() -> None:
    from ratelimit_core.policies import codes

    assert (codes.CONNECTION_LIMIT_EXCEEDED, codes.ROOM_FULL) == ("connection_limit_exceeded", "room_full")
    assert (codes.PAYLOAD_TOO_LARGE, codes.RATE_LIMIT_EXCEEDED) == ("payload_too_large", "rate_limit_exceeded")
    assert (codes.CLOSE_CONNECTION_REFUSED, codes.CLOSE_PAYLOAD_TOO_LARGE, codes.CLOSE_RATE_LIMITED) == (
        4008,
        4009,
        4010,
    )
    assert (codes.BACKEND_UNAVAILABLE, codes.CLOSE_TRY_AGAIN_LATER) == ("backend_unavailable", 1013)
    assert (codes.HTTP_TOO_MANY_REQUESTS, codes.HTTP_SERVICE_UNAVAILABLE) == (429, 503)


def test_a_short_reason_is_kept_whole() -> None:
    assert close_reason("room_full") == "room_full"


def test_a_long_reason_is_cut_to_123_bytes_without_splitting_a_character() -> None:
    reason = close_reason("é" * 100)  # 200 bytes
    assert reason == "é" * 61
    assert len(reason.encode("utf-8")) == 122


@given(st.text())
def test_close_reason_is_a_valid_utf8_prefix_of_at_most_123_bytes(text: str) -> None:
    reason = close_reason(text)
    encoded = reason.encode("utf-8")
    assert len(encoded) <= MAX_CLOSE_REASON_BYTES
    assert text.encode("utf-8", "replace").startswith(encoded)


def test_denial_frame_is_the_documented_json_object() -> None:
    denial = Denial(ROOM_FULL, "room is full (3 members)", 5000, CLOSE_CONNECTION_REFUSED)
    assert json.loads(denial.frame_text()) == {
        "type": "error",
        "code": "room_full",
        "message": "room is full (3 members)",
        "retry_after_ms": 5000,
    }
    assert denial.close_reason == "room_full"
