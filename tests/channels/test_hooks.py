"""Decision hooks through the middleware, and the DEBUG log of denials."""

from __future__ import annotations

import logging

import pytest

from ratelimit_core import Backend
from ratelimit_core.observe import Decision, DecisionHooks
from support.ws_app import User, client, expect_closed, expect_refused, expect_welcome, make_app


async def test_every_decision_reaches_the_hooks_with_its_limit_and_code(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Decision] = []
    app = make_app(
        backend, hooks=DecisionHooks(seen.append), conn_per_user=1, msg_rps=0.001, msg_burst=1, max_payload_bytes=8
    )
    user = User(pk=7)
    first = client(app, user=user)
    await expect_welcome(first)
    with caplog.at_level(logging.DEBUG, logger="ratelimit_channels"):
        await expect_refused(client(app, user=user), "connection_limit_exceeded")
        await first.send_to(text_data="ok")
        assert await first.receive_from() == "ok"
        await first.send_to(text_data="again")
        assert (await first.receive_json_from())["code"] == "rate_limit_exceeded"
        await first.send_to(text_data="x" * 9)
        assert (await first.receive_json_from())["code"] == "payload_too_large"
        await expect_closed(first, 4009, "payload_too_large")

    outcomes = [(d.limit, d.allowed, d.code, d.identity) for d in seen]
    assert outcomes == [
        ("user", True, None, "user:7"),
        ("user", False, "connection_limit_exceeded", "user:7"),
        ("rate", True, None, "user:7"),
        ("rate", False, "rate_limit_exceeded", "user:7"),
        ("payload", False, "payload_too_large", "user:7"),
    ]
    denials = [r for r in caplog.records if getattr(r, "ratelimit_code", None)]
    assert [r.ratelimit_code for r in denials] == [  # type: ignore[attr-defined]
        "connection_limit_exceeded",
        "rate_limit_exceeded",
        "payload_too_large",
    ]
    assert all(r.levelno == logging.DEBUG for r in denials)
