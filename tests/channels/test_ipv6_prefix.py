"""WS_RATE_IPV6_PREFIX through the middleware: a /64 is one client for per-IP limits and anonymous identities."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from ratelimit_channels import RateLimitMiddleware
from ratelimit_core import Backend
from support.ws_app import User, client, expect_refused, expect_welcome, make_app, router

REFUSED = "connection_limit_exceeded"
SAME_64 = ("2001:db8:1:2::1", "2001:db8:1:2:aaaa::7")
OTHER_64 = "2001:db8:1:3::1"


async def test_two_addresses_in_one_64_share_the_per_ip_limit(backend: Backend) -> None:
    app = make_app(backend, conn_per_ip=1)
    held = client(app, ip=SAME_64[0])
    assert (await expect_welcome(held))["ip"] == "2001:db8:1:2::/64"
    await expect_refused(client(app, ip=SAME_64[1]), REFUSED)
    await expect_refused(client(app, ip=SAME_64[1], user=User(pk=3)), REFUSED)
    await expect_welcome(client(app, ip=OTHER_64))


async def test_two_addresses_in_one_64_are_one_anonymous_identity(backend: Backend) -> None:
    app = make_app(backend, conn_per_user=1)
    held = client(app, ip=SAME_64[0])
    await expect_welcome(held)
    await expect_refused(client(app, ip=SAME_64[1]), REFUSED)
    await expect_welcome(client(app, ip=OTHER_64))


async def test_prefix_128_keeps_every_ipv6_address_apart(backend: Backend) -> None:
    app = make_app(backend, conn_per_ip=1, conn_per_user=1, ipv6_prefix=128)
    held = client(app, ip=SAME_64[0])
    assert (await expect_welcome(held))["ip"] == SAME_64[0]
    other = client(app, ip=SAME_64[1])
    assert (await expect_welcome(other))["ip"] == SAME_64[1]
    await expect_refused(client(app, ip=SAME_64[0]), REFUSED)


async def test_prefix_48_groups_wider(backend: Backend) -> None:
    app = make_app(backend, conn_per_ip=1, ipv6_prefix=48)
    held = client(app, ip=SAME_64[0])
    assert (await expect_welcome(held))["ip"] == "2001:db8:1::/48"
    await expect_refused(client(app, ip=OTHER_64), REFUSED)
    await expect_welcome(client(app, ip="2001:db8:2::1"))


async def test_ipv4_and_ipv4_mapped_clients_stay_whole(backend: Backend) -> None:
    app = make_app(backend, conn_per_ip=1)
    held = client(app, ip="203.0.113.9")
    assert (await expect_welcome(held))["ip"] == "203.0.113.9"
    await expect_refused(client(app, ip="::ffff:203.0.113.9"), REFUSED)
    neighbour = client(app, ip="::ffff:203.0.113.10")
    assert (await expect_welcome(neighbour))["ip"] == "203.0.113.10"


async def test_the_setting_is_read_from_django_settings(backend: Backend) -> None:
    with override_settings(WS_RATE_IPV6_PREFIX=128):
        app = RateLimitMiddleware(router(), backend=backend)
        held = client(app, ip=SAME_64[0])
        assert (await expect_welcome(held))["ip"] == SAME_64[0]


async def test_a_trusted_proxy_is_matched_on_its_full_address_not_its_64(backend: Backend) -> None:
    app = make_app(backend, trusted_proxies=["2001:db8:1:2::5/128"])
    forwarded = [(b"x-forwarded-for", b"2001:db8:9:9::1")]
    via_proxy = client(app, ip="2001:db8:1:2::5", headers=forwarded)
    assert (await expect_welcome(via_proxy))["ip"] == "2001:db8:9:9::/64"
    neighbour = client(app, ip="2001:db8:1:2::6", headers=forwarded)
    assert (await expect_welcome(neighbour))["ip"] == "2001:db8:1:2::/64"


@pytest.mark.parametrize("value", [0, 129, True, 64.0, "64", None])
def test_a_bad_prefix_override_raises_naming_it(value: object) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"^ipv6_prefix \(overriding WS_RATE_IPV6_PREFIX\) must be an int"):
        RateLimitMiddleware(router(), ipv6_prefix=value)


@pytest.mark.parametrize("value", [0, 129, False, "48"])
def test_a_bad_prefix_setting_raises_naming_it(value: object) -> None:
    with override_settings(WS_RATE_IPV6_PREFIX=value), pytest.raises(ImproperlyConfigured) as raised:
        RateLimitMiddleware(router())
    assert str(raised.value).startswith("WS_RATE_IPV6_PREFIX must be an int from 1 to 128")
    assert repr(value) in str(raised.value)
