"""The example app (examples/matchroom) served by real ASGI servers, each a separate OS process.

`AppServer` starts uvicorn or daphne on a free loopback port under mirakuru, which
waits (boundedly) until ``/limits.json`` answers and kills the whole process
group on `kill` (SIGKILL, like a crashed host) or `stop`. An `AppServerPool`
stops every server it started. (A plain module, not a conftest or a plugin: test
modules import it and define their small fixtures themselves.)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final
from urllib.parse import quote, urlencode

import port_for
from mirakuru import HTTPExecutor
from mirakuru.exceptions import ExecutorError, ProcessFinishedWithError

__all__ = ["ASGI_SERVERS", "AppServer", "AppServerPool"]

EXAMPLE_DIR: Final = Path(__file__).resolve().parents[2] / "examples" / "matchroom"
SETTINGS_MODULE: Final = "support.matchroom_e2e_settings"
ASGI_SERVERS: Final = ("uvicorn", "daphne")
_START_ATTEMPTS: Final = 3
_TIMEOUT_S: Final = 30
"""Bound on starting (until the page answers) and on a graceful stop."""
_LOG_TAIL_CHARS: Final = 4000


def _command(asgi_server: str, port: int) -> list[str]:
    app = "matchroom.asgi:application"
    if asgi_server == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", app,
            "--host", "127.0.0.1", "--port", str(port),
            "--lifespan", "off", "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
    if asgi_server == "daphne":
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "-v", "0", app]
    raise ValueError(f"asgi_server must be one of {ASGI_SERVERS}, got {asgi_server!r}")


@dataclass
class AppServer:
    """The example app under `asgi_server` on 127.0.0.1, limits in `backend_url`, settings overridden by `settings`."""

    asgi_server: str
    backend_url: str
    settings: Mapping[str, object] = field(default_factory=dict)
    port: int = 0
    _executor: HTTPExecutor | None = None
    _log: IO[str] = field(
        default_factory=lambda: tempfile.NamedTemporaryFile("w+", prefix="matchroom-", suffix=".log")  # noqa: SIM115
    )

    def __repr__(self) -> str:
        return f"AppServer({self.asgi_server} on port {self.port}, pid {self.pid if self.running else None})"

    @property
    def origin(self) -> str:
        """The page's origin: the example checks it (AllowedHostsOriginValidator), as a browser would send it."""
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, room: str, user: str | None = None) -> str:
        query = "" if user is None else "?" + urlencode({"user": user})
        return f"ws://127.0.0.1:{self.port}/ws/match/{quote(room)}/{query}"

    @property
    def running(self) -> bool:
        return self._executor is not None and self._executor.running()

    @property
    def pid(self) -> int:
        assert self._executor is not None
        assert self._executor.process is not None
        return self._executor.process.pid

    def start(self) -> AppServer:
        """Start on a free port; returns once the app answers HTTP. Raises with the server's log if it never does."""
        env = {
            "PYTHONPATH": os.pathsep.join(
                [str(EXAMPLE_DIR), str(Path(__file__).parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
            "WS_RATE_BACKEND": self.backend_url,
            "MATCHROOM_E2E_SETTINGS": json.dumps(dict(self.settings)),
            "PYTHONUNBUFFERED": "1",
        }
        last_error: ExecutorError | None = None
        for _ in range(_START_ATTEMPTS):
            self.port = port_for.select_random()
            executor = HTTPExecutor(
                _command(self.asgi_server, self.port),
                url=f"http://127.0.0.1:{self.port}/limits.json",
                method="GET",
                status=200,
                timeout=_TIMEOUT_S,
                request_timeout=2,
                envvars=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
            try:
                executor.start()
            except ExecutorError as exc:
                # Most likely another process took the port meanwhile: try another one.
                last_error = exc
                executor.kill(sig=signal.SIGKILL)
                continue
            self._executor = executor
            return self
        raise RuntimeError(
            f"{self.asgi_server} did not serve the example after {_START_ATTEMPTS} attempts; its log:\n{self.log()}"
        ) from last_error

    def kill(self) -> None:
        """SIGKILL: the process vanishes without closing a socket or releasing a slot, like a crashed host."""
        if self._executor is not None:
            self._executor.kill(wait=True, sig=signal.SIGKILL)
            self._executor = None

    def terminate(self) -> None:
        """SIGTERM to the server process, without waiting: what an orchestrator's graceful stop sends."""
        if self._executor is not None:
            os.kill(self.pid, signal.SIGTERM)

    def exited(self) -> bool:
        """True once the server process has ended (after `terminate`, say)."""
        return self._executor is None or not self._executor.running()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after the bound."""
        if self._executor is not None:
            # A server stopped while sockets are open may exit non-zero; it is gone all the same.
            with contextlib.suppress(ProcessFinishedWithError):
                self._executor.stop()
            self._executor = None

    def log(self) -> str:
        """The tail of the server's output (warnings, tracebacks), for failure messages."""
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-_LOG_TAIL_CHARS:]

    def full_log(self) -> str:
        """Everything the server wrote so far (its log is kept until `close`), for audits such as `app_logs`."""
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def close(self) -> None:
        self.stop()
        self._log.close()


class AppServerPool:
    """Starts example servers and stops them all on `close` (a test's fixture does that in its teardown)."""

    def __init__(self) -> None:
        self._started: list[AppServer] = []

    def start(self, asgi_server: str, backend_url: str, /, **settings: object) -> AppServer:
        """A started `AppServer`; `settings` override the example's Django settings (``WS_RATE_LEASE_MS=1500``)."""
        server = AppServer(asgi_server, backend_url, settings)
        self._started.append(server)
        return server.start()

    def close(self) -> None:
        for server in self._started:
            # Captured output, shown by pytest only when the test failed: what each server said.
            print(f"--- {server!r} log ---\n{server.log()}")
            server.close()
