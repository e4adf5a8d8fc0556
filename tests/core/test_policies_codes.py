"""The wire codes, close reasons and the error frame of a Denial."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from ratelimit_core.policies import CloseCode, Denial, ErrorCode
from ratelimit_core.policies.codes import MAX_CLOSE_REASON_BYTES, close_reason


def test_wire_codes_are_the_documented_values() -> None:
    assert {code.name: code.value for code in ErrorCode} == {
        "CONNECTION_LIMIT_EXCEEDED": "connection_limit_exceeded",
        "ROOM_FULL": "room_full",
        "CONNECTION_RATE_EXCEEDED": "connection_rate_exceeded",
        "PAYLOAD_TOO_LARGE": "payload_too_large",
        "RATE_LIMIT_EXCEEDED": "rate_limit_exceeded",
        "QUOTA_EXCEEDED": "quota_exceeded",
        "BACKEND_UNAVAILABLE": "backend_unavailable",
    }
    assert {code.name: code.value for code in CloseCode} == {
        "CONNECTION_REFUSED": 4008,
        "PAYLOAD_TOO_LARGE": 4009,
        "RATE_LIMITED": 4010,
        "TRY_AGAIN_LATER": 1013,
    }


def test_typed_codes_serialise_as_their_plain_values() -> None:
    frame = {"code": ErrorCode.ROOM_FULL, "close": CloseCode.CONNECTION_REFUSED}
    assert json.dumps(frame, separators=(",", ":")) == '{"code":"room_full","close":4008}'
    assert f"{ErrorCode.ROOM_FULL} {CloseCode.CONNECTION_REFUSED}" == "room_full 4008"


def test_the_frame_names_the_limit_only_when_a_types_bucket_refused() -> None:
    typed = Denial(ErrorCode.RATE_LIMIT_EXCEEDED, "too many 'chat' messages", 250, None, limit="chat")
    plain = Denial(ErrorCode.RATE_LIMIT_EXCEEDED, "too many messages", 250, None)
    assert json.loads(typed.frame_text()) == {
        "type": "error",
        "code": "rate_limit_exceeded",
        "message": "too many 'chat' messages",
        "retry_after_ms": 250,
        "limit": "chat",
    }
    assert "limit" not in json.loads(plain.frame_text())


def test_a_connect_denial_over_http_is_503_when_the_storage_failed_else_429() -> None:
    full = Denial(ErrorCode.ROOM_FULL, "room is full", 5000, CloseCode.CONNECTION_REFUSED)
    down = Denial(ErrorCode.BACKEND_UNAVAILABLE, "down", 5000, CloseCode.TRY_AGAIN_LATER)
    assert (full.http_status, down.http_status) == (429, 503)


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
    denial = Denial(ErrorCode.ROOM_FULL, "room is full (3 members)", 5000, CloseCode.CONNECTION_REFUSED)
    assert denial.frame_text() == (
        '{"type":"error","code":"room_full","message":"room is full (3 members)","retry_after_ms":5000}'
    )
    assert denial.close_reason == "room_full"
