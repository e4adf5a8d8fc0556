"""Identity through the middleware: client address forms and X-Forwarded-For from trusted proxies only."""

from __future__ import annotations

from ratelimit_core import Backend
from support.ws_app import User, client, expect_refused, expect_welcome, make_app

PROXY = "10.0.0.5"
TRUSTED = ["10.0.0.0/8"]


def forwarded(*values: str) -> list[tuple[bytes, bytes]]:
    return [(b"x-forwarded-for", value.encode("latin-1")) for value in values]


async def test_behind_a_trusted_proxy_the_right_most_untrusted_forwarded_address_is_the_client(
    backend: Backend,
) -> None:
    app = make_app(backend, conn_per_ip=1, trusted_proxies=TRUSTED)
    # The client claims 6.6.6.6; the proxy appended what it saw: 7.7.7.7.
    held = client(app, ip=PROXY, headers=forwarded("6.6.6.6, 7.7.7.7"))
    assert (await expect_welcome(held))["ip"] == "7.7.7.7"
    await expect_refused(client(app, ip=PROXY, headers=forwarded("1.1.1.1, 7.7.7.7")), "connection_limit_exceeded")
    other = client(app, ip=PROXY, headers=forwarded("7.7.7.8"))
    assert (await expect_welcome(other))["ip"] == "7.7.7.8"


async def test_several_forwarded_for_headers_are_read_as_one_list(backend: Backend) -> None:
    app = make_app(backend, trusted_proxies=TRUSTED)
    socket = client(app, ip=PROXY, headers=forwarded("6.6.6.6", "7.7.7.7, 10.0.0.9"))
    assert (await expect_welcome(socket))["ip"] == "7.7.7.7"


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(backend: Backend) -> None:
    app = make_app(backend, conn_per_ip=1, trusted_proxies=TRUSTED)
    held = client(app, ip="8.8.8.8", headers=forwarded("7.7.7.7"))
    assert (await expect_welcome(held))["ip"] == "8.8.8.8"
    # A client cannot escape its limit by inventing a forwarded address.
    await expect_refused(client(app, ip="8.8.8.8", headers=forwarded("9.9.9.9")), "connection_limit_exceeded")


async def test_no_proxy_is_trusted_by_default(backend: Backend) -> None:
    socket = client(make_app(backend), ip=PROXY, headers=forwarded("7.7.7.7"))
    assert (await expect_welcome(socket))["ip"] == PROXY


async def test_the_client_address_may_be_a_list_or_a_tuple(backend: Backend) -> None:
    app = make_app(backend, conn_per_ip=1)
    held = client(app, client=["2001:db8::1", 1])
    assert (await expect_welcome(held))["ip"] == "2001:db8::/64"  # grouped by WS_RATE_IPV6_PREFIX
    await expect_refused(client(app, client=("2001:db8::1", 2)), "connection_limit_exceeded")


async def test_a_signed_in_user_is_counted_by_primary_key_wherever_it_connects_from(backend: Backend) -> None:
    app = make_app(backend, conn_per_user=1)
    held = client(app, user=User(pk=7), ip="1.1.1.1")
    await expect_welcome(held)
    await expect_refused(client(app, user=User(pk=7), ip="2.2.2.2"), "connection_limit_exceeded")
    await expect_welcome(client(app, user=User(pk=7, is_authenticated=False), ip="2.2.2.2"))
