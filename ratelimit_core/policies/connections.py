"""`ConnectionPolicy`: admit a connection against per-identity, per-IP and room limits.

Each limit is a set with a capacity whose members are connection ids with a
lease (see `Leases`): the identity's sockets, the IP's sockets (signed in or
not) and the room's members (one per socket). Each `set_add` is atomic, so
concurrent attempts never admit more than a capacity; the checks run one after
another, and a refusal removes what the attempt had already taken; so does a
cancellation or a timeout, including the slot whose call was still in flight.
When the storage fails, `on_error` decides (see `failures`).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Final, Literal

from ..arguments import check_count, check_optional_count
from ..backend import Backend, SetResult
from ..errors import BackendError
from ..failure_modes import OnError
from ..observe import Decision, DecisionHooks
from .codes import BACKEND_UNAVAILABLE, CLOSE_CONNECTION_REFUSED, CONNECTION_LIMIT_EXCEEDED, ROOM_FULL
from .failures import check_on_error, connection_unavailable, report_failure
from .identity import ClientIdentity
from .leases import DEFAULT_LEASE_MS, Leases, Slot
from .verdicts import Admitted, ConnectionVerdict, Denial

__all__ = [
    "DEFAULT_CONN_RETRY_MS",
    "ConnectionLimits",
    "ConnectionPolicy",
    "Occupancy",
    "identity_slots_key",
    "ip_slots_key",
    "room_members_key",
]

DEFAULT_CONN_RETRY_MS: Final = 5_000

_Limit = Literal["identity", "ip", "room"]
_DECISION_LIMIT: Final = {"identity": "user", "ip": "ip", "room": "room"}
"""This module's limit names -> `observe.LIMITS`."""


def identity_slots_key(identity: ClientIdentity) -> str:
    """The set of an identity's sockets (a user's, or an anonymous client IP's)."""
    return f"conn:id:{identity.key}"


def ip_slots_key(ip: str) -> str:
    """The set of every socket from one client IP."""
    return f"conn:addr:{ip}"


def room_members_key(room: str) -> str:
    """The set of a room's members, one per socket."""
    return f"room:{room}"


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Limits on simultaneous connections; None means unlimited, 0 admits nobody."""

    per_user: int | None = None
    """Sockets per identity: an authenticated user, or an anonymous client's IP."""
    per_ip: int | None = None
    """Sockets per client IP, signed in or not."""
    room_max_members: int | None = None
    """Sockets per room."""
    lease_ms: int = DEFAULT_LEASE_MS
    """How long a slot outlives its last refresh."""
    retry_after_ms: int = DEFAULT_CONN_RETRY_MS
    """The ``retry_after_ms`` hint in a connect denial."""

    def __post_init__(self) -> None:
        check_optional_count("per_user", self.per_user, minimum=0)
        check_optional_count("per_ip", self.per_ip, minimum=0)
        check_optional_count("room_max_members", self.room_max_members, minimum=0)
        check_count("lease_ms", self.lease_ms)
        check_count("retry_after_ms", self.retry_after_ms, minimum=0)


@dataclass(frozen=True, slots=True)
class Occupancy:
    """Live slots for one identity, its IP and (when given) a room."""

    identity: int
    ip: int
    room: int | None = None


class ConnectionPolicy:
    """Connection admission on top of any `Backend`.

    `on_error` decides when the backend fails (``"fallback"``, ``"allow"``,
    ``"deny"``; see `failures`); None lets the `BackendError` through.
    """

    __slots__ = ("backend", "hooks", "limits", "on_error")

    def __init__(
        self,
        backend: Backend,
        limits: ConnectionLimits,
        *,
        on_error: OnError | None = None,
        hooks: DecisionHooks | None = None,
    ) -> None:
        self.backend = backend
        self.limits = limits
        self.on_error = None if on_error is None else check_on_error(on_error)
        self.hooks = hooks

    def __repr__(self) -> str:
        return f"ConnectionPolicy({self.backend!r}, {self.limits!r}, on_error={self.on_error!r})"

    async def admit(
        self, identity: ClientIdentity, room: str | None = None, *, connection_id: str | None = None
    ) -> ConnectionVerdict:
        """Take a slot under every limit that is set, or none at all.

        Checks run in the order identity, IP, room, and the first one that is full
        decides the `Denial`. On `Admitted`, the caller owns the leases: refresh
        them while the connection lives and release them when it ends. A refusal
        because the primary storage is down (`SetResult.unavailable`) is the
        `BACKEND_UNAVAILABLE` denial.

        Every other outcome leaves nothing held: a refusal, a storage failure, a
        timeout or a cancellation at any await removes each slot this attempt
        took, including one whose `set_add` was still in flight (storage may run
        it anyway). That removal is not cut short by a second cancellation, and the
        original exception propagates. A `BackendError` then raises when
        `on_error` is None; otherwise it is logged and the connection is admitted
        holding no slots, or refused with `BACKEND_UNAVAILABLE` under ``"deny"``.
        """
        member = connection_id if connection_id is not None else uuid.uuid4().hex
        limits = self.limits
        checks: list[tuple[_Limit, str, int]] = []
        if limits.per_user is not None:
            checks.append(("identity", identity_slots_key(identity), limits.per_user))
        if limits.per_ip is not None:
            checks.append(("ip", ip_slots_key(identity.ip), limits.per_ip))
        if limits.room_max_members is not None and room is not None:
            checks.append(("room", room_members_key(room), limits.room_max_members))
        taken: list[Slot] = []
        in_flight: asyncio.Future[SetResult] | None = None
        degraded = False
        refused: tuple[_Limit, int, SetResult] | None = None
        try:
            for limit, key, capacity in checks:
                # Taken before the await: storage may still run a call whose caller was cancelled
                # or timed out, so the clean-up must remove this slot too (removal is idempotent).
                taken.append(Slot(key, member))
                # Its own task, so that a cancellation leaves it running and the clean-up can wait
                # for it: a removal sent while the add is still on its way could arrive first.
                in_flight = asyncio.ensure_future(
                    self.backend.set_add(key, member, capacity=capacity, lease_ms=limits.lease_ms)
                )
                result = await asyncio.shield(in_flight)
                in_flight = None
                degraded = degraded or result.degraded
                if self.hooks:
                    _report(self.hooks, limit, result, identity)
                if not result.added:
                    taken.pop()  # refused: the call added nothing
                    refused = (limit, capacity, result)
                    break
        except BaseException as exc:
            await _give_back(Leases(self.backend, taken, limits.lease_ms), in_flight, exc)
            if self.on_error is None or not isinstance(exc, BackendError):
                raise
            report_failure("connection admission", exc, self.on_error)
            if self.on_error == "deny":
                return connection_unavailable(limits.retry_after_ms)
            return Admitted(Leases(self.backend, (), limits.lease_ms), degraded=True)
        leases = Leases(self.backend, taken, limits.lease_ms)
        if refused is None:
            return Admitted(leases, degraded)
        # Cancelled here, the removal still completes (release is shielded) and the cancellation propagates.
        await leases.release()
        limit, capacity, result = refused
        if result.unavailable:
            return connection_unavailable(limits.retry_after_ms)
        return self._denial(limit, capacity, identity, degraded)

    def _denial(self, limit: _Limit, capacity: int, identity: ClientIdentity, degraded: bool) -> Denial:
        retry = self.limits.retry_after_ms
        if limit == "room":
            return Denial(ROOM_FULL, f"room is full ({capacity} members)", retry, CLOSE_CONNECTION_REFUSED, degraded)
        if limit == "ip":
            message = f"too many connections from this IP address (limit {capacity})"
        else:
            who = "client" if identity.anonymous else "user"
            message = f"too many connections for this {who} (limit {capacity})"
        return Denial(CONNECTION_LIMIT_EXCEEDED, message, retry, CLOSE_CONNECTION_REFUSED, degraded)

    async def occupancy(self, identity: ClientIdentity, room: str | None = None) -> Occupancy:
        """How many live slots `identity`, its IP and `room` hold now (for tests, dashboards)."""
        return Occupancy(
            identity=await self.backend.set_size(identity_slots_key(identity)),
            ip=await self.backend.set_size(ip_slots_key(identity.ip)),
            room=None if room is None else await self.backend.set_size(room_members_key(room)),
        )


async def _give_back(leases: Leases, in_flight: asyncio.Future[SetResult] | None, exc: BaseException) -> None:
    """Release what an attempt took after `exc` interrupted it, once `in_flight` (its last call) has ended.

    The removal runs as its own task: a second cancellation while it runs does not
    stop it, and does not replace `exc` (a cancelled attempt ends with its own
    `CancelledError`). Any other interruption lets the new `CancelledError` through.
    """
    removal = asyncio.ensure_future(_remove_after(leases, in_flight))
    try:
        await asyncio.shield(removal)
    except asyncio.CancelledError:
        if isinstance(exc, asyncio.CancelledError):
            raise exc from None
        raise


async def _remove_after(leases: Leases, in_flight: asyncio.Future[SetResult] | None) -> None:
    if in_flight is not None:
        # Whatever it returns or raises, the slot is removed after it: only the order matters.
        await asyncio.wait([in_flight])
    await leases.release()


def _report(hooks: DecisionHooks, limit: _Limit, result: SetResult, identity: ClientIdentity) -> None:
    if result.added:
        code = None
    elif result.unavailable:
        code = BACKEND_UNAVAILABLE
    else:
        code = ROOM_FULL if limit == "room" else CONNECTION_LIMIT_EXCEEDED
    hooks.emit(Decision(_DECISION_LIMIT[limit], result.added, code, identity.key, result.degraded))
