"""redis+sentinel:// URLs: what they build, their errors, and a master switch as an outage the fallback rides out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio.sentinel import SentinelConnectionPool

from ratelimit_core import (
    BackendMisconfigured,
    BackendUnavailable,
    FallbackBackend,
    InvalidArgument,
    RedisBackend,
    backend_from_url,
)
from ratelimit_core.cli import EXIT_BACKEND, EXIT_OK, main
from ratelimit_core.redis import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_RETRIES, DEFAULT_SOCKET_TIMEOUT_S
from ratelimit_core.redis.connect import server_name
from ratelimit_core.redis.sentinel import DEFAULT_SENTINEL_PORT
from support.lossy_proxy import LossyProxy
from support.servers import SentinelGroup, SentinelProcess, required_server_binary, running

_SECRETS = ("m4ster-pw", "s3ntinel-pw")
_POLLS = 400
_POLL_S = 0.05


def _pool(url: str, **options: Any) -> SentinelConnectionPool:
    backend = backend_from_url(url, **options)
    assert isinstance(backend, RedisBackend)
    pool = backend.client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    return pool


def _sentinel_settings(pool: SentinelConnectionPool) -> list[dict[str, Any]]:
    return [sentinel.connection_pool.connection_kwargs for sentinel in pool.sentinel_manager.sentinels]


def test_the_url_names_the_sentinels_the_service_and_the_database() -> None:
    pool = _pool("redis+sentinel://127.0.0.1:26380,sentinel-b,[::1]:26382/orders%2Fmain/4")
    assert pool.service_name == "orders/main"
    assert pool.connection_kwargs["db"] == 4
    addresses = [(settings["host"], settings["port"]) for settings in _sentinel_settings(pool)]
    assert addresses == [("127.0.0.1", 26380), ("sentinel-b", DEFAULT_SENTINEL_PORT), ("::1", 26382)]
    assert _pool("redis+sentinel://h:1/svc").connection_kwargs["db"] == 0


def test_the_url_credentials_are_the_masters_and_the_sentinels_have_their_own_options() -> None:
    pool = _pool("redis+sentinel://app:m4ster-pw@h:1,h:2/svc?sentinel_username=watcher&sentinel_password=s3ntinel-pw")
    assert (pool.connection_kwargs["username"], pool.connection_kwargs["password"]) == ("app", "m4ster-pw")
    assert "sentinel_password" not in pool.connection_kwargs
    for settings in _sentinel_settings(pool):
        assert (settings["username"], settings["password"]) == ("watcher", "s3ntinel-pw")
    keyword = _pool("redis+sentinel://h:1/svc", sentinel_password="s3ntinel-pw")
    assert [settings["password"] for settings in _sentinel_settings(keyword)] == ["s3ntinel-pw"]
    assert keyword.connection_kwargs.get("password") is None


def test_the_master_gets_the_driver_defaults_and_each_sentinel_is_asked_once() -> None:
    pool = _pool("redis+sentinel://h:1,h:2/svc")
    master = pool.connection_kwargs
    assert (master["socket_timeout"], master["socket_connect_timeout"]) == (
        DEFAULT_SOCKET_TIMEOUT_S,
        DEFAULT_CONNECT_TIMEOUT_S,
    )
    assert master["retry"].get_retries() == DEFAULT_RETRIES
    for settings in _sentinel_settings(pool):
        # The next sentinel is the retry; the same timeouts bound each one.
        assert settings["retry"].get_retries() == 0
        assert (settings["socket_timeout"], settings["socket_connect_timeout"]) == (
            DEFAULT_SOCKET_TIMEOUT_S,
            DEFAULT_CONNECT_TIMEOUT_S,
        )


def test_the_query_string_wins_over_options_and_applies_to_the_sentinels_too() -> None:
    pool = _pool("redis+sentinel://h:1/svc?socket_timeout=2.5", socket_timeout=1, socket_connect_timeout=3)
    assert (pool.connection_kwargs["socket_timeout"], pool.connection_kwargs["socket_connect_timeout"]) == (2.5, 3)
    assert [(s["socket_timeout"], s["socket_connect_timeout"]) for s in _sentinel_settings(pool)] == [(2.5, 3)]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://u:m4ster-pw@h:1", "names the master's service"),
        ("redis+sentinel://u:m4ster-pw@h:1/", "names the master's service"),
        ("redis+sentinel://u:m4ster-pw@h:1/svc/zero", "the database .* is a number after the service name"),
        ("redis+sentinel://u:m4ster-pw@h:port/svc", "lists the sentinels as host:port, got 'h:port'"),
        ("redis+sentinel://u:m4ster-pw@h:1,,h:2/svc", "lists the sentinels as host:port, got ''"),
        ("redis+sentinel://u:m4ster-pw@h:99999/svc", "lists the sentinels as host:port"),
        ("redis+sentinel://u:m4ster-pw@h:1/svc#frag", "no #fragment"),
        ("redis+sentinel://u:m4ster-pw@h:1/svc?socket_timeout=soon", "socket_timeout"),
        ("redis+sentinel://u:m4ster-pw@h:1/svc?sentinel_pasword=s3ntinel-pw", "sentinel_pasword"),
    ],
)
def test_a_bad_url_says_what_to_fix_without_echoing_a_password(url: str, says: str) -> None:
    with pytest.raises(InvalidArgument, match=says) as caught:
        backend_from_url(url)
    assert "redis+sentinel://" in str(caught.value)
    assert not any(secret in str(caught.value) for secret in _SECRETS)


def test_a_single_connection_client_is_refused_for_sentinel_too() -> None:
    with pytest.raises(InvalidArgument, match="single_connection_client"):
        backend_from_url("redis+sentinel://h:1/svc", single_connection_client=True)


def test_the_scheme_is_listed_among_the_valid_ones() -> None:
    with pytest.raises(InvalidArgument, match=r"redis\+sentinel://"):
        backend_from_url("sentinel://h:1/svc")


def test_repr_and_server_name_never_hold_a_password() -> None:
    backend = backend_from_url("redis+sentinel://app:m4ster-pw@h:1,h:2/svc?sentinel_password=s3ntinel-pw")
    assert isinstance(backend, RedisBackend)
    shown = f"{backend!r} {server_name(backend.client)}"
    assert "sentinel service 'svc'" in shown
    assert "h:1,h:2" in shown
    assert not any(secret in shown for secret in _SECRETS)


async def test_no_sentinel_answering_is_an_outage_bounded_by_the_timeouts() -> None:
    # Two closed loopback ports: each sentinel is asked once, under the connect timeout.
    async with backend_from_url(
        "redis+sentinel://app:m4ster-pw@127.0.0.1:1,127.0.0.1:2/svc", socket_connect_timeout=0.2
    ) as backend:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="sentinel service 'svc'") as caught:
            await backend.ping()
        assert time.monotonic() - started < 5  # a bound, not a speed claim: refused ports answer at once
        # Each sentinel is named by its address only, with what it answered.
        assert "sentinel 127.0.0.1:1 - " in str(caught.value)
        assert "sentinel 127.0.0.1:2 - " in str(caught.value)
        assert "m4ster-pw" not in str(caught.value)


@pytest.mark.sentinel
async def test_the_backend_runs_on_the_master_the_sentinels_name(sentinel_server: SentinelGroup) -> None:
    async with backend_from_url(sentinel_server.url, prefix="sentinel-url:") as backend:
        assert isinstance(backend, RedisBackend)
        assert (await backend.counter_incr("hits")).value == 1
        pool = backend.client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.master_address is not None
        assert pool.master_address[1] == sentinel_server.master.port
        assert f"master 127.0.0.1:{sentinel_server.master.port}" in server_name(backend.client)
        await backend.clear()


@pytest.mark.sentinel
async def test_aclose_closes_the_connections_to_the_sentinels_too(sentinel_server: SentinelGroup) -> None:
    backend = backend_from_url(sentinel_server.url)
    assert isinstance(backend, RedisBackend)
    await backend.ping()
    sentinels = backend.client.connection_pool.sentinel_manager.sentinels  # type: ignore[union-attr]
    assert any(sentinel.connection_pool._available_connections for sentinel in sentinels)
    await backend.aclose()
    assert not any(
        connection.is_connected
        for sentinel in sentinels
        for connection in sentinel.connection_pool._available_connections
    )


@pytest.mark.sentinel
async def test_a_password_the_master_does_not_take_is_misconfiguration(sentinel_server: SentinelGroup) -> None:
    url = sentinel_server.url.replace("redis+sentinel://", "redis+sentinel://app:m4ster-pw@")
    async with backend_from_url(url) as backend:
        with pytest.raises(BackendMisconfigured, match="credentials") as caught:
            await backend.ping()
        assert "m4ster-pw" not in str(caught.value)


async def _until_primary_is_used(backend: FallbackBackend) -> None:
    for _ in range(_POLLS):
        await backend.ping()
        if not backend.degraded:
            return
        await asyncio.sleep(_POLL_S)
    pytest.fail("the primary was not used again after the failover")


async def _traffic(backend: FallbackBackend, client: int, stop: asyncio.Event) -> list[str]:
    """Join, spend and leave until `stop`; returns the members it holds at the end (every other one is kept)."""
    kept = []
    for step in range(10_000):
        if stop.is_set():
            break
        member = f"client{client}-{step}"
        await backend.set_add("room", member, capacity=100_000, lease_ms=60_000)
        await backend.bucket_consume(f"user{client}", rate=1_000, burst=1_000)
        if step % 2:
            await backend.set_remove("room", member)
        else:
            kept.append(member)
        await asyncio.sleep(0.01)
    return kept


@pytest.mark.sentinel
async def test_a_killed_master_is_an_outage_and_the_promoted_replica_gets_the_held_slots(
    private_sentinels: SentinelGroup,
) -> None:
    primary = RedisBackend.from_url(private_sentinels.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    async with FallbackBackend(primary, timeout_ms=1000, cooldown_ms=50, max_cooldown_ms=300) as backend:
        stop = asyncio.Event()
        traffic = asyncio.gather(*(_traffic(backend, client, stop) for client in range(5)))
        await asyncio.sleep(0.3)
        old = private_sentinels.master
        old.kill()
        await asyncio.to_thread(private_sentinels.wait_for_new_master, old.port)
        await asyncio.sleep(0.3)
        stop.set()
        kept = {member for members in await traffic for member in members}  # raises if any call raised
        await _until_primary_is_used(backend)
        assert private_sentinels.master.port != old.port
        # What the process holds is on the new master, and nothing it released.
        assert await backend.primary.set_members("room") == kept
        assert not (await backend.set_add("room", "after", lease_ms=60_000)).degraded


@pytest.mark.sentinel
async def test_after_sentinel_failover_the_backend_writes_to_the_new_master(private_sentinels: SentinelGroup) -> None:
    async with RedisBackend.from_url(private_sentinels.url) as backend:
        assert (await backend.set_add("room", "before", lease_ms=60_000)).added
        old = private_sentinels.master
        new = await asyncio.to_thread(private_sentinels.failover)
        # Until the sentinels demote the old master, connections already open may still use it (see the
        # README); once it is a replica, every call reaches the new master.
        await asyncio.to_thread(private_sentinels.wait_until_replica, old)
        for step in range(_POLLS):
            try:
                result = await backend.set_add("room", f"after-{step}", lease_ms=60_000)
            except BackendUnavailable:  # a connection the demotion closed: the outage a FallbackBackend rides
                await asyncio.sleep(_POLL_S)
                continue
            pool = backend.client.connection_pool
            assert isinstance(pool, SentinelConnectionPool)
            if result.added and pool.master_address == ("127.0.0.1", new.port):
                break
            await asyncio.sleep(_POLL_S)
        else:
            pytest.fail("the backend did not reach the new master")
        assert "before" in await backend.set_members("room")
        await backend.clear()


@pytest.mark.sentinel
def test_the_ratelimit_command_takes_a_sentinel_url(
    sentinel_server: SentinelGroup, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--backend", sentinel_server.url, "ping", "--count", "2"]) == EXIT_OK
    assert capsys.readouterr().out.startswith("ok: redis+sentinel:// answered 2 pings")


@pytest.mark.sentinel
async def test_a_frozen_sentinel_costs_one_socket_timeout_and_the_next_one_answers(
    private_sentinels: SentinelGroup,
) -> None:
    first = private_sentinels.sentinels[0]  # the URL lists it first: a new client asks it first
    first.pause()
    try:
        async with backend_from_url(private_sentinels.url, socket_timeout=0.3, socket_connect_timeout=0.3) as backend:
            started = time.monotonic()
            # wait_for bounds the test should the timeout not work; the sentinel's own timeout is 0.3 s.
            assert (await asyncio.wait_for(backend.counter_incr("k"), 10)).value == 1
            assert time.monotonic() - started >= 0.3  # it did wait for the frozen one, then asked the next
            await backend.clear()
    finally:
        first.resume()


_WATCHER = ("watcher", "w4tcher-pw")
"""A sentinel ACL user that may ask for the master's address."""
_BLIND = ("blind", "bl1nd-pw")
"""A sentinel ACL user that may not (no SENTINEL MASTERS)."""
_ALL_SECRETS = (*_SECRETS, _WATCHER[1], _BLIND[1], "wrong-pw")


@pytest.fixture(scope="module")
def guarded_sentinels() -> Iterator[SentinelGroup]:
    """A Sentinel group whose data servers and sentinels each require their own password; never failed over."""
    binary = required_server_binary("redis", "a Sentinel group")
    group = SentinelGroup(
        binary,
        down_after_ms=10_000,
        password=_SECRETS[0],
        sentinel_password=_SECRETS[1],
        sentinel_acl_users=(
            f"{_WATCHER[0]} on >{_WATCHER[1]} -@all +sentinel|masters",
            f"{_BLIND[0]} on >{_BLIND[1]} -@all +ping",
        ),
    )
    with running(group):
        yield group


def _with_credentials(
    group: SentinelGroup, master: str | None, sentinel: str | None, sentinel_user: str | None = None
) -> str:
    url = group.url.replace("redis+sentinel://", f"redis+sentinel://:{master}@" if master else "redis+sentinel://")
    query = [f"sentinel_password={sentinel}"] if sentinel else []
    query += [f"sentinel_username={sentinel_user}"] if sentinel_user else []
    return url + ("?" + "&".join(query) if query else "")


@pytest.mark.sentinel
async def test_the_master_and_the_sentinels_each_get_their_own_password(guarded_sentinels: SentinelGroup) -> None:
    async with backend_from_url(_with_credentials(guarded_sentinels, *_SECRETS)) as backend:
        assert (await backend.counter_incr("k")).value == 1
        assert "m4ster-pw" not in repr(backend)
        await backend.clear()


@pytest.mark.sentinel
async def test_a_sentinel_acl_user_allowed_sentinel_masters_finds_the_master(guarded_sentinels: SentinelGroup) -> None:
    url = _with_credentials(guarded_sentinels, _SECRETS[0], _WATCHER[1], _WATCHER[0])
    async with backend_from_url(url, prefix="sentinel-acl:") as backend:
        assert (await backend.counter_incr("k")).value == 1
        await backend.clear()


@pytest.mark.sentinel
async def test_a_wrong_master_password_behind_good_sentinels_is_misconfiguration(
    guarded_sentinels: SentinelGroup,
) -> None:
    async with backend_from_url(_with_credentials(guarded_sentinels, "wrong-pw", _SECRETS[1])) as backend:
        with pytest.raises(BackendMisconfigured, match="credentials") as caught:
            await backend.ping()
        assert not any(secret in str(caught.value) for secret in _ALL_SECRETS)


def _assert_names_every_sentinel(group: SentinelGroup, message: str) -> None:
    assert f"sentinel service {group.service!r}" in message
    for sentinel in group.sentinels:
        assert f"sentinel 127.0.0.1:{sentinel.port} - " in message
    assert not any(secret in message for secret in _ALL_SECRETS)


@pytest.mark.sentinel
@pytest.mark.parametrize(
    ("sentinel_password", "sentinel_user", "answer"),
    [
        pytest.param("wrong-pw", None, "AuthenticationError", id="wrong-password"),
        pytest.param(None, None, "AuthenticationError", id="no-password"),  # NOAUTH
        pytest.param(_SECRETS[1], "nobody", "AuthenticationError", id="unknown-user"),
        pytest.param(_WATCHER[1], _BLIND[0], "AuthenticationError", id="another-users-password"),
    ],
)
async def test_sentinels_refusing_the_credentials_is_misconfiguration_that_names_the_options(
    guarded_sentinels: SentinelGroup, sentinel_password: str | None, sentinel_user: str | None, answer: str
) -> None:
    url = _with_credentials(guarded_sentinels, _SECRETS[0], sentinel_password, sentinel_user)
    async with backend_from_url(url) as backend:
        with pytest.raises(BackendMisconfigured, match="the sentinels refused the credentials") as caught:
            await backend.ping()
    message = str(caught.value)
    assert "fix the sentinel_username and sentinel_password options" in message
    assert message.count(answer) == len(guarded_sentinels.sentinels)  # each sentinel's own answer
    _assert_names_every_sentinel(guarded_sentinels, message)


@pytest.mark.sentinel
async def test_a_sentinel_user_without_sentinel_masters_is_misconfiguration(guarded_sentinels: SentinelGroup) -> None:
    url = _with_credentials(guarded_sentinels, _SECRETS[0], _BLIND[1], _BLIND[0])
    async with backend_from_url(url) as backend:
        with pytest.raises(BackendMisconfigured, match=r"allow it SENTINEL MASTERS \(\+sentinel\|masters\)") as caught:
            await backend.ping()
    assert "NoPermissionError" in str(caught.value)
    _assert_names_every_sentinel(guarded_sentinels, str(caught.value))


@pytest.mark.sentinel
async def test_each_refusing_sentinel_is_asked_once_per_call(guarded_sentinels: SentinelGroup) -> None:
    proxy = LossyProxy()
    try:
        fronts = [await proxy.front(sentinel.port) for sentinel in guarded_sentinels.sentinels]
        hosts = ",".join(f"127.0.0.1:{port}" for port in fronts)
        url = f"redis+sentinel://:{_SECRETS[0]}@{hosts}/{guarded_sentinels.service}?sentinel_password=wrong-pw"
        async with backend_from_url(url) as backend:
            for calls in (1, 2):
                # A call that may be sent again after a lost connection (set_add) is not: nothing was lost.
                with pytest.raises(BackendMisconfigured, match="sentinel_password"):
                    await backend.set_add("room", "m", lease_ms=1000)
                assert proxy.connections == {sentinel.port: calls for sentinel in guarded_sentinels.sentinels}
    finally:
        await proxy.close()


@pytest.mark.sentinel
async def test_sentinels_that_do_not_answer_are_an_outage_each_asked_once(guarded_sentinels: SentinelGroup) -> None:
    proxy = LossyProxy()
    try:
        fronts = [await proxy.front(sentinel.port) for sentinel in guarded_sentinels.sentinels]
        hosts = ",".join(f"127.0.0.1:{port}" for port in fronts)
        url = f"redis+sentinel://:{_SECRETS[0]}@{hosts}/{guarded_sentinels.service}?sentinel_password={_SECRETS[1]}"
        async with backend_from_url(url, socket_timeout=0.3) as backend:
            for sentinel in guarded_sentinels.sentinels:
                sentinel.pause()
            try:
                with pytest.raises(BackendUnavailable, match="No master found") as caught:
                    # wait_for bounds the test should the timeouts not work; each sentinel's is 0.3 s.
                    await asyncio.wait_for(backend.set_add("room", "m", lease_ms=1000), 30)
            finally:
                for sentinel in guarded_sentinels.sentinels:
                    sentinel.resume()
        assert str(caught.value).count("TimeoutError") == len(guarded_sentinels.sentinels)
        # Neither the master's connection retry nor a resend of set_add asked them again.
        assert proxy.connections == {sentinel.port: 1 for sentinel in guarded_sentinels.sentinels}
    finally:
        await proxy.close()


@pytest.mark.sentinel
async def test_a_caller_that_gives_up_while_a_sentinel_is_silent_leaves_no_connection_to_it(
    guarded_sentinels: SentinelGroup,
) -> None:
    proxy = LossyProxy()
    first = guarded_sentinels.sentinels[0]
    try:
        fronts = [await proxy.front(sentinel.port) for sentinel in guarded_sentinels.sentinels]
        hosts = ",".join(f"127.0.0.1:{port}" for port in fronts)
        url = f"redis+sentinel://:{_SECRETS[0]}@{hosts}/{guarded_sentinels.service}?sentinel_password={_SECRETS[1]}"
        async with backend_from_url(url, socket_timeout=30) as backend:
            first.pause()
            try:
                # ping runs in the caller's task (a script call's round trip is shared, and runs on for the others).
                call = asyncio.ensure_future(backend.ping())
                for _ in range(_POLLS):
                    if proxy.connections.get(first.port):
                        break
                    await asyncio.sleep(_POLL_S)
                await asyncio.sleep(_POLL_S)  # the question is on its way to the silent sentinel
                call.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await call
                for _ in range(_POLLS):  # the client closed its connection to the sentinel it gave up on
                    if not proxy.open_connections:
                        break
                    await asyncio.sleep(_POLL_S)
                assert proxy.open_connections == 0
            finally:
                first.resume()
            # The next call asks again, and finds the master.
            assert (await asyncio.wait_for(backend.counter_incr("k"), 30)).value == 1
            await backend.clear()
    finally:
        await proxy.close()


@pytest.mark.sentinel
async def test_sentinels_refusing_while_the_others_are_down_is_misconfiguration(
    guarded_sentinels: SentinelGroup,
) -> None:
    # The closed port is asked first: refused + down is a misconfiguration (see the discovery's docstring).
    hosts = ",".join(["127.0.0.1:1", *(f"127.0.0.1:{sentinel.port}" for sentinel in guarded_sentinels.sentinels)])
    url = f"redis+sentinel://:{_SECRETS[0]}@{hosts}/{guarded_sentinels.service}?sentinel_password=wrong-pw"
    async with backend_from_url(url) as backend:
        with pytest.raises(BackendMisconfigured, match="sentinel_password") as caught:
            await backend.ping()
    assert "sentinel 127.0.0.1:1 - ConnectionError" in str(caught.value)
    _assert_names_every_sentinel(guarded_sentinels, str(caught.value))


@pytest.mark.sentinel
async def test_a_sentinel_that_took_the_credentials_but_names_no_master_makes_it_an_outage(
    guarded_sentinels: SentinelGroup,
) -> None:
    # A lone sentinel with a password of its own, watching another service: it takes the password the group's
    # sentinels refuse, and does not know the service. The master is what is missing, not a setting.
    binary = required_server_binary("redis", "a sentinel")
    lone = SentinelProcess(binary, service="elsewhere", master_port=1, password="0ther-pw")
    with running(lone):
        hosts = ",".join(f"127.0.0.1:{port}" for port in [*(s.port for s in guarded_sentinels.sentinels), lone.port])
        url = f"redis+sentinel://:{_SECRETS[0]}@{hosts}/{guarded_sentinels.service}?sentinel_password=0ther-pw"
        async with backend_from_url(url) as backend:
            with pytest.raises(BackendUnavailable, match="No master found") as caught:
                await backend.ping()
    assert f"sentinel 127.0.0.1:{lone.port} - does not watch it" in str(caught.value)
    assert str(caught.value).count("AuthenticationError") == len(guarded_sentinels.sentinels)


@pytest.mark.sentinel
async def test_the_fallback_raises_a_sentinel_misconfiguration_instead_of_degrading(
    guarded_sentinels: SentinelGroup,
) -> None:
    primary = RedisBackend.from_url(_with_credentials(guarded_sentinels, _SECRETS[0], "wrong-pw"))
    # A generous deadline: only the refusal, never a slow answer, may decide this test.
    async with FallbackBackend(primary, timeout_ms=5000) as backend:
        for _ in range(2):
            with pytest.raises(BackendMisconfigured, match="sentinel_password"):
                await backend.counter_incr("k")
            assert not backend.degraded


@pytest.mark.sentinel
def test_the_ratelimit_command_says_what_to_fix_for_refused_sentinel_credentials(
    guarded_sentinels: SentinelGroup, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _with_credentials(guarded_sentinels, _SECRETS[0], "wrong-pw")
    assert main(["--backend", url, "ping"]) == EXIT_BACKEND
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: Redis at sentinel service 'ratelimit'")
    assert "fix the sentinel_username and sentinel_password options" in captured.err
    _assert_names_every_sentinel(guarded_sentinels, captured.err)
