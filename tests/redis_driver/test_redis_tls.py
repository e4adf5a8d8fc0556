"""``rediss://`` against a real redis-server that speaks only TLS and requires client certificates.

The certificates come from a test CA (trustme): the server verifies the client's
certificate (``tls-auth-clients yes``) and the client verifies the server's. A
client the server refuses is a `BackendMisconfigured` that says what to fix; files
that cannot be used are an `InvalidArgument` when the backend is built.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import redis.asyncio
import trustme
from redis.asyncio.connection import SSLConnection
from redis.exceptions import ConnectionError as RedisConnectionError

from ratelimit_core import BackendMisconfigured, BackendUnavailable, InvalidArgument, RedisBackend, backend_from_url
from ratelimit_core.redis.tls_probe import refusal_behind
from support.servers import cluster_binaries, required_server_binary, running
from support.tls_server import TLSClusterProcess, TLSServerProcess

pytestmark = pytest.mark.redis

_HANG_S = 10.0
"""Bounds a hang so it fails the test; not a speed check."""


@pytest.fixture(scope="module")
def mutual_tls() -> Iterator[TLSServerProcess]:
    """A redis-server that speaks only TLS and drops a client without a certificate from its CA."""
    with running(TLSServerProcess(required_server_binary("redis"), client_auth=True)) as server:
        yield server


@pytest.fixture
def one_way_tls() -> Iterator[TLSServerProcess]:
    """A redis-server over TLS that asks no client certificate (a test may kill it)."""
    with running(TLSServerProcess(required_server_binary("redis"), client_auth=False)) as server:
        yield server


@pytest.fixture
def foreign_certificate(tmp_path: Path) -> tuple[str, str]:
    """A client certificate and key from a CA the server does not trust."""
    issued = trustme.CA().issue_cert("intruder")
    issued.cert_chain_pems[0].write_to_path(str(tmp_path / "foreign.pem"))
    issued.private_key_pem.write_to_path(str(tmp_path / "foreign.key"))
    return str(tmp_path / "foreign.pem"), str(tmp_path / "foreign.key")


async def _within(call: Any) -> Any:
    return await asyncio.wait_for(call, _HANG_S)


async def test_a_client_certificate_in_the_url_query_is_accepted_by_a_server_that_requires_one(
    mutual_tls: TLSServerProcess,
) -> None:
    async with backend_from_url(mutual_tls.verified_url(), prefix="tls-query:") as backend:
        assert isinstance(backend, RedisBackend)
        await _within(backend.ping())
        assert (await _within(backend.counter_incr("k", 2))).value == 2
        assert (await _within(backend.bucket_consume("b", rate=1, burst=3))).remaining == 2
        await _within(backend.clear())


async def test_a_client_certificate_given_as_options_is_accepted(mutual_tls: TLSServerProcess) -> None:
    certfile, keyfile = mutual_tls.client_files()
    async with RedisBackend.from_url(
        mutual_tls.url,
        prefix="tls-options:",
        ssl_ca_certs=mutual_tls.ca_file,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    ) as backend:
        assert (await _within(backend.set_add("s", "m", lease_ms=10_000))).added
        assert await _within(backend.set_members("s")) == {"m"}
        await _within(backend.clear())


_ATTEMPTS = 10
"""With TLS 1.3 the server's refusal races a reset about half the time (see `tls_probe`): every attempt must
still be a misconfiguration."""
_PATIENT: dict[str, Any] = {"socket_timeout": 10, "socket_connect_timeout": 10}
"""Timeouts no busy machine reaches: a timeout would be an outage, which is not what these tests are about."""


async def test_a_client_without_a_certificate_is_refused_as_a_misconfiguration_saying_what_to_fix(
    mutual_tls: TLSServerProcess,
) -> None:
    for _ in range(_ATTEMPTS):  # a new client each time: each attempt makes a new connection
        async with backend_from_url(mutual_tls.verified_url(client_certificate=False), **_PATIENT) as backend:
            with pytest.raises(BackendMisconfigured, match="ssl_certfile and ssl_keyfile") as caught:
                await _within(backend.counter_incr("k"))
            with pytest.raises(BackendMisconfigured, match="tls-auth-clients"):
                await _within(backend.ping())
        assert not isinstance(caught.value, BackendUnavailable)  # not an outage: waiting will not help
        assert f"127.0.0.1:{mutual_tls.port}" in str(caught.value)


async def test_a_tls_client_without_a_certificate_whose_server_dies_sees_an_outage(
    one_way_tls: TLSServerProcess,
) -> None:
    async with backend_from_url(one_way_tls.verified_url(client_certificate=False), **_PATIENT) as backend:
        assert (await _within(backend.counter_incr("k"))).value == 1
        one_way_tls.kill()  # the pooled connection breaks; the probe finds no server: an outage, as it is
        with pytest.raises(BackendUnavailable):
            await _within(backend.counter_incr("k"))
        with pytest.raises(BackendUnavailable):
            await _within(backend.ping())


async def test_a_client_certificate_from_a_ca_the_server_does_not_trust_is_a_misconfiguration(
    mutual_tls: TLSServerProcess, foreign_certificate: tuple[str, str]
) -> None:
    certfile, keyfile = foreign_certificate
    for _ in range(_ATTEMPTS):
        async with RedisBackend.from_url(
            mutual_tls.url, ssl_ca_certs=mutual_tls.ca_file, ssl_certfile=certfile, ssl_keyfile=keyfile, **_PATIENT
        ) as backend:
            with pytest.raises(BackendMisconfigured, match="signed by a CA in the server's tls-ca-cert-file"):
                await _within(backend.counter_incr("k"))


async def test_a_server_certificate_from_an_untrusted_ca_is_refused_even_with_a_client_certificate(
    mutual_tls: TLSServerProcess,
) -> None:
    certfile, keyfile = mutual_tls.client_files()
    async with RedisBackend.from_url(mutual_tls.url, ssl_certfile=certfile, ssl_keyfile=keyfile) as backend:
        with pytest.raises(BackendMisconfigured, match="ssl_ca_certs"):
            await _within(backend.counter_incr("k"))


def test_a_missing_certificate_file_is_an_invalid_argument_naming_the_option(mutual_tls: TLSServerProcess) -> None:
    _, keyfile = mutual_tls.client_files()
    with pytest.raises(InvalidArgument, match=re.escape("ssl_certfile='/nonexistent/client.pem'")):
        RedisBackend.from_url(mutual_tls.url, ssl_certfile="/nonexistent/client.pem", ssl_keyfile=keyfile)
    with pytest.raises(InvalidArgument, match=re.escape("ssl_ca_certs='/nonexistent/ca.pem'")):
        backend_from_url(f"{mutual_tls.url}?ssl_ca_certs=/nonexistent/ca.pem")


def test_a_key_that_does_not_match_the_certificate_is_an_invalid_argument(
    mutual_tls: TLSServerProcess, foreign_certificate: tuple[str, str]
) -> None:
    certfile, _ = mutual_tls.client_files()
    _, foreign_key = foreign_certificate
    with pytest.raises(InvalidArgument, match="cannot be used as this client's certificate"):
        RedisBackend.from_url(mutual_tls.url, ssl_certfile=certfile, ssl_keyfile=foreign_key)


def test_a_key_without_its_certificate_is_an_invalid_argument(mutual_tls: TLSServerProcess) -> None:
    _, keyfile = mutual_tls.client_files()
    with pytest.raises(InvalidArgument, match=r"ssl_keyfile=.* needs ssl_certfile"):
        RedisBackend.from_url(mutual_tls.url, ssl_keyfile=keyfile)


def test_the_key_password_is_not_echoed_when_the_key_cannot_be_used(
    mutual_tls: TLSServerProcess, foreign_certificate: tuple[str, str]
) -> None:
    certfile, _ = mutual_tls.client_files()
    _, foreign_key = foreign_certificate
    with pytest.raises(InvalidArgument) as caught:
        RedisBackend.from_url(
            f"{mutual_tls.url}?ssl_password=pass-phrase-7f3a", ssl_certfile=certfile, ssl_keyfile=foreign_key
        )
    assert "pass-phrase-7f3a" not in str(caught.value)


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[TLSClusterProcess]:
    """A three-master Redis Cluster over TLS (cluster bus too), client certificates required."""
    with running(TLSClusterProcess(*cluster_binaries())) as cluster:
        yield cluster


@pytest.mark.cluster
async def test_a_rediss_cluster_url_with_a_client_certificate_runs_on_a_tls_cluster(
    tls_cluster: TLSClusterProcess,
) -> None:
    async with backend_from_url(tls_cluster.url, prefix="tls-cluster:") as backend:
        assert isinstance(backend, RedisBackend)
        for key in ("a", "b", "c", "d"):  # spread over the nodes' slots
            assert (await _within(backend.counter_incr(key, 2))).value == 2
        assert (await _within(backend.bucket_consume("bucket", rate=1, burst=3))).remaining == 2
        await _within(backend.clear())
        assert await _within(backend.counter_get("a")) == 0


@pytest.mark.cluster
async def test_a_rediss_cluster_url_without_a_client_certificate_is_a_misconfiguration(
    tls_cluster: TLSClusterProcess,
) -> None:
    url = tls_cluster.url.partition("?")[0] + "?" + urlencode({"ssl_ca_certs": tls_cluster.ca_file})
    for _ in range(_ATTEMPTS):
        async with backend_from_url(url, **_PATIENT) as backend:
            with pytest.raises(BackendMisconfigured, match="ssl_certfile and ssl_keyfile"):
                await _within(backend.counter_incr("k"))


def test_a_cluster_url_query_takes_only_tls_options() -> None:
    with pytest.raises(InvalidArgument, match="only with rediss\\+cluster://"):
        backend_from_url("redis+cluster://127.0.0.1:7000?ssl_ca_certs=/ca.pem")
    with pytest.raises(InvalidArgument, match="got 'socket_timeout'"):
        backend_from_url("rediss+cluster://127.0.0.1:7000?socket_timeout=1")
    with pytest.raises(InvalidArgument, match=r"ssl_check_hostname .* true or false"):
        backend_from_url("rediss+cluster://127.0.0.1:7000?ssl_check_hostname=maybe")
    client = backend_from_url("rediss+cluster://127.0.0.1:7000?ssl_check_hostname=false").client  # type: ignore[attr-defined]
    settings = client.nodes_manager.connection_kwargs
    assert issubclass(settings["connection_class"], SSLConnection)
    assert settings["ssl_check_hostname"] is False


async def _connected_clients(url: str) -> int:
    async with redis.asyncio.from_url(url, socket_timeout=5) as admin:
        info = await admin.info("clients")
    return int(info["connected_clients"]) - 1  # not counting this one


async def test_the_probe_of_a_server_that_accepts_says_nothing_and_closes_its_connection_when_cancelled(
    one_way_tls: TLSServerProcess,
) -> None:
    url = one_way_tls.verified_url(client_certificate=False)
    lost = RedisConnectionError("the connection broke")
    async with backend_from_url(url, socket_connect_timeout=0.3) as quick:
        # Accepted: no alert within the connect timeout, so the lost connection stays what it was (an outage).
        assert await _within(refusal_behind(lost, quick.client)) is lost  # type: ignore[attr-defined]
    async with backend_from_url(url, socket_connect_timeout=30) as patient:
        probe = asyncio.ensure_future(refusal_behind(lost, patient.client))  # type: ignore[attr-defined]
        for _ in range(500):  # until the probe's connection is open (bounded: 5 s)
            if await _connected_clients(url) == 1:
                break
            await asyncio.sleep(0.01)
        assert await _connected_clients(url) == 1
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        for _ in range(500):
            if await _connected_clients(url) == 0:
                break
            await asyncio.sleep(0.01)
        assert await _connected_clients(url) == 0
