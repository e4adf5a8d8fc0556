"""Who a connection counts as: an authenticated user's primary key, or else its client IP.

The client IP is the peer's address unless the peer is a trusted proxy; then the
X-Forwarded-For entries are walked right to left (each proxy appends the address
it saw) and the first address that is not a trusted proxy is the client. Every
value goes through `ipaddress`; garbage is skipped, never trusted. A peer that is
missing or not an IP address becomes the shared `UNKNOWN_IP` identity, which is
limited like any other: an unknown client never means no limit.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from ..errors import InvalidArgument

__all__ = ["NO_PROXIES", "UNKNOWN_IP", "ClientIdentity", "TrustedProxies", "client_ip", "parse_ip"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN_IP: Final = "unknown"
"""The client IP of every connection whose address is not known."""


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """The identity limits are counted against."""

    ip: str
    """The client's address in canonical form, or `UNKNOWN_IP`."""
    user: str | None = None
    """The authenticated user's primary key as text; None for an anonymous client."""

    @property
    def anonymous(self) -> bool:
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
    """The client's address as text, or `UNKNOWN_IP`.

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
