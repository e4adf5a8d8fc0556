"""`ClientPool`: the client worker processes, and each command sent to all of them at once.

Sockets are spread over the workers by index (socket i goes to worker i mod W),
and a command's answers come back as one list. Every wait on a worker is
bounded; `close` stops them all (terminating any that does not stop).
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any, Final, Self

from .client_worker import Socket, worker_main

__all__ = ["ClientPool", "Socket"]

_STOP_TIMEOUT_S: Final = 40.0

Result = dict[str, Any]


class ClientPool:
    """``with ClientPool(2) as clients:`` runs two client processes."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.size = workers
        self._pipes: list[Connection] = []
        self._processes: list[BaseProcess] = []

    def start(self) -> Self:
        context = multiprocessing.get_context("spawn")
        for n in range(self.size):
            ours, theirs = context.Pipe()
            process = context.Process(target=worker_main, args=(theirs,), name=f"load-client-{n}", daemon=True)
            process.start()
            theirs.close()
            self._pipes.append(ours)
            self._processes.append(process)
        return self

    def share(self, sockets: Sequence[Socket]) -> list[list[Socket]]:
        """`sockets` dealt out to the workers."""
        return [[s for s in sockets if s.index % self.size == n] for n in range(self.size)]

    def call(self, command: str, per_worker: Sequence[Result], wait_s: float) -> list[Result]:
        """Send `command` with each worker's arguments, then gather the answers (each within `wait_s`)."""
        self.send(command, per_worker)
        return self.gather(command, wait_s)

    def send(self, command: str, per_worker: Sequence[Result]) -> None:
        """Start `command` on every worker (`gather` collects the answers)."""
        for pipe, arguments in zip(self._pipes, per_worker, strict=True):
            pipe.send((command, dict(arguments)))

    def gather(self, command: str, wait_s: float) -> list[Result]:
        answers = []
        for n, pipe in enumerate(self._pipes):
            if not pipe.poll(wait_s):
                raise RuntimeError(f"client worker {n} did not answer {command!r} within {wait_s:.0f} s")
            answer: Result = pipe.recv()
            if "error" in answer:
                raise RuntimeError(f"client worker {n} failed on {command!r}:\n{answer['error']}")
            answers.append(answer)
        return answers

    def call_all(self, command: str, wait_s: float, **arguments: Any) -> list[Result]:
        """`command` with the same arguments for every worker."""
        return self.call(command, [arguments] * self.size, wait_s)

    def close(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(OSError):  # a worker that died has closed its end
                pipe.send(("stop", {}))
        for process in self._processes:
            process.join(_STOP_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join(5)
        for pipe in self._pipes:
            pipe.close()
        self._pipes.clear()
        self._processes.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
