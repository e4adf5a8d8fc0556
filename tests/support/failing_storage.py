"""Backends that fail on purpose, for the policy tests: each delegates to a real backend but for its one fault.

`Failing` raises from the calls a test chooses, as a backend without a fallback does
during an outage; `LostReply` runs a room `set_add` in storage and then loses its
reply, as a timeout after the command was sent does.
"""

from __future__ import annotations

from typing import Any

from ratelimit_core import Backend, BackendError, BackendUnavailable, SetResult

__all__ = ["Failing", "LostReply"]


class Failing:
    """Delegates to a backend; `fail(method, key_part)` makes the calls of `method` on matching keys raise."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.failures: dict[str, tuple[str, BackendError]] = {}

    def fail(self, method: str, key_part: str = "", error: BackendError | None = None) -> None:
        self.failures[method] = (key_part, error or BackendUnavailable("connection refused (test)"))

    def heal(self) -> None:
        self.failures.clear()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.backend, name)

        async def call(key: str, *args: Any, **kwargs: Any) -> Any:
            failure = self.failures.get(name)
            if failure is not None and failure[0] in key:
                raise failure[1]
            return await method(key, *args, **kwargs)

        return call


class LostReply:
    """Delegates to a backend, but the reply of a room `set_add` is lost: storage ran it, the caller times out."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def set_add(self, key: str, member: str, **kwargs: Any) -> SetResult:
        result = await self.backend.set_add(key, member, **kwargs)
        if key.startswith("room:"):
            raise BackendUnavailable("Redis did not answer set_add: TimeoutError (test)")
        return result
