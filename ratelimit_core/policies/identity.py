"""Who a connection counts as: an authenticated user's primary key, or else its client IP.

The client IP is the peer's address unless the peer is a trusted proxy; then the
X-Forwarded-For entries are walked right to left (each proxy appends the address
it saw) and the first address that is not a trusted proxy is the client. Every
value goes through `ipaddress`; garbage is skipped, never trusted. A peer that is
missing or not an IP address becomes the shared ``UNKNOWN_IP`` identity, which is
limited like any other: an unknown client never means no limit.

An IPv6 client is then grouped by its network (`ip_group`): one subscriber usually
gets a whole /64, so counting single addresses would let it take 2**64 identities.
Trusted proxies are matched on full addresses before any grouping: a proxy is a
real peer, and its neighbours in the same /64 are not trusted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from ..errors import InvalidArgument

__all__ = [
    "DEFAULT_IPV6_PREFIX",
    "NO_PROXIES",
    "UNKNOWN_IP",
    "ClientIdentity",
    "TrustedProxies",
    "check_ipv6_prefix",
    "client_ip",
    "ip_group",
    "parse_ip",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN_IP: Final = "unknown"
"""The client IP of every connection whose address is not known."""

DEFAULT_IPV6_PREFIX: Final = 64
"""The prefix length IPv6 clients are grouped by: a /64 is one subscriber."""


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """The identity limits are counted against."""

    ip: str
    """The client's address in canonical form (an IPv6 one grouped by `ip_group`), or ``UNKNOWN_IP``."""
    user: str | None = None
    """The authenticated user's primary key as text; None for an anonymous client."""

    @property
    def anonymous(self) -> bool:
        """True when no user is signed in (the identity is the client's IP)."""
        return self.user is None

    @property
    def key(self) -> str:
        """What per-user limits and the message bucket count: ``user:<pk>``, or ``ip:<address>`` when anonymous."""
        return f"ip:{self.ip}" if self.user is None else f"user:{self.user}"


class TrustedProxies:
    """The networks whose X-Forwarded-For header is believed (none by default)."""

    __slots__ = ("_networks",)

    def __init__(self, networks: Iterable[str | IPNetwork] = ()) -> None:
        if isinstance(networks, str):
            # A bare string would be iterated character by character.
            raise InvalidArgument(f"trusted proxies must be a list of CIDRs, got the str {networks!r}")
        parsed: list[IPNetwork] = []
        for network in networks:
            if isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network):
                parsed.append(network)
                continue
            if not isinstance(network, str):
                raise InvalidArgument(f"a trusted proxy must be a CIDR string, got {network!r}")
            try:
                parsed.append(ipaddress.ip_network(network.strip()))
            except ValueError as exc:
                raise InvalidArgument(f"trusted proxy {network!r} is not a CIDR or an IP address ({exc})") from None
        self._networks = tuple(parsed)

    @property
    def networks(self) -> tuple[IPNetwork, ...]:
        """The trusted networks, parsed."""
        return self._networks

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        return any(address in network for network in self._networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __repr__(self) -> str:
        return f"TrustedProxies({[str(network) for network in self._networks]!r})"


NO_PROXIES: Final = TrustedProxies()


def parse_ip(value: str) -> IPAddress | None:
    """The address in a peer or X-Forwarded-For value, or None when it is not one.

    Accepts an optional port (``1.2.3.4:80``, ``[2001:db8::1]:80``); an IPv4-mapped
    IPv6 address becomes its IPv4 address, so one client has one identity.
    """
    text = value.strip()
    if text.startswith("["):
        text, bracket, _ = text[1:].partition("]")
        if not bracket:
            return None
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_ip(peer: str | None, forwarded_for: Iterable[str] = (), trusted: TrustedProxies = NO_PROXIES) -> str:
    """The client's address as text, or ``UNKNOWN_IP``.

    `peer` is the address of the socket's other end; `forwarded_for` holds the
    X-Forwarded-For header values in the order received (several headers count as
    one list). They are read only when the peer is in `trusted`. When every
    forwarded address is a trusted proxy too, the left-most one is the client.
    """
    address = parse_ip(peer) if peer is not None else None
    if address is None:
        return UNKNOWN_IP
    if address not in trusted:
        return str(address)
    entries = [entry for value in forwarded_for for entry in value.split(",")]
    for entry in reversed(entries):
        hop = parse_ip(entry)
        if hop is None:
            continue
        address = hop
        if hop not in trusted:
            break
    return str(address)


def ip_group(address: str, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> str:
    """What per-IP limits count `address` as: its network at `ipv6_prefix` bits for IPv6.

    An IPv4 address (also IPv4-mapped IPv6) stays whole, as does any address at
    prefix 128; a value that is no address (``UNKNOWN_IP``) is returned unchanged.
    ``ip_group("2001:db8:1:2:3::4", 64) == "2001:db8:1:2::/64"``.
    """
    check_ipv6_prefix("ipv6_prefix", ipv6_prefix)
    parsed = parse_ip(address)
    if parsed is None:
        return address
    if isinstance(parsed, ipaddress.IPv4Address) or ipv6_prefix == 128:
        return str(parsed)
    return str(ipaddress.IPv6Network((parsed, ipv6_prefix), strict=False))


def check_ipv6_prefix(name: str, value: object) -> int:
    """`value` if it is an int from 1 to 128 (not a bool), else `InvalidArgument` naming `name`."""
    # bool is an int subclass, and True would quietly mean /1.
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 128:
        return value
    raise InvalidArgument(f"{name} must be an int from 1 to 128 (an IPv6 prefix length), got {value!r:.200}")
