"""The least-privilege ACL rule: exactly what the driver, `clear` and the CLI need, and where passwords never go.

A private redis-server with its default user off (`SecureServerProcess`) gets an
application user with `acl_rule("rl:")`; every primitive, batch, ping, clear and
the CLI then run as that user. A rule without `clear`'s commands, or a backend
outside the rule's prefix, is a `BackendMisconfigured` saying what to fix. On the
session cluster the rule with ``cluster=True`` suffices. (The ``acl`` tox env runs
the whole suite as such a user.)
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import traceback
import uuid
from collections.abc import AsyncIterator, Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis

from ratelimit_core import (
    BackendMisconfigured,
    BackendUnavailable,
    InvalidArgument,
    ManualClock,
    RedisBackend,
    backend_from_url,
)
from ratelimit_core.cli import EXIT_OK, main
from ratelimit_core.fallback import FallbackBackend
from ratelimit_core.redis import acl_rule
from ratelimit_core.redis.acl import CLUSTER_COMMANDS, DRIVER_COMMANDS, SCRIPT_COMMANDS
from support.secure_server import SecureServerProcess, url_as
from support.servers import ClusterProcess, ServerProcess, required_server_binary, running

_HANG_S = 10.0
"""Bounds a hang so it fails the test; not a speed check."""
ACL_PAGE = Path(__file__).parents[2] / "docs" / "production" / "tls-acl.md"


async def _within(call: Any) -> Any:
    return await asyncio.wait_for(call, _HANG_S)


def _server(*, tls: bool, acl: bool) -> Iterator[SecureServerProcess]:
    with running(SecureServerProcess(required_server_binary("redis"), tls=tls, acl=acl)) as server:
        yield server


@pytest.fixture(scope="module")
def locked() -> Iterator[SecureServerProcess]:
    """A redis-server whose default user is off (plain TCP: the TLS tests are in test_redis_tls)."""
    yield from _server(tls=False, acl=True)


def _admin(server: ServerProcess, *command: str) -> Any:
    url = server.admin_url if isinstance(server, SecureServerProcess) else server.url
    with sync_redis.Redis.from_url(url, socket_timeout=5) as client:
        return client.execute_command(*command)


@pytest.fixture
def app_user(locked: SecureServerProcess) -> Iterator[Any]:
    """`app_user(rule)`: the URL of a new user of `locked` with `rule` (removed at teardown)."""
    made: list[str] = []

    def make(rule: str) -> str:
        name, password = f"app-{uuid.uuid4().hex[:8]}", secrets.token_hex(12)
        _admin(locked, "ACL", "SETUSER", name, "on", f">{password}", *rule.split())
        made.append(name)
        return url_as(locked, name, password)

    yield make
    for name in made:
        _admin(locked, "ACL", "DELUSER", name)


async def _every_primitive(backend: RedisBackend) -> None:
    assert (await _within(backend.counter_incr("c", 2, window_ms=60_000))).value == 2
    assert await _within(backend.counter_decr("c")) == 1
    assert await _within(backend.counter_get("c")) == 1
    assert (await _within(backend.set_add("s", "a", lease_ms=60_000))).added
    assert (await _within(backend.set_add("s", "forever"))).size == 2
    assert await _within(backend.set_members("s")) == {"a", "forever"}
    assert await _within(backend.set_remove("s", "a")) == 1
    assert await _within(backend.set_size("s")) == 1
    assert (await _within(backend.bucket_consume("b", rate=1, burst=2, cost=2))).allowed
    assert not (await _within(backend.bucket_peek("b", rate=1, burst=2))).allowed
    await _within(backend.bucket_reset("b"))
    async with backend.batch() as batch:
        incremented = batch.counter_incr("batched")
    assert incremented.result().value == 1
    await _within(backend.ping())


@pytest.mark.redis
@pytest.mark.parametrize("clock", [None, ManualClock(5_000_000)], ids=["server-clock", "caller-clock"])
async def test_a_user_with_exactly_the_rule_runs_every_primitive_and_clear(
    app_user: Any, clock: ManualClock | None
) -> None:
    async with RedisBackend.from_url(app_user(acl_rule("rl:")), clock=clock) as backend:
        await _every_primitive(backend)
        await _within(backend.clear())
        assert await _within(backend.set_size("s")) == 0


@pytest.mark.redis
async def test_the_scripts_are_loaded_again_after_a_flush_by_a_user_with_the_rule(
    locked: SecureServerProcess, app_user: Any
) -> None:
    async with RedisBackend.from_url(app_user(acl_rule("rl:"))) as backend:
        await _within(backend.counter_incr("k"))
        _admin(locked, "SCRIPT", "FLUSH")  # the next EVALSHA gets NOSCRIPT: SCRIPT LOAD, as the user
        assert (await _within(backend.counter_incr("k"))).value == 2
        await _within(backend.clear())


@pytest.mark.redis
async def test_without_the_clear_commands_the_limiter_works_and_clear_says_what_to_grant(app_user: Any) -> None:
    async with RedisBackend.from_url(app_user(acl_rule("rl:", clear=False))) as backend:
        await _every_primitive(backend)
        with pytest.raises(BackendMisconfigured, match=r"acl_rule\(prefix\).*SCAN and UNLINK for clear") as caught:
            await _within(backend.clear())
    assert "scan" in str(caught.value).lower()


@pytest.mark.redis
async def test_a_backend_outside_the_rules_prefix_is_a_misconfiguration(app_user: Any) -> None:
    async with RedisBackend.from_url(app_user(acl_rule("rl:")), prefix="other:") as backend:
        await _within(backend.ping())  # the credentials are right
        with pytest.raises(BackendMisconfigured, match="keys under the prefix"):
            await _within(backend.counter_incr("k"))


@pytest.mark.redis
def test_the_cli_needs_nothing_beyond_the_rule_without_clear(app_user: Any, capsys: pytest.CaptureFixture[str]) -> None:
    url = app_user(acl_rule("rl:", clear=False))
    assert main(["--backend", url, "inspect", "--user", "42", "--rate", "5", "--burst", "10"]) == EXIT_OK
    assert main(["--backend", url, "reset", "--user", "42"]) == EXIT_OK
    assert main(["--backend", url, "ping", "--count", "2"]) == EXIT_OK
    assert "answered 2 pings" in capsys.readouterr().out


def test_the_rule_names_every_command_the_scripts_call() -> None:
    scripts = files("ratelimit_core.redis").joinpath("scripts")
    called = {
        name.lower()
        for script in scripts.iterdir()
        if script.name.endswith(".lua")
        for name in re.findall(r"redis\.call\('([A-Z]+)'", script.read_text(encoding="utf-8"))
    }
    assert called == set(SCRIPT_COMMANDS)


def test_the_rule_starts_from_nothing_and_escapes_the_prefix() -> None:
    assert acl_rule("a*b?:").split()[:4] == ["resetkeys", r"~a\*b\?:*", "resetchannels", "-@all"]
    assert acl_rule(clear=False).split()[4:] == [f"+{name}" for name in (*DRIVER_COMMANDS, *SCRIPT_COMMANDS)]
    assert acl_rule(cluster=True).endswith(" ".join(f"+{name}" for name in CLUSTER_COMMANDS))


def test_the_docs_give_the_rule_acl_rule_returns() -> None:
    page = ACL_PAGE.read_text(encoding="utf-8")
    for rule in (acl_rule(), acl_rule(clear=False), acl_rule(cluster=True)):
        assert rule in page, rule


@pytest.mark.cluster
async def test_on_a_cluster_the_rule_with_cluster_discovery_suffices(cluster_server: ClusterProcess) -> None:
    name, password = f"app-{uuid.uuid4().hex[:8]}", secrets.token_hex(12)
    seeds = ",".join(f"127.0.0.1:{node.port}" for node in cluster_server.nodes)
    try:
        for node in cluster_server.nodes:  # ACLs are per node
            _admin(node, "ACL", "SETUSER", name, "on", f">{password}", *acl_rule("rl:", cluster=True).split())
        async with RedisBackend.from_url(f"redis+cluster://{name}:{password}@{seeds}", prefix="rl:") as backend:
            await _every_primitive(backend)
            await _within(backend.clear())
        for node in cluster_server.nodes:
            _admin(node, "ACL", "SETUSER", name, *acl_rule("rl:", cluster=False).split())
        async with RedisBackend.from_url(f"redis+cluster://{name}:{password}@{seeds}", prefix="rl:") as backend:
            with pytest.raises(BackendMisconfigured, match="CLUSTER SLOTS and COMMAND on a cluster"):
                await _within(backend.counter_incr("k"))
    finally:
        for node in cluster_server.nodes:
            _admin(node, "ACL", "DELUSER", name)


# -- passwords never appear -------------------------------------------------------


@pytest.fixture
async def secured() -> AsyncIterator[SecureServerProcess]:
    """A private server with TLS and an ACL, which a test may kill."""
    for server in _server(tls=True, acl=True):
        yield server


@pytest.mark.redis
async def test_no_password_in_repr_of_backends_and_clients_built_from_urls(secured: SecureServerProcess) -> None:
    password = secured.limiter_password
    # A key pass phrase is a secret too (the query's TLS options win over the keywords: none here but it).
    url = f"{secured.url.partition('?')[0]}?ssl_password={password}-key"
    for backend in (RedisBackend.from_url(secured.url), backend_from_url(secured.url)):
        assert password not in repr(backend)
        assert password not in repr(backend.client) + str(backend.client)  # type: ignore[attr-defined]
        await backend.aclose()
    wrapped = FallbackBackend(RedisBackend.from_url(secured.url))
    assert password not in repr(wrapped)
    await wrapped.aclose()
    with pytest.raises(InvalidArgument) as caught:  # not a key: unusable, and the pass phrase is not echoed
        RedisBackend.from_url(url, ssl_certfile=secured.client_files()[0], ssl_keyfile=secured.ca_file)
    assert password not in str(caught.value)


@pytest.mark.redis
async def test_no_password_in_the_misconfiguration_of_a_wrong_password(secured: SecureServerProcess) -> None:
    wrong = secrets.token_hex(12)
    async with RedisBackend.from_url(url_as(secured, "ratelimit", wrong)) as backend:
        with pytest.raises(BackendMisconfigured, match="user name and password") as caught:
            await _within(backend.counter_incr("k"))
    rendered = "".join(traceback.format_exception(caught.value))
    assert wrong not in rendered
    assert secured.limiter_password not in rendered


@pytest.mark.redis
async def test_no_password_in_log_records_or_errors_during_an_outage(
    secured: SecureServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = secured.limiter_password
    primary = RedisBackend.from_url(secured.url, prefix="outage:")
    backend = FallbackBackend(primary, timeout_ms=2_000, cooldown_ms=10)
    bare = RedisBackend.from_url(secured.url, prefix="outage:")
    try:
        assert (await _within(backend.counter_incr("k"))).value == 1
        secured.kill()
        degraded = await _within(backend.counter_incr("k"))
        assert degraded.degraded
        with pytest.raises(BackendUnavailable) as caught:
            await _within(bare.counter_incr("k"))
        await asyncio.sleep(0.05)  # a recovery probe fails and is logged
        await _within(backend.counter_incr("k"))
    finally:
        await backend.aclose()
        await bare.aclose()
    assert any(record.name.startswith("ratelimit_core") for record in caplog.records)
    formatter = logging.Formatter()
    for record in caplog.records:
        assert password not in formatter.format(record), record.getMessage()
    assert password not in "".join(traceback.format_exception(caught.value))
