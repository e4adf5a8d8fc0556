"""System checks: every bad WS_RATE_* setting reported at once by `manage.py check`, with the middleware's own words."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.apps import apps
from django.core.checks import CheckMessage, run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from ratelimit_channels import RateLimitMiddleware
from ratelimit_channels.apps import RateLimitChannelsConfig
from ratelimit_core import MemoryBackend
from support.ws_app import router

E001 = "ratelimit_channels.E001"
E002 = "ratelimit_channels.E002"
E003 = "ratelimit_channels.E003"
W001 = "ratelimit_channels.W001"


@pytest.fixture(autouse=True)
def installed() -> Iterator[None]:
    """The app installed (its ready() registers the checks), in DEBUG unless a test says otherwise."""
    with override_settings(INSTALLED_APPS=["ratelimit_channels"], DEBUG=True):
        yield


def ours(**settings: Any) -> list[CheckMessage]:
    """The messages of this app's checks under `settings`."""
    with override_settings(**settings):
        return [message for message in run_checks() if str(message.id).startswith("ratelimit_channels.")]


def test_installing_the_app_uses_its_app_config() -> None:
    assert isinstance(apps.get_app_config("ratelimit_channels"), RateLimitChannelsConfig)


def test_valid_settings_give_no_message() -> None:
    assert (
        ours(WS_RATE_CONN_PER_USER=2, WS_RATE_MSG_RPS=5, WS_RATE_MSG_BURST=10, WS_RATE_BACKEND="redis://r:6379/0") == []
    )


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("WS_RATE_CONN_PER_USER", -1),
        ("WS_RATE_CONN_PER_IP", "3"),
        ("WS_RATE_MSG_RPS", "fast"),
        ("WS_RATE_BACKEND", "memcached://x"),
        ("WS_MAX_PAYLOAD_BYTES", 1.5),
        ("WS_RATE_ENABLED", "yes"),
        ("WS_RATE_ON_BACKEND_ERROR", "ignore"),
        ("WS_RATE_TRUSTED_PROXIES", "10.0.0.0/8"),
        ("WS_RATE_ROOM_KWARG", ""),
        ("WS_RATE_ROOM_RESOLVER", "no.such.module.resolver"),
        ("WS_RATE_LEASE_MS", 0),
        ("WS_RATE_IPV6_PREFIX", 129),
        ("WS_RATE_IPV6_PREFIX", True),
    ],
)
def test_an_invalid_value_is_e001_naming_the_setting_the_value_and_the_fix(setting: str, value: object) -> None:
    [error] = ours(**{setting: value})
    assert (error.id, error.obj) == (E001, setting)
    assert error.msg.startswith(setting)
    assert repr(value) in error.msg
    assert error.hint is not None and error.hint.startswith(f"Set {setting} to ")


@pytest.mark.parametrize(
    "settings",
    [
        {"WS_RATE_CONN_PER_USER": -1},
        {"WS_RATE_MSG_RPS": "fast"},
        {"WS_RATE_BACKEND": "memcached://x"},
        {"WS_RATE_MSG_BURST": 5},
        {"WS_RATE_HEARTBEAT_MS": 60_000, "WS_RATE_LEASE_MS": 30_000},
    ],
)
def test_the_check_says_what_the_middleware_raises(settings: dict[str, object]) -> None:
    [error] = ours(**settings)
    with override_settings(**settings), pytest.raises(ImproperlyConfigured) as raised:
        RateLimitMiddleware(router())
    assert str(raised.value) == error.msg


def test_every_bad_value_is_reported_at_once() -> None:
    errors = ours(WS_RATE_CONN_PER_USER=-1, WS_RATE_MSG_RPS="fast", WS_RATE_BACKEND="memcached://x")
    assert sorted((error.id, error.obj) for error in errors) == [
        (E001, "WS_RATE_BACKEND"),
        (E001, "WS_RATE_CONN_PER_USER"),
        (E001, "WS_RATE_MSG_RPS"),
    ]


def test_the_middleware_names_every_bad_value_too_the_first_one_leading() -> None:
    with (
        override_settings(WS_RATE_CONN_PER_USER=-1, WS_RATE_MSG_RPS="fast"),
        pytest.raises(ImproperlyConfigured, match=r"^WS_RATE_CONN_PER_USER .*; WS_RATE_MSG_RPS "),
    ):
        RateLimitMiddleware(router())


@pytest.mark.parametrize(
    ("settings", "setting"),
    [
        ({"WS_RATE_MSG_BURST": 5}, "WS_RATE_MSG_BURST"),
        ({"WS_RATE_HEARTBEAT_MS": 60_000, "WS_RATE_LEASE_MS": 30_000}, "WS_RATE_HEARTBEAT_MS"),
    ],
)
def test_values_valid_alone_but_not_together_are_e002(settings: dict[str, object], setting: str) -> None:
    [error] = ours(**settings)
    assert (error.id, error.obj) == (E002, setting)


def test_a_password_in_a_bad_backend_url_is_not_echoed() -> None:
    [error] = ours(WS_RATE_BACKEND="memcache://user:s3cret@cache:11211")
    assert error.id == E001
    assert "s3cret" not in f"{error.msg} {error.hint}"
    assert "memcache://user:***@cache:11211" in error.msg


def test_an_unknown_setting_name_is_e003_with_the_closest_valid_name() -> None:
    [error] = ours(WS_RATE_CONN_PER_USR=1)
    assert (error.id, error.obj) == (E003, "WS_RATE_CONN_PER_USR")
    assert "WS_RATE_CONN_PER_USR is not a setting" in error.msg
    assert error.hint is not None and "Did you mean WS_RATE_CONN_PER_USER?" in error.hint


def test_an_unknown_name_far_from_any_lists_the_valid_ones() -> None:
    [error] = ours(WS_MAX_XYZZY=1)
    assert error.id == E003
    assert error.hint is not None and "WS_RATE_CONN_PER_IP" in error.hint


@pytest.mark.parametrize("backend", ["memory://", MemoryBackend()])
def test_the_memory_backend_outside_debug_is_w001(backend: object) -> None:
    [warning] = ours(DEBUG=False, WS_RATE_BACKEND=backend)
    assert (warning.id, warning.obj) == (W001, "WS_RATE_BACKEND")
    assert "per process" in warning.msg
    assert warning.hint is not None and "redis://" in warning.hint


def test_the_default_backend_outside_debug_is_w001() -> None:
    assert [message.id for message in ours(DEBUG=False)] == [W001]


@pytest.mark.parametrize(
    "settings",
    [
        {"DEBUG": True},
        {"DEBUG": False, "WS_RATE_BACKEND": "redis://r:6379/0"},
        {"DEBUG": False, "WS_RATE_ENABLED": False},
    ],
)
def test_no_w001_in_debug_on_a_shared_store_or_when_disabled(settings: dict[str, object]) -> None:
    assert ours(**settings) == []
