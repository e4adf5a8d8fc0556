"""Settings: read from Django when a connection starts, keyword overrides win, bad values are named."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from ratelimit_channels import SETTINGS, BackendOptions, RateLimitMiddleware
from ratelimit_channels.settings import SettingsReader
from ratelimit_core import Backend
from support.ws_app import User, client, expect_refused, expect_welcome, make_app, router

ALICE = User(pk=1)


@pytest.mark.parametrize(
    ("override", "value", "named"),
    [
        ("conn_per_user", -1, "conn_per_user (overriding WS_RATE_CONN_PER_USER)"),
        ("conn_per_ip", "3", "conn_per_ip (overriding WS_RATE_CONN_PER_IP)"),
        ("room_max_members", True, "room_max_members (overriding WS_RATE_ROOM_MAX_MEMBERS)"),
        ("max_payload_bytes", 1.5, "max_payload_bytes (overriding WS_MAX_PAYLOAD_BYTES)"),
        ("msg_rps", 0, "msg_rps (overriding WS_RATE_MSG_RPS)"),
        ("msg_rps", -1.0, "msg_rps (overriding WS_RATE_MSG_RPS)"),
        ("msg_rps", float("inf"), "msg_rps (overriding WS_RATE_MSG_RPS)"),
        ("msg_rps", "10", "msg_rps (overriding WS_RATE_MSG_RPS)"),
        ("msg_burst", 5, "msg_burst (overriding WS_RATE_MSG_BURST)"),  # a burst without a rate
        ("msg_strikes", 0, "msg_strikes (overriding WS_RATE_MSG_STRIKES)"),
        ("trusted_proxies", "10.0.0.0/8", "trusted_proxies (overriding WS_RATE_TRUSTED_PROXIES)"),
        ("trusted_proxies", ["10.0.0.0/33"], "trusted_proxies (overriding WS_RATE_TRUSTED_PROXIES)"),
        ("ipv6_prefix", 0, "ipv6_prefix (overriding WS_RATE_IPV6_PREFIX)"),
        ("ipv6_prefix", True, "ipv6_prefix (overriding WS_RATE_IPV6_PREFIX)"),
        ("room_kwarg", "", "room_kwarg (overriding WS_RATE_ROOM_KWARG)"),
        ("room_resolver", 42, "room_resolver (overriding WS_RATE_ROOM_RESOLVER)"),
        ("room_resolver", "no.such.module.resolver", "room_resolver (overriding WS_RATE_ROOM_RESOLVER)"),
        ("conn_retry_ms", -1, "conn_retry_ms (overriding WS_RATE_CONN_RETRY_MS)"),
        ("lease_ms", 0, "lease_ms (overriding WS_RATE_LEASE_MS)"),
        ("heartbeat_ms", 60_000, "heartbeat_ms (overriding WS_RATE_HEARTBEAT_MS)"),
        ("enabled", "yes", "enabled (overriding WS_RATE_ENABLED)"),
        ("http_denial", 1, "http_denial (overriding WS_RATE_HTTP_DENIAL)"),
        ("backend", "mysql://localhost", "backend (overriding WS_RATE_BACKEND)"),
        ("backend", None, "backend (overriding WS_RATE_BACKEND)"),
        ("on_backend_error", "ignore", "on_backend_error (overriding WS_RATE_ON_BACKEND_ERROR)"),
        ("on_backend_error", None, "on_backend_error (overriding WS_RATE_ON_BACKEND_ERROR)"),
        ("fallback", "no", "fallback (overriding WS_RATE_FALLBACK)"),
        ("backend_timeout_ms", 0, "backend_timeout_ms (overriding WS_RATE_BACKEND_TIMEOUT_MS)"),
        ("backend_timeout_ms", None, "backend_timeout_ms (overriding WS_RATE_BACKEND_TIMEOUT_MS)"),
        ("backend_timeout_ms", 0.5, "backend_timeout_ms (overriding WS_RATE_BACKEND_TIMEOUT_MS)"),
        ("fallback_processes", 0, "fallback_processes (overriding WS_RATE_FALLBACK_PROCESSES)"),
        ("fallback_cooldown_ms", -1, "fallback_cooldown_ms (overriding WS_RATE_FALLBACK_COOLDOWN_MS)"),
    ],
)
def test_a_bad_override_raises_improperly_configured_naming_it(override: str, value: object, named: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=named.replace("(", r"\(").replace(")", r"\)")):
        RateLimitMiddleware(router(), **{override: value})


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("WS_RATE_CONN_PER_USER", -2),
        ("WS_MAX_PAYLOAD_BYTES", "1kb"),
        ("WS_RATE_MSG_RPS", float("nan")),
        ("WS_RATE_TRUSTED_PROXIES", ["not-a-network"]),
        ("WS_RATE_BACKEND", "redis"),
        ("WS_RATE_ON_BACKEND_ERROR", "open"),
        ("WS_RATE_FALLBACK_PROCESSES", 0),
        ("WS_RATE_IPV6_PREFIX", 129),
    ],
)
def test_a_bad_django_setting_raises_when_the_middleware_is_built(setting: str, value: object) -> None:
    with override_settings(**{setting: value}), pytest.raises(ImproperlyConfigured, match=f"^{setting}"):
        RateLimitMiddleware(router())


def test_the_outage_settings_default_to_a_fallback_with_short_timeouts() -> None:
    current = SettingsReader({name: default for name, (_, default) in SETTINGS.items()}).current()
    assert current.on_backend_error == "fallback"
    assert current.backend_options == BackendOptions(
        fallback=True, on_error="fallback", timeout_ms=50, processes=1, cooldown_ms=1_000
    )


def test_the_outage_settings_are_read_from_django_settings() -> None:
    outage_settings = {
        "WS_RATE_ON_BACKEND_ERROR": "deny",
        "WS_RATE_FALLBACK": False,
        "WS_RATE_BACKEND_TIMEOUT_MS": 20,
        "WS_RATE_FALLBACK_PROCESSES": 4,
        "WS_RATE_FALLBACK_COOLDOWN_MS": 300,
    }
    with override_settings(**outage_settings):
        current = SettingsReader({}).current()
    assert current.on_backend_error == "deny"
    assert current.backend_options == BackendOptions(
        fallback=False, on_error="deny", timeout_ms=20, processes=4, cooldown_ms=300
    )


def test_an_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="conn_per_usr"):
        RateLimitMiddleware(router(), conn_per_usr=1)


def test_rate_and_burst_beyond_the_bucket_precision_name_both_settings() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"WS_RATE_MSG_RPS.*WS_RATE_MSG_BURST"):
        RateLimitMiddleware(router(), msg_rps=0.123457, msg_burst=10**9)


async def test_django_settings_are_read_when_each_connection_starts(backend: Backend) -> None:
    app = RateLimitMiddleware(router(), backend=backend)
    with override_settings(WS_RATE_CONN_PER_USER=0):
        await expect_refused(client(app, user=ALICE), "connection_limit_exceeded")
    await expect_welcome(client(app, user=ALICE))


async def test_keyword_overrides_win_over_django_settings(backend: Backend) -> None:
    with override_settings(WS_RATE_CONN_PER_USER=0, WS_RATE_CONN_PER_IP=0):
        app = RateLimitMiddleware(router(), backend=backend, conn_per_user=5)
        await expect_refused(client(app, user=ALICE), "connection_limit_exceeded")  # the IP limit still applies
        app = RateLimitMiddleware(router(), backend=backend, conn_per_user=5, conn_per_ip=None)
        await expect_welcome(client(app, user=ALICE))


async def test_a_setting_made_bad_after_start_up_fails_the_next_connection(backend: Backend) -> None:
    app = RateLimitMiddleware(router(), backend=backend)
    socket = client(app, user=ALICE)
    await socket.send_input({"type": "websocket.connect"})  # the app starts at the next await
    with override_settings(WS_RATE_CONN_PER_USER="two"), pytest.raises(ImproperlyConfigured, match="two"):
        await socket.wait()


async def test_a_room_resolver_may_be_a_dotted_path_setting(backend: Backend) -> None:
    with override_settings(WS_RATE_ROOM_RESOLVER="support.ws_app.query_room", WS_RATE_ROOM_MAX_MEMBERS=1):
        app = RateLimitMiddleware(router(), backend=backend)
        held = client(app, "/ws/echo/?t1")
        assert (await expect_welcome(held))["room"] == "t1"
        await expect_refused(client(app, "/ws/echo/?t1"), "room_full")


async def test_when_disabled_nothing_is_limited(backend: Backend) -> None:
    app = make_app(backend, enabled=False, conn_per_user=0, max_payload_bytes=1)
    socket = client(app, user=ALICE)
    assert (await expect_welcome(socket))["room"] is None  # no scope["ratelimit"] either
    await socket.send_to(text_data="longer than one byte")
    assert await socket.receive_from() == "longer than one byte"
    await socket.disconnect()


async def test_other_scope_types_pass_through_untouched(backend: Backend) -> None:
    seen: list[Any] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    scope = {"type": "http", "path": "/"}
    await make_app(backend, inner, conn_per_user=0)(scope, None, None)  # type: ignore[arg-type]
    assert seen == [scope]
    assert seen[0] is scope


def test_the_middleware_works_without_any_django_settings() -> None:
    script = textwrap.dedent(
        """
        import asyncio, json
        from asgiref.testing import ApplicationCommunicator
        from django.conf import settings
        from ratelimit_channels import RateLimitMiddleware

        async def echo(scope, receive, send):
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            while (message := await receive())["type"] != "websocket.disconnect":
                await send({"type": "websocket.send", "text": message["text"]})

        async def main():
            app = RateLimitMiddleware(echo, conn_per_user=1)
            first = ApplicationCommunicator(app, {"type": "websocket", "path": "/", "client": ("1.2.3.4", 1)})
            await first.send_input({"type": "websocket.connect"})
            print((await first.receive_output())["type"])
            second = ApplicationCommunicator(app, {"type": "websocket", "path": "/", "client": ("1.2.3.4", 2)})
            await second.send_input({"type": "websocket.connect"})
            await second.receive_output()
            print(json.loads((await second.receive_output())["text"])["code"])
            print((await second.receive_output())["code"])
            print(settings.configured)

        asyncio.run(main())
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["websocket.accept", "connection_limit_exceeded", "4008", "False"]


def test_settings_are_read_as_django_gives_them_through_every_override_layer() -> None:
    """The middleware reads settings without Django's exception per unset name: the values must not differ."""
    from django.conf import settings

    from ratelimit_channels.settings_source import django_settings, setting_value

    names = ("WS_RATE_CONN_PER_USER", "WS_RATE_MSG_RPS", "WS_RATE_BACKEND", "SECRET_KEY", "USE_TZ")

    def both() -> list[tuple[object, object]]:
        source = django_settings()
        return [(getattr(settings, name, "unset"), setting_value(source, name, "unset")) for name in names]

    def same() -> None:
        pairs = both()
        assert all(django == ours for django, ours in pairs), pairs

    same()
    with override_settings(WS_RATE_CONN_PER_USER=3):
        same()
        with override_settings(WS_RATE_MSG_RPS=7, WS_RATE_BACKEND="memory://"):
            same()
            del settings.WS_RATE_CONN_PER_USER  # hidden in this layer only
            same()
            assert both()[0] == ("unset", "unset")
            settings.WS_RATE_MSG_RPS = 8  # assigned at run time: seen by the next connection
            same()
            assert both()[1] == (8, 8)
        same()
        assert both()[0] == (3, 3)
    same()


def test_a_list_setting_changed_in_place_is_seen_by_the_next_connection() -> None:
    proxies = ["10.0.0.1"]
    with override_settings(WS_RATE_TRUSTED_PROXIES=proxies):
        reader = SettingsReader({})
        first = reader.current().trusted_proxies
        proxies.append("10.0.0.2")
        second = reader.current().trusted_proxies
    assert first != second
