"""WS_RATE_LIMITS_RESOLVER through the middleware on every backend: per-connection overrides of any limit (tiers),
read once at connect, validated once per distinct override, a bad one logged and the defaults applied."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from ratelimit_channels import RateLimitMiddleware
from ratelimit_channels.settings import TIER_FIELDS, SettingsReader
from ratelimit_core import Backend, ManualClock
from support.ws_app import client, expect_refused, expect_welcome, make_app, router


@dataclass(frozen=True)
class Member:
    pk: int
    tier: str = "free"
    is_authenticated: bool = True


TIERS: dict[str, dict[str, object] | None] = {
    "free": None,
    "paying": {"msg_rps": 4, "conn_per_user": 3},
    "staff": {"msg_rps": None, "msg_types": None, "msg_quota": None, "conn_per_user": None, "connect_rps": None},
}


def by_tier(scope: Mapping[str, Any]) -> dict[str, object] | None:
    user = scope.get("user")
    return None if user is None else TIERS[user.tier]


async def send_until_refused(socket: Any, limit: int) -> int:
    """Messages echoed before the first refusal (at most `limit`)."""
    for n in range(limit):
        await socket.send_to(text_data=f"m{n}")
        reply = await socket.receive_from()
        if reply != f"m{n}":
            assert json.loads(reply)["code"] == "rate_limit_exceeded"
            return n
    return limit


async def test_a_tier_override_sets_the_connections_rate_and_staff_are_unlimited(
    backend: Backend, clock: ManualClock
) -> None:
    app = make_app(backend, msg_rps=1, msg_burst=2, limits_resolver=by_tier)
    free, paying, staff = (client(app, user=Member(n, tier)) for n, tier in enumerate(("free", "paying", "staff")))
    for socket in (free, paying, staff):
        await expect_welcome(socket)
    assert await send_until_refused(free, 50) == 2
    # The paying tier's rate alone: its burst is the rate's default (4), not the site's 2.
    assert await send_until_refused(paying, 50) == 4
    assert await send_until_refused(staff, 200) == 200
    clock.advance(250)
    assert await send_until_refused(paying, 50) == 1  # 4/s: one token in 250 ms, exactly
    for socket in (free, paying, staff):
        await socket.disconnect()


async def test_a_tier_overrides_connection_limits_at_connect(backend: Backend) -> None:
    app = make_app(backend, conn_per_user=1, limits_resolver=by_tier)
    kept = []
    for _ in range(3):
        socket = client(app, user=Member(7, "paying"))
        await expect_welcome(socket)
        kept.append(socket)
    await expect_refused(client(app, user=Member(7, "paying")), "connection_limit_exceeded")
    for _ in range(5):
        socket = client(app, user=Member(8, "staff"))
        await expect_welcome(socket)
        kept.append(socket)
    free = client(app, user=Member(9))
    await expect_welcome(free)
    await expect_refused(client(app, user=Member(9)), "connection_limit_exceeded")
    for socket in [*kept, free]:
        await socket.disconnect()


async def test_a_tier_lifts_the_quota_and_the_type_rates(backend: Backend) -> None:
    app = make_app(backend, msg_quota=(2, 60), msg_types={"chat": {"rps": 0.001}}, limits_resolver=by_tier)
    free, staff = client(app, user=Member(1)), client(app, user=Member(2, "staff"))
    for socket in (free, staff):
        await expect_welcome(socket)
    chat = json.dumps({"type": "chat"})
    for socket, expected in ((free, [True, False, False]), (staff, [True, True, True])):
        passed = []
        for _ in range(3):
            await socket.send_to(text_data=chat)
            passed.append(await socket.receive_from() == chat)
        assert passed == expected
    await free.send_to(text_data="x")
    assert (await free.receive_json_from())["code"] == "quota_exceeded"
    for socket in (free, staff):
        await socket.disconnect()


@pytest.mark.parametrize(
    ("overrides", "logged"),
    [
        ({"msg_rps": -1}, "WS_RATE_LIMITS_RESOLVER test_tiers.<locals>.resolver(scope)['msg_rps'] (overriding"),
        ({"backend": "redis://x"}, "returned 'backend', which is not a limit it may override"),
        ({"msg_burst": 5, "msg_rps": None}, "['msg_burst'] (overriding WS_RATE_MSG_BURST) must be None"),
        ({"msg_types": {"chat": {"rps": 0}}}, "['msg_types'] (overriding WS_RATE_MSG_TYPES)['chat']['rps']"),
        (["msg_rps"], "must return a dict or None"),
    ],
)
async def test_a_bad_override_is_logged_naming_the_resolver_and_key_and_the_defaults_apply(
    backend: Backend, caplog: pytest.LogCaptureFixture, overrides: object, logged: str
) -> None:
    def resolver(scope: Mapping[str, Any]) -> object:
        return overrides

    resolver.__qualname__ = "test_tiers.<locals>.resolver"
    resolver.__module__ = ""
    app = make_app(backend, msg_rps=1, msg_burst=1, limits_resolver=resolver)
    for n in range(2):
        with caplog.at_level(logging.ERROR, logger="ratelimit_channels"):
            socket = client(app, user=Member(n))
            await expect_welcome(socket)
            assert await send_until_refused(socket, 10) == 1  # the site's limits
            await socket.disconnect()
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    # A bad dict is logged once (the second connection finds it cached); a value that is no dict, each time.
    assert len(errors) == (2 if isinstance(overrides, list) else 1)
    assert logged in errors[0].getMessage()
    assert "default limits" in errors[0].getMessage()


async def test_a_resolver_that_raises_is_logged_and_the_defaults_apply(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(scope: Mapping[str, Any]) -> dict[str, object]:
        raise KeyError("tier")

    app = make_app(backend, msg_rps=1, msg_burst=1, limits_resolver=broken)
    socket = client(app, user=Member(1))
    await expect_welcome(socket)
    assert await send_until_refused(socket, 10) == 1
    await socket.disconnect()
    assert "raised; this connection gets the default limits" in caplog.text
    assert "KeyError" in caplog.text


async def test_each_distinct_override_is_validated_once(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(backend, limits_resolver=by_tier)
    validated: list[object] = []
    original = SettingsReader.overridden

    def counting(self: SettingsReader, limits: Mapping[str, object], source: str) -> Any:
        validated.append(dict(limits))
        return original(self, limits, source)

    monkeypatch.setattr(SettingsReader, "overridden", counting)
    for n in range(6):
        socket = client(app, user=Member(n, ("free", "paying", "staff")[n % 3]))
        await expect_welcome(socket)
        await socket.disconnect()
    assert validated == [TIERS["paying"], TIERS["staff"]]


def test_only_limits_may_be_overridden() -> None:
    assert set(TIER_FIELDS) == {
        "conn_per_user",
        "conn_per_ip",
        "room_max_members",
        "connect_rps",
        "connect_burst",
        "msg_rps",
        "msg_burst",
        "max_payload_bytes",
        "msg_strikes",
        "msg_types",
        "msg_quota",
        "shadow",
    }


@pytest.mark.parametrize("value", [5, "no.such.module.tiers"])
def test_a_bad_limits_resolver_setting_is_named(value: object) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"^limits_resolver \(overriding WS_RATE_LIMITS_RESOLVER\)"):
        RateLimitMiddleware(router(), limits_resolver=value)
