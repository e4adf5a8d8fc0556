"""`AppProcess`: the echo app under uvicorn or daphne, one OS process on a free loopback port.

It is started in its own session, so that `kill` (SIGKILL, a crashed host) and
`stop` (SIGTERM, a deploy; SIGKILL after a bound) reach every process it made.
Its CPU time and resident memory are read from ``/proc`` (Linux), and the
round trips its Redis backends made from the echo app's ``/stats``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from ..server import free_port

__all__ = ["ASGI_SERVERS", "AppProcess", "proc_readable"]

ASGI_SERVERS: Final = ("uvicorn", "daphne")
ROOT: Final = Path(__file__).resolve().parents[2]
_APP: Final = "benchmarks.load.echo_app:application"
_START_TIMEOUT_S: Final = 60.0
_STOP_TIMEOUT_S: Final = 30.0
_TICKS: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_readable() -> bool:
    """True where a process's CPU time and memory can be read (Linux ``/proc``)."""
    return Path("/proc/self/stat").exists()


def _command(asgi_server: str, port: int) -> list[str]:
    if asgi_server == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", _APP, "--host", "127.0.0.1", "--port", str(port),
            "--lifespan", "off", "--no-access-log", "--log-level", "warning", "--ws", "websockets",
        ]  # fmt: skip
    if asgi_server == "daphne":
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "-v", "0", _APP]
    raise ValueError(f"asgi_server must be one of {ASGI_SERVERS}, got {asgi_server!r}")


class AppProcess:
    """``with AppProcess("uvicorn", middleware=True, settings={...}) as app:`` serves the echo app at `app.port`."""

    def __init__(self, asgi_server: str, *, middleware: bool, settings: Mapping[str, object]) -> None:
        self.asgi_server = asgi_server
        self.middleware = middleware
        self.settings = dict(settings)
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="ratelimit-load-", suffix=".log")  # noqa: SIM115

    def __repr__(self) -> str:
        return f"AppProcess({self.asgi_server}, middleware={self.middleware}, port {self.port})"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"{self!r} is not running")
        return self._process.pid

    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/echo/"

    def start(self) -> Self:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "RATELIMIT_LOAD_MIDDLEWARE": "on" if self.middleware else "off",
            "RATELIMIT_LOAD_SETTINGS": json.dumps(self.settings),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("DJANGO_SETTINGS_MODULE", None)
        self.port = free_port()
        self._process = subprocess.Popen(
            _command(self.asgi_server, self.port),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = self.log()
                self.kill()
                raise RuntimeError(f"{self!r} did not start within {_START_TIMEOUT_S:.0f} s; its log:\n{log}")
            time.sleep(0.05)
        return self

    def backend_stats(self) -> dict[str, int]:
        """``{"round_trips", "calls", "commands", "heartbeats", "held"}``: what the process's Redis backends
        have sent so far, the heartbeats its lease keepers have made and the connections they hold."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=10) as reply:
            found: dict[str, int] = json.loads(reply.read())
        return found

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def terminate(self) -> None:
        """SIGTERM, as a deploy stops a process; `wait` for it to exit."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)

    def wait(self, timeout_s: float = _STOP_TIMEOUT_S) -> float:
        """Seconds until the process exited (SIGKILL after `timeout_s`)."""
        started = time.monotonic()
        if self._process is not None:
            try:
                self._process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL to the whole session: nothing is closed or released, like a crashed host."""
        if self._process is not None:
            if self._process.poll() is None:
                with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                    os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
            self._process = None

    def stop(self) -> None:
        self.terminate()
        self.wait()
        self.kill()

    def cpu_s(self) -> float:
        """User plus system CPU seconds the process has used."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS in /proc/{self.pid}/status")

    def log(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-4000:]

    def close(self) -> None:
        self.stop()
        self._log.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
