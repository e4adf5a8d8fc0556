"""Client identity: user pk or client IP, trusted proxies and X-Forwarded-For."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratelimit_core import InvalidArgument
from ratelimit_core.policies import ClientIdentity, TrustedProxies, client_ip
from ratelimit_core.policies.identity import UNKNOWN_IP, parse_ip

PROXIES = TrustedProxies(["10.0.0.0/8", "2001:db8::/32"])


def test_an_authenticated_user_is_counted_by_primary_key_and_an_anonymous_one_by_ip() -> None:
    assert ClientIdentity("1.2.3.4", "42").key == "user:42"
    assert ClientIdentity("1.2.3.4").key == "ip:1.2.3.4"
    assert ClientIdentity("1.2.3.4").anonymous


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.2.3.4", "1.2.3.4"),
        (" 1.2.3.4 ", "1.2.3.4"),
        ("1.2.3.4:8080", "1.2.3.4"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:DB8:0::1", "2001:db8::1"),
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("unknown", None),
        ("1.2.3.999", None),
        ("[2001:db8::1", None),
        ("", None),
        ("example.com", None),
    ],
)
def test_parse_ip_accepts_addresses_with_optional_port_and_rejects_garbage(value: str, expected: str | None) -> None:
    address = parse_ip(value)
    assert (None if address is None else str(address)) == expected


def test_the_peer_is_the_client_when_no_proxy_is_trusted() -> None:
    assert client_ip("10.0.0.1", ["6.6.6.6"]) == "10.0.0.1"


def test_a_missing_or_garbage_peer_is_the_shared_unknown_identity() -> None:
    assert client_ip(None) == UNKNOWN_IP
    assert client_ip("/run/daphne.sock", ["6.6.6.6"], PROXIES) == UNKNOWN_IP


def test_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    assert client_ip("8.8.8.8", ["6.6.6.6"], PROXIES) == "8.8.8.8"


def test_forwarded_for_is_walked_right_to_left_past_trusted_proxies() -> None:
    # The client wrote 6.6.6.6 itself; 7.7.7.7 is what the outer proxy 10.0.0.2 saw.
    assert client_ip("10.0.0.1", ["6.6.6.6, 7.7.7.7, 10.0.0.2"], PROXIES) == "7.7.7.7"


def test_several_forwarded_for_headers_count_as_one_list_in_order() -> None:
    assert client_ip("10.0.0.1", ["6.6.6.6", "7.7.7.7", "10.0.0.2"], PROXIES) == "7.7.7.7"


def test_garbage_entries_are_skipped() -> None:
    assert client_ip("10.0.0.1", ["6.6.6.6, 7.7.7.7, nonsense, 10.0.0.2"], PROXIES) == "7.7.7.7"


def test_when_every_forwarded_address_is_trusted_the_left_most_is_the_client() -> None:
    assert client_ip("10.0.0.1", ["10.9.9.9, 10.0.0.2"], PROXIES) == "10.9.9.9"


def test_a_trusted_peer_without_forwarded_for_is_the_client() -> None:
    assert client_ip("10.0.0.1", [], PROXIES) == "10.0.0.1"
    assert client_ip("10.0.0.1", ["garbage"], PROXIES) == "10.0.0.1"


def test_ipv6_proxies_and_clients() -> None:
    assert client_ip("2001:db8::5", ["2a00::1, 2001:db8::7"], PROXIES) == "2a00::1"


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "10.0.0.1/8", "nonsense", 42])
def test_bad_trusted_proxies_are_refused_naming_the_entry(bad: object) -> None:
    with pytest.raises(InvalidArgument, match="trusted proxy"):
        TrustedProxies([bad])  # type: ignore[list-item]


def test_a_bare_string_of_trusted_proxies_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="list of CIDRs"):
        TrustedProxies("10.0.0.0/8")


addresses = st.one_of(st.ip_addresses(v=4).map(str), st.sampled_from(["10.1.2.3", "10.0.0.9", "junk", "::1"]))


@given(peer=st.sampled_from(["10.0.0.1", "8.8.8.8"]), entries=st.lists(addresses, max_size=6))
def test_client_ip_is_the_peer_or_a_forwarded_address_and_never_trusted_unless_all_are(
    peer: str, entries: list[str]
) -> None:
    result = client_ip(peer, [", ".join(entries)], PROXIES)
    valid = [str(parse_ip(e)) for e in entries if parse_ip(e) is not None]
    assert result in {peer, *valid}
    untrusted_seen = [a for a in valid if ipaddress.ip_address(a) not in PROXIES]
    if peer == "8.8.8.8":
        assert result == peer
    elif untrusted_seen:
        assert result == untrusted_seen[-1]
