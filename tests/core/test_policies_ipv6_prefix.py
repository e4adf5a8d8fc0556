"""IPv6 clients grouped by prefix: `ip_group`, and the per-IP limit on every backend counting a /64 as one client."""

from __future__ import annotations

import pytest

from ratelimit_core import Backend, InvalidArgument
from ratelimit_core.policies import ClientIdentity, ConnectionLimits, ConnectionPolicy, client_ip
from ratelimit_core.policies.identity import DEFAULT_IPV6_PREFIX, UNKNOWN_IP, TrustedProxies, ip_group
from support.policy_clients import admitted, denied

SAME_64 = ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe")
OTHER_64 = "2001:db8:1:3::1"
OTHER_64_SAME_48 = "2001:db8:1:ffff::9"


def anonymous(address: str, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> ClientIdentity:
    return ClientIdentity(ip_group(address, ipv6_prefix))


@pytest.mark.parametrize(
    ("address", "prefix", "expected"),
    [
        ("2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"),
        ("2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6"),
        ("2001:db8:1:2:3:4:5:6", 1, "::/1"),
        ("203.0.113.9", 64, "203.0.113.9"),
        ("203.0.113.9", 1, "203.0.113.9"),
        ("::ffff:203.0.113.9", 64, "203.0.113.9"),
        ("::ffff:203.0.113.9", 48, "203.0.113.9"),
        (UNKNOWN_IP, 64, UNKNOWN_IP),
    ],
)
def test_ip_group_is_the_ipv6_network_and_leaves_ipv4_whole(address: str, prefix: int, expected: str) -> None:
    assert ip_group(address, prefix) == expected


def test_the_default_prefix_is_a_64() -> None:
    assert DEFAULT_IPV6_PREFIX == 64
    assert ip_group("2001:db8:1:2::1") == "2001:db8:1:2::/64"


def test_an_anonymous_ipv6_identity_is_keyed_by_its_network() -> None:
    assert anonymous(SAME_64[0]).key == anonymous(SAME_64[1]).key == "ip:2001:db8:1:2::/64"
    assert anonymous(OTHER_64).key != anonymous(SAME_64[0]).key
    assert anonymous(SAME_64[0], 128).key == "ip:2001:db8:1:2::1"


@pytest.mark.parametrize("prefix", [0, 129, -64, True, False, 64.0, "64", None])
def test_a_prefix_that_is_not_an_int_from_1_to_128_is_refused_by_name(prefix: object) -> None:
    with pytest.raises(InvalidArgument, match=r"^ipv6_prefix must be an int from 1 to 128"):
        ip_group("2001:db8::1", prefix)  # type: ignore[arg-type]


def test_trusted_proxies_are_matched_on_the_full_peer_address_before_grouping() -> None:
    # Only the proxy's own address is trusted, not its /64 neighbours.
    trusted = TrustedProxies(["2001:db8:1:2::5/128"])
    forwarded = ["2001:db8:9:9::1"]
    assert ip_group(client_ip("2001:db8:1:2::5", forwarded, trusted), 64) == "2001:db8:9:9::/64"
    assert ip_group(client_ip("2001:db8:1:2::6", forwarded, trusted), 64) == "2001:db8:1:2::/64"


async def test_two_addresses_in_one_64_share_the_per_ip_limit(backend: Backend) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(per_ip=1))
    admitted(await policy.admit(anonymous(SAME_64[0])))
    denied(await policy.admit(anonymous(SAME_64[1])))
    # Signed in, it is still the same network for the per-IP limit.
    denied(await policy.admit(ClientIdentity(ip_group(SAME_64[1], 64), "alice")))
    admitted(await policy.admit(anonymous(OTHER_64)))


async def test_two_addresses_in_one_64_share_one_anonymous_identity(backend: Backend) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(per_user=1))
    admitted(await policy.admit(anonymous(SAME_64[0])))
    denied(await policy.admit(anonymous(SAME_64[1])))
    admitted(await policy.admit(anonymous(OTHER_64)))


async def test_prefix_128_keeps_every_ipv6_address_apart(backend: Backend) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(per_user=1, per_ip=1))
    admitted(await policy.admit(anonymous(SAME_64[0], 128)))
    admitted(await policy.admit(anonymous(SAME_64[1], 128)))
    denied(await policy.admit(anonymous(SAME_64[0], 128)))


async def test_prefix_48_groups_wider(backend: Backend) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(per_ip=1))
    admitted(await policy.admit(anonymous(SAME_64[0], 48)))
    denied(await policy.admit(anonymous(OTHER_64_SAME_48, 48)))
    admitted(await policy.admit(anonymous("2001:db8:2::1", 48)))


async def test_ipv4_and_ipv4_mapped_addresses_stay_whole(backend: Backend) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(per_ip=1))
    admitted(await policy.admit(anonymous("203.0.113.9")))
    # The mapped form is the same client as the IPv4 address, and no neighbour joins it.
    denied(await policy.admit(anonymous("::ffff:203.0.113.9")))
    admitted(await policy.admit(anonymous("203.0.113.10")))
    admitted(await policy.admit(anonymous("::ffff:203.0.113.11")))
