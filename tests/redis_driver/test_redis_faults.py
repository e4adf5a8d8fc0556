"""Redis failures are classified by what waiting would do, and a lost reply never runs a script twice.

Against real servers on loopback: the session's redis, valkey and cluster, and
private servers a test may turn into a replica, make busy, lock with a password or
serve over TLS. A `LossyProxy` between the driver and the server loses the reply to
a script call after the server ran it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio
from redis._parsers.base import BaseParser
from redis.exceptions import MasterDownError, ReadOnlyError, ResponseError

from ratelimit_core import (
    BackendError,
    BackendMisconfigured,
    BackendUnavailable,
    ManualClock,
    RedisBackend,
    SetResult,
)
from ratelimit_core.redis import connect, pipeline
from ratelimit_core.redis.coalesce import RESENDABLE
from ratelimit_core.redis.errors import translated
from support.backends import backends
from support.lossy_proxy import LossyProxy
from support.secure_server import SecureServerProcess, admin_url, url_as
from support.servers import ClusterProcess, ServerProcess, required_server_binary, running
from support.tls_server import TLSServerProcess

# Bounds a hang so it fails the test instead of stalling the suite; not a speed check.
_HANG_S = 10.0
_POLL_DEADLINE_S = 30
"""Polls of 10 ms (about 5 s) for a server to reach a state; bounded, so a failure fails."""

SERVERS = backends("redis", "valkey", "cluster")
SINGLE_SERVERS = backends("redis", "valkey")


async def _within(call: Awaitable[Any]) -> Any:
    return await asyncio.wait_for(call, _HANG_S)


# -- a lost reply ---------------------------------------------------------------


@dataclass
class Lossy:
    """A backend whose replies go through `proxy`, and one on the same storage that goes direct."""

    backend: RedisBackend
    direct: RedisBackend
    proxy: LossyProxy


ON_PUBLIC_PIPELINE = "redis-on-public-pipeline"
"""A redis server, as on a redis-py newer than `SUPPORTED_REDIS_PY`: round trips through redis-py's
own pipeline, with the retry policy `connect` then gives a client."""


@pytest.fixture(params=[*SERVERS, pytest.param(ON_PUBLIC_PIPELINE, marks=pytest.mark.redis)])
async def lossy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Lossy]:
    name: str = request.param
    if name == ON_PUBLIC_PIPELINE:
        for module in (pipeline, connect):
            monkeypatch.setattr(module, "direct_supported", lambda: False)
        name = "redis"
    proxy = LossyProxy()
    clock = ManualClock(1_000_000)
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    options: dict[str, Any] = {"clock": clock, "prefix": prefix, "socket_timeout": 5, "socket_connect_timeout": 5}
    if name == "cluster":
        cluster: ClusterProcess = request.getfixturevalue("cluster_server")
        fronts = {node.port: await proxy.front(node.port) for node in cluster.nodes}

        def through_proxy(address: tuple[str, int]) -> tuple[str, int]:
            host, port = address
            return host, fronts.get(port, port)

        url = cluster.url
        backend = RedisBackend.from_url(url, address_remap=through_proxy, **options)
    else:
        server: ServerProcess = request.getfixturevalue(f"{name}_server")
        if isinstance(server, SecureServerProcess) and server.tls:
            # The proxy finds EVALSHAs in the plain stream, which TLS hides: a plain private server instead.
            server = request.getfixturevalue("server_process")("redis")
        url = server.url
        # The same URL (user, options) through the proxy's port.
        front = await proxy.front(server.port)
        backend = RedisBackend.from_url(url.replace(f":{server.port}/", f":{front}/"), **options)
    direct = RedisBackend.from_url(url, **options)
    try:
        await _warm_up(backend)
        yield Lossy(backend, direct, proxy)
    finally:
        await direct.clear()
        await direct.aclose()
        await backend.aclose()
        await proxy.close()


async def _warm_up(backend: RedisBackend) -> None:
    """Every script loaded and every node connected, so that no NOSCRIPT resend blurs the counts."""
    await backend.coalescer.load_scripts()
    async with backend.batch() as batch:
        batch.counter_incr("warm-up")
        batch.counter_decr("warm-up")
        batch.counter_get("warm-up")
        batch.set_add("warm-up", "m")
        batch.set_remove("warm-up", "m")
        batch.set_size("warm-up")
        batch.set_members("warm-up")
        batch.bucket_consume("warm-up", rate=1, burst=1)
        batch.bucket_peek("warm-up", rate=1, burst=1)
        batch.bucket_reset("warm-up")


Step = Callable[[RedisBackend], Awaitable[Any]]


@dataclass(frozen=True)
class LostReplyCase:
    """`setup` runs direct; `call` runs through the proxy, whose reply is lost; `check` reads direct."""

    setup: Step
    call: Step
    check: Step
    expected: object


async def _nothing(backend: RedisBackend) -> None:
    return None


NOT_RESENT = {
    "counter_incr": LostReplyCase(_nothing, lambda b: b.counter_incr("k", 1), lambda b: b.counter_get("k"), 1),
    "counter_decr": LostReplyCase(
        lambda b: b.counter_incr("k", 5), lambda b: b.counter_decr("k", 1), lambda b: b.counter_get("k"), 4
    ),
    "bucket_consume": LostReplyCase(
        _nothing,
        lambda b: b.bucket_consume("b", rate=1, burst=5),
        lambda b: _remaining(b.bucket_peek("b", rate=1, burst=5)),
        4,
    ),
}


async def _remaining(peek: Awaitable[Any]) -> int:
    remaining: int = (await peek).remaining
    return remaining


def test_the_scripts_sent_again_after_a_lost_reply_are_those_that_may_run_twice() -> None:
    may_run_twice = {"set_add", "set_remove", "bucket_reset", "counter_get", "set_size", "set_members", "bucket_peek"}
    assert may_run_twice == RESENDABLE


@pytest.mark.parametrize("name", sorted(NOT_RESENT))
async def test_a_lost_reply_fails_the_call_without_running_it_again(lossy: Lossy, name: str) -> None:
    case = NOT_RESENT[name]
    await case.setup(lossy.direct)
    sent = lossy.proxy.scripts_sent
    lossy.proxy.lose(1)
    with pytest.raises(BackendUnavailable):
        await _within(case.call(lossy.backend))
    assert lossy.proxy.replies_lost == 1
    assert lossy.proxy.scripts_sent - sent == 1  # sent once, never again
    assert await case.check(lossy.direct) == case.expected  # and the server ran it exactly once
    await _within(case.call(lossy.backend))  # the next call gets a new connection


RESENT = {
    "set_add": LostReplyCase(
        _nothing, lambda b: b.set_add("s", "m", capacity=1), lambda b: b.set_members("s"), frozenset({"m"})
    ),
    "set_remove": LostReplyCase(
        lambda b: b.set_add("s", "m"), lambda b: b.set_remove("s", "m"), lambda b: b.set_size("s"), 0
    ),
    "bucket_reset": LostReplyCase(
        lambda b: b.bucket_consume("b", rate=1, burst=5, cost=5),
        lambda b: b.bucket_reset("b"),
        lambda b: _remaining(b.bucket_peek("b", rate=1, burst=5)),
        5,
    ),
    "counter_get": LostReplyCase(lambda b: b.counter_incr("k", 3), lambda b: b.counter_get("k"), _nothing, None),
    "set_size": LostReplyCase(lambda b: b.set_add("s", "m"), lambda b: b.set_size("s"), _nothing, None),
    "set_members": LostReplyCase(lambda b: b.set_add("s", "m"), lambda b: b.set_members("s"), _nothing, None),
    "bucket_peek": LostReplyCase(
        lambda b: b.bucket_consume("b", rate=1, burst=5),
        lambda b: _remaining(b.bucket_peek("b", rate=1, burst=5)),
        _nothing,
        None,
    ),
}
RESENT_REPLIES = {
    "set_add": SetResult(True, 1),
    "set_remove": 0,
    "bucket_reset": None,
    "counter_get": 3,
    "set_size": 1,
    "set_members": frozenset({"m"}),
    "bucket_peek": 4,
}


@pytest.mark.parametrize("name", sorted(RESENT))
async def test_a_lost_reply_to_a_call_that_may_run_twice_is_sent_again_once(lossy: Lossy, name: str) -> None:
    case = RESENT[name]
    await case.setup(lossy.direct)
    sent = lossy.proxy.scripts_sent
    lossy.proxy.lose(1)
    assert await _within(case.call(lossy.backend)) == RESENT_REPLIES[name]
    assert lossy.proxy.replies_lost == 1
    assert lossy.proxy.scripts_sent - sent == 2  # the lost one and its one resend
    assert await case.check(lossy.direct) == case.expected


async def test_a_lost_reply_to_a_batch_sends_again_only_what_may_run_twice(lossy: Lossy) -> None:
    lossy.proxy.lose(1)
    async with lossy.backend.batch() as batch:
        incr = batch.counter_incr("k", 1)
        add = batch.set_add("s", "m")
        consume = batch.bucket_consume("b", rate=1, burst=5)
    assert lossy.proxy.replies_lost == 1
    assert add.result() == SetResult(True, 1)
    # On a cluster the three keys may live on different nodes: only one node's reply is lost.
    # Either way each ran exactly once: a lost reply is an outage, not a second run.
    for call in (incr, consume):
        if call.error is not None:
            assert isinstance(call.error, BackendUnavailable)
    assert await lossy.direct.counter_get("k") == 1
    assert (await lossy.direct.bucket_peek("b", rate=1, burst=5)).remaining == 4


async def test_a_second_lost_reply_is_not_followed_by_a_third_send(lossy: Lossy) -> None:
    sent = lossy.proxy.scripts_sent
    lossy.proxy.lose(2)
    with pytest.raises(BackendUnavailable):
        await _within(lossy.backend.set_add("s", "m"))
    assert (lossy.proxy.replies_lost, lossy.proxy.scripts_sent - sent) == (2, 2)
    assert await lossy.direct.set_members("s") == frozenset({"m"})


# -- replies that mean "not now": outages ---------------------------------------

OUTAGE_REPLIES = [
    "LOADING Redis is loading the dataset in memory",
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSCRIPT.",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    "TRYAGAIN Multiple keys request during rehashing of slot",
    "CLUSTERDOWN The cluster is down",
    "READONLY You can't write against a read only replica.",
    "NOREPLICAS Not enough good replicas to write.",
    "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.",
]
MISCONFIGURED_REPLIES = [
    "WRONGPASS invalid username-password pair or user is disabled.",
    "NOAUTH Authentication required.",
    "NOPERM User rl has no permissions to run the 'evalsha' command",
]


@pytest.mark.parametrize("reply", OUTAGE_REPLIES)
def test_an_error_reply_that_means_not_now_is_an_outage(reply: str) -> None:
    # Parsed as redis-py parses a reply, for the codes a cheap real server cannot produce.
    error = translated(BaseParser.parse_error(reply), "counter_incr", "127.0.0.1:6379")
    assert isinstance(error, BackendUnavailable), error
    assert "127.0.0.1:6379" in str(error)


@pytest.mark.parametrize("reply", MISCONFIGURED_REPLIES)
def test_an_error_reply_that_refuses_this_client_is_a_misconfiguration(reply: str) -> None:
    error = translated(BaseParser.parse_error(reply), "counter_incr", "127.0.0.1:6379")
    assert isinstance(error, BackendMisconfigured), error
    assert not isinstance(error, BackendUnavailable)


def test_any_other_error_reply_is_a_backend_error() -> None:
    error = translated(BaseParser.parse_error("WRONGTYPE Operation against a key"), "counter_incr", "h:1")
    assert type(error) is BackendError


async def _command(url: str, *command: str) -> Any:
    async with redis.asyncio.from_url(url, socket_timeout=5) as client:
        return await client.execute_command(*command)


async def _poll(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll every 10 ms until `check` holds, for at most `_POLL_DEADLINE_S` (generous for a loaded machine)."""
    deadline = time.monotonic() + _POLL_DEADLINE_S
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.parametrize("server", SINGLE_SERVERS)
async def test_a_read_only_replica_is_an_outage(server: str, server_process: Callable[[str], ServerProcess]) -> None:
    master, replica = server_process(server), server_process(server)
    # A diskless sync waits 5 s by default for more replicas: start it at once.
    await _command(master.url, "CONFIG", "SET", "repl-diskless-sync-delay", "0")
    await _command(replica.url, "REPLICAOF", "127.0.0.1", str(master.port))

    async def linked() -> bool:
        info = await _command(replica.url, "INFO", "replication")
        return bool(info.get("master_link_status") == "up")

    await _poll(linked, "the replica to sync")
    async with RedisBackend.from_url(replica.url) as backend:
        with pytest.raises(BackendUnavailable) as caught:
            await _within(backend.counter_incr("k"))
        assert isinstance(caught.value.__cause__, ReadOnlyError)
        with pytest.raises(BackendUnavailable):
            await _within(backend.bucket_consume("b", rate=1, burst=1))
        # Calls bundled into one EVALSHA: each gets the replica's refusal as its own, an outage too.
        async with backend.batch() as batch:
            bundled = [batch.counter_incr("k"), batch.set_add("s", "m"), batch.bucket_consume("b", rate=1, burst=1)]
        for call in bundled:
            assert isinstance(call.error, BackendUnavailable)
            assert isinstance(call.error.__cause__, ReadOnlyError)


@pytest.mark.parametrize("server", SINGLE_SERVERS)
async def test_a_replica_that_lost_its_master_is_an_outage(
    server: str, server_process: Callable[[str], ServerProcess]
) -> None:
    replica, gone = server_process(server), server_process(server)
    gone.stop()  # a master that is not there: the replica's link stays down
    await _command(replica.url, "CONFIG", "SET", "replica-serve-stale-data", "no")
    await _command(replica.url, "REPLICAOF", "127.0.0.1", str(gone.port))
    async with RedisBackend.from_url(replica.url) as backend:
        with pytest.raises(BackendUnavailable) as caught:
            await _within(backend.counter_get("k"))
    assert isinstance(caught.value.__cause__, MasterDownError)


@pytest.mark.parametrize("server", SINGLE_SERVERS)
async def test_too_few_replicas_to_write_is_an_outage(
    server: str, server_process: Callable[[str], ServerProcess]
) -> None:
    primary = server_process(server)
    await _command(primary.url, "CONFIG", "SET", "min-replicas-to-write", "1")
    async with RedisBackend.from_url(primary.url) as backend:
        with pytest.raises(BackendUnavailable, match="NOREPLICAS"):
            await _within(backend.counter_incr("k"))
        outcomes = await _within(
            asyncio.gather(backend.counter_incr("k"), backend.set_add("s", "m"), return_exceptions=True)
        )
        assert all(isinstance(outcome, BackendUnavailable) and "NOREPLICAS" in str(outcome) for outcome in outcomes)


@pytest.mark.parametrize("server", SINGLE_SERVERS)
async def test_a_server_busy_running_a_script_is_an_outage(
    server: str, server_process: Callable[[str], ServerProcess]
) -> None:
    busy = server_process(server)
    await _command(busy.url, "CONFIG", "SET", "busy-reply-threshold", "10")
    async with RedisBackend.from_url(busy.url) as backend, redis.asyncio.from_url(busy.url) as runner:
        assert await backend.counter_get("k") == 0  # connected before the server gets busy

        async def run_endless() -> Any:
            return await runner.eval("while true do end", 0)  # type: ignore[misc]

        endless = asyncio.get_running_loop().create_task(run_endless())

        async def is_busy() -> bool:
            try:
                await _command(busy.url, "PING")
            except ResponseError as exc:
                return str(exc).startswith("BUSY")
            return False

        try:
            await _poll(is_busy, "the server to be busy")
            with pytest.raises(BackendUnavailable, match="BUSY"):
                await _within(backend.counter_incr("k"))
        finally:

            async def killed() -> bool:
                with contextlib.suppress(ResponseError):  # NOTBUSY: no script runs (any more)
                    await _command(busy.url, "SCRIPT", "KILL")
                return endless.done()

            await _poll(killed, "SCRIPT KILL to stop the script")
            with pytest.raises(ResponseError):
                endless.result()
        assert (await backend.counter_incr("k")).value == 1


# -- a client the server refuses: misconfigurations ---------------------------


def _nodes(request: pytest.FixtureRequest, server: str) -> list[ServerProcess]:
    if server == "cluster":
        cluster: ClusterProcess = request.getfixturevalue("cluster_server")
        return cluster.nodes
    single: ServerProcess = request.getfixturevalue(f"{server}_server")
    return [single]


def _url(server: str, nodes: list[ServerProcess], credentials: str) -> str:
    if server == "cluster":
        return f"redis+cluster://{credentials}@" + ",".join(f"127.0.0.1:{node.port}" for node in nodes)
    user, _, password = credentials.partition(":")
    return url_as(nodes[0], user, password)


@pytest.fixture
def acl_user() -> Iterator[Callable[[list[ServerProcess], str], str]]:
    """`acl_user(nodes, rules)`: a new ACL user on every node (ACLs are per node), named ``<user>``
    with the password ``<user>-pw``; removed at teardown."""
    made: list[tuple[ServerProcess, str]] = []

    def make(nodes: list[ServerProcess], rules: str) -> str:
        name = f"rl-{uuid.uuid4().hex[:8]}"
        for node in nodes:
            _sync_command(node, "ACL", "SETUSER", name, "on", f">{name}-pw", *rules.split())
            made.append((node, name))
        return name

    yield make
    for node, name in made:
        _sync_command(node, "ACL", "DELUSER", name)


def _sync_command(node: ServerProcess, *command: str) -> Any:
    import redis as sync_redis

    with sync_redis.Redis.from_url(admin_url(node), socket_timeout=5) as client:
        return client.execute_command(*command)


def _assert_names_the_server_without_secrets(error: BaseException, nodes: list[ServerProcess], *secrets: str) -> None:
    message = str(error)
    assert any(f"127.0.0.1:{node.port}" in message for node in nodes), message
    for secret in secrets:
        assert secret not in message, message


@pytest.mark.parametrize("server", SERVERS)
async def test_a_wrong_password_is_a_misconfiguration_naming_the_server_but_not_the_password(
    server: str, request: pytest.FixtureRequest, acl_user: Callable[[list[ServerProcess], str], str]
) -> None:
    nodes = _nodes(request, server)
    user = acl_user(nodes, "~* &* +@all")
    async with RedisBackend.from_url(_url(server, nodes, f"{user}:not-the-password")) as backend:
        with pytest.raises(BackendMisconfigured, match="user name and password") as caught:
            await _within(backend.counter_incr("k"))
    assert not isinstance(caught.value, BackendUnavailable)
    _assert_names_the_server_without_secrets(caught.value, nodes, "not-the-password", f"{user}-pw")


@pytest.mark.parametrize("server", SERVERS)
async def test_a_user_who_may_not_run_scripts_is_a_misconfiguration(
    server: str, request: pytest.FixtureRequest, acl_user: Callable[[list[ServerProcess], str], str]
) -> None:
    nodes = _nodes(request, server)
    user = acl_user(nodes, "~* &* +@all -@scripting")
    async with RedisBackend.from_url(_url(server, nodes, f"{user}:{user}-pw")) as backend:
        await backend.ping()  # the credentials are right
        with pytest.raises(BackendMisconfigured, match="EVALSHA") as caught:
            await _within(backend.counter_incr("k"))
    _assert_names_the_server_without_secrets(caught.value, nodes, f"{user}-pw")


@pytest.mark.parametrize("server", SINGLE_SERVERS)
async def test_no_password_where_one_is_required_is_a_misconfiguration(
    server: str, server_process: Callable[[str], ServerProcess]
) -> None:
    locked = server_process(server)
    await _command(locked.url, "CONFIG", "SET", "requirepass", "sesame-42")
    async with RedisBackend.from_url(locked.url) as backend:
        with pytest.raises(BackendMisconfigured, match="password") as caught:
            await _within(backend.counter_incr("k"))
    _assert_names_the_server_without_secrets(caught.value, [locked], "sesame-42")
    async with RedisBackend.from_url(f"redis://:sesame-42@127.0.0.1:{locked.port}/0") as backend:
        assert (await _within(backend.counter_incr("k"))).value == 1


@pytest.fixture
def tls_server() -> Iterator[TLSServerProcess]:
    with running(TLSServerProcess(required_server_binary("redis"))) as server:
        yield server


@pytest.mark.redis
async def test_a_tls_certificate_that_does_not_verify_is_a_misconfiguration(tls_server: TLSServerProcess) -> None:
    async with RedisBackend.from_url(tls_server.url) as backend:
        with pytest.raises(BackendMisconfigured, match="ssl_ca_certs") as caught:
            await _within(backend.counter_incr("k"))
    assert "certificate" in str(caught.value)
    _assert_names_the_server_without_secrets(caught.value, [tls_server])
    # The same server, with its CA trusted: a working TLS connection.
    async with RedisBackend.from_url(tls_server.url, ssl_ca_certs=tls_server.ca_file) as backend:
        assert (await _within(backend.counter_incr("k"))).value == 1
