"""Fixtures shared by the whole suite: the backend matrix and the real servers.

The backends are the rows of `support.backends.backends()`, each with its pytest
mark: ``pytest -m redis`` runs one backend's tests. The ``redis``, ``valkey``,
``cluster`` (three redis-server masters) and ``sentinel`` (a master, a replica and
three sentinels) backends are real server processes the
suite starts itself on free loopback ports (see `support.servers`); when a binary
is missing their tests are skipped with the reason, except under ``CI=true``,
where a missing server fails the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import django
import pytest
from django.conf import settings as django_settings
from hypothesis import HealthCheck, settings

from ratelimit_core import Backend, ManualClock, MemoryBackend
from ratelimit_core.clock import Clock
from support.backends import (
    ALL_BACKENDS,
    BACKEND_MARKS,
    IN_CI,
    SERVER_BACKENDS,
    NewBackend,
    backends,
)
from support.secure_server import SECURE_ACL, SECURE_TLS, SecureServerProcess
from support.servers import (
    ClusterProcess,
    SentinelGroup,
    ServerProcess,
    cluster_binaries,
    required_server_binary,
    running,
)

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if IN_CI else "dev"))


def pytest_configure(config: pytest.Config) -> None:
    """Register one mark per backend, and configure Django minimally (no test needs a database or a channel
    layer) unless the run names a settings module."""
    for name, description in BACKEND_MARKS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
    if not django_settings.configured and "DJANGO_SETTINGS_MODULE" not in os.environ:
        django_settings.configure(SECRET_KEY="ratelimit-channels-tests", INSTALLED_APPS=[], DATABASES={}, USE_TZ=True)
        django.setup()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse a test that runs on a backend without carrying its mark: ``-m`` would select it wrongly.

    A row of `backends()` carries its mark; a plain string passed as `backend_name` does not.
    """
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        name = params.get("backend_name")
        if name in ALL_BACKENDS and item.get_closest_marker(name) is None:
            raise pytest.UsageError(
                f"{item.nodeid}: backend_name={name!r} lacks its mark; parametrise with support.backends.backends()"
            )


def _server(name: str) -> Iterator[ServerProcess]:
    binary = required_server_binary(name)
    secure = name == "redis" and (SECURE_TLS or SECURE_ACL)
    server = SecureServerProcess(binary, tls=SECURE_TLS, acl=SECURE_ACL) if secure else ServerProcess(binary)
    with running(server):
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[ServerProcess]:
    """A real redis-server shared by the session (tests isolate themselves by key prefix).

    Under RATELIMIT_TEST_REDIS_TLS / RATELIMIT_TEST_REDIS_ACL (the ``acl`` tox env) it is
    a `SecureServerProcess`, and `redis_url` connects as its least-privilege user.
    """
    yield from _server("redis")


@pytest.fixture(scope="session")
def redis_admin_url(redis_server: ServerProcess) -> str:
    """A URL of the session redis-server with every right: for fixtures, never for the code under test."""
    return redis_server.admin_url if isinstance(redis_server, SecureServerProcess) else redis_server.url


@pytest.fixture(scope="session")
def valkey_server() -> Iterator[ServerProcess]:
    """A real valkey-server shared by the session."""
    yield from _server("valkey")


@pytest.fixture(scope="session")
def cluster_server() -> Iterator[ClusterProcess]:
    """A real three-master Redis Cluster (redis-server --cluster-enabled) shared by the session."""
    with running(ClusterProcess(*cluster_binaries())) as cluster:
        yield cluster


def _sentinels(down_after_ms: int) -> Iterator[SentinelGroup]:
    """A master, replica and three sentinels, started, then closed; or a skip (a failure under CI=true)."""
    group = SentinelGroup(required_server_binary("redis", "a Sentinel group"), down_after_ms=down_after_ms)
    with running(group):
        yield group


@pytest.fixture(scope="session")
def sentinel_server() -> Iterator[SentinelGroup]:
    """A master, a replica and three sentinels (redis-server --sentinel) shared by the session; never failed over."""
    # No test kills it: a loaded machine must never look like a dead master to its sentinels.
    yield from _sentinels(down_after_ms=10_000)


@pytest.fixture(scope="session")
def sentinel_url(sentinel_server: SentinelGroup) -> str:
    return sentinel_server.url


@pytest.fixture
def private_sentinels() -> Iterator[SentinelGroup]:
    """A Sentinel group of the test's own, which it may fail over or kill (a killed master is down after 1 s)."""
    yield from _sentinels(down_after_ms=1000)


@pytest.fixture(scope="session")
def cluster_url(cluster_server: ClusterProcess) -> str:
    return cluster_server.url


@pytest.fixture(scope="session")
def redis_url(redis_server: ServerProcess) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def valkey_url(valkey_server: ServerProcess) -> str:
    return valkey_server.url


@pytest.fixture
def server_process(request: pytest.FixtureRequest) -> Iterator[Callable[[str], ServerProcess]]:
    """`server_process("redis")`: a private server a test may kill, pause or restart."""
    started: list[ServerProcess] = []

    def start(name: str) -> ServerProcess:
        server = ServerProcess(required_server_binary(name)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture(params=backends("redis", "valkey"))
def server(request: pytest.FixtureRequest, server_process: Callable[[str], ServerProcess]) -> ServerProcess:
    """A private redis-server, then valkey-server, that the test may kill, pause or restart."""
    name: str = request.param
    return server_process(name)


@pytest.fixture(params=backends())
def backend_name(request: pytest.FixtureRequest) -> str:
    """Each backend of the table in turn (a test or a directory may parametrise it over fewer)."""
    name: str = request.param
    return name


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def key_prefix() -> str:
    """A prefix no other test uses, so tests can share one server."""
    return f"t{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def backend_url(request: pytest.FixtureRequest, backend_name: str) -> str | None:
    """The URL of the storage under test (None for fakeredis, which has no URL)."""
    if backend_name == "memory":
        return "memory://"
    if backend_name in SERVER_BACKENDS:
        url: str = request.getfixturevalue(f"{backend_name}_url")
        return url
    return None


@pytest.fixture
async def new_backend(
    request: pytest.FixtureRequest, backend_name: str, backend_url: str | None, key_prefix: str
) -> AsyncIterator[NewBackend]:
    """A factory of backends that share one storage of the selected kind."""
    made: list[Backend] = []
    clients: list[Any] = []
    fake_server = None
    memory: dict[tuple[int, str], MemoryBackend] = {}

    def make(clock: Clock | None = None, prefix: str | None = None) -> Backend:
        nonlocal fake_server
        prefix = key_prefix if prefix is None else prefix
        if backend_name == "memory":
            # One MemoryBackend per clock and prefix: that is what "the same storage" means in one process.
            return memory.setdefault((id(clock), prefix), MemoryBackend(clock=clock, prefix=prefix))
        from ratelimit_core import RedisBackend

        backend: Backend
        if backend_name == "fakeredis":
            import fakeredis

            fake_server = fake_server or fakeredis.FakeServer()
            client = fakeredis.FakeAsyncRedis(server=fake_server)
            clients.append(client)
            backend = RedisBackend(client, clock=clock, prefix=prefix)
        else:
            assert backend_url is not None
            backend = RedisBackend.from_url(
                backend_url, clock=clock, prefix=prefix, socket_timeout=10, socket_connect_timeout=10
            )
        made.append(backend)
        return backend

    yield make
    for backend in [*made, *memory.values()]:
        try:
            await backend.clear()
        finally:
            await backend.aclose()
    for client in clients:
        await client.aclose()


@pytest.fixture
async def admin_client(request: pytest.FixtureRequest, backend_name: str) -> AsyncIterator[Callable[[Any], Any]]:
    """`admin_client(backend)`: a Redis client with every right on `backend`'s storage, to read it raw.

    The backend's own client, except on the acl tox env's redis-server, where the
    driver's user may run only what the driver needs.
    """
    made: list[Any] = []

    def get(backend: Any) -> Any:
        if backend_name != "redis":
            return backend.client
        url: str = request.getfixturevalue("redis_admin_url")
        if url == request.getfixturevalue("redis_url"):  # no ACL: the backend's user has every right
            return backend.client
        from ratelimit_core.redis.connect import client_from_url

        made.append(client_from_url(url, socket_timeout=10, socket_connect_timeout=10))
        return made[-1]

    yield get
    for client in made:
        await client.aclose()


@pytest.fixture
def backend_factory(backend_name: str, backend_url: str | None) -> Callable[[Clock], Backend]:
    """Fresh backends of the selected kind, each with a new client and prefix, bound to no event loop yet.

    For code that runs each example on an event loop of its own (the conformance kit);
    the backends share one storage, and each cleans up by its unique prefix's TTLs.
    """
    from ratelimit_core import RedisBackend

    fake_server: Any = None

    def make(clock: Clock) -> Backend:
        nonlocal fake_server
        prefix = f"conf{uuid.uuid4().hex[:12]}:"
        if backend_name == "memory":
            return MemoryBackend(clock=clock, prefix=prefix)
        if backend_name == "fakeredis":
            import fakeredis

            fake_server = fake_server or fakeredis.FakeServer()
            return RedisBackend(fakeredis.FakeAsyncRedis(server=fake_server), clock=clock, prefix=prefix)
        assert backend_url is not None
        return RedisBackend.from_url(
            backend_url, clock=clock, prefix=prefix, socket_timeout=10, socket_connect_timeout=10
        )

    return make


@pytest.fixture
async def backend(new_backend: NewBackend, clock: ManualClock) -> Backend:
    """A backend of the selected kind on a `ManualClock` (the `clock` fixture)."""
    return new_backend(clock=clock)
