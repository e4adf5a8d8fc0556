"""`ConnectionPolicy`: admit a connection against an attempt rate, then per-identity, per-IP and room limits.

Every attempt spends a token from its identity's bucket (`connect_rate`),
admitted or not. Each limit is a set with a capacity whose members are
connection ids with a lease (see `Leases`): the identity's sockets, the IP's
sockets (signed in or not) and the room's members (one per socket). Each
`set_add` is atomic, so concurrent attempts never admit more than a capacity.

One round trip in the common case: the token and every slot are asked for at
once (each call issued in the same turn of the event loop, which a Redis
backend's coalescer sends as one pipeline, through `FallbackBackend` too),
whatever the number of limits configured. A refusal then gives back the slots
the attempt took, in a second round trip; so does a storage failure, a timeout
or a cancellation, including the slots whose calls were still in flight.
An attempt one limit refused while another admitted it asks again, one limit
after another, so that concurrent attempts fill every limit to its capacity.
When the storage fails, `on_error` decides (see `failures`).

In shadow mode (``shadow=True``) nothing is refused: every limit is still asked and
reported (each `Decision` marked ``shadow``), and the denial that would have applied
rides on the `Admitted` as `Admitted.shadowed`. The slots are then taken without a
capacity (``set_add(capacity=None)``) and the set's size after the add is compared
with the capacity, so a connection over a limit holds its slot like any other and
releases it when it ends: the counts stay those of the real traffic, and the next
attempt's report stays true (a slot given back after a would-be refusal would make
the counts, and so the reports, too low). The attempt token is spent as usual; an
empty bucket has no token to spend.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import Any, Final, cast

from ..arguments import check_count, check_flag, check_optional_count
from ..backend import Backend, BucketResult, SetResult
from ..errors import BackendError, InvalidArgument
from ..failure_modes import OnError, check_on_error
from ..observe import Decision, DecisionHooks, Limit
from .codes import CloseCode, ErrorCode
from .failures import connection_unavailable, report_failure
from .identity import ClientIdentity
from .leases import DEFAULT_LEASE_MS, Leases, Slot
from .messages import MessageLimits, burst_in_effect
from .verdicts import Admitted, ConnectionVerdict, Denial

__all__ = [
    "DEFAULT_CONN_RETRY_MS",
    "ConnectionLimits",
    "ConnectionPolicy",
    "Occupancy",
    "connect_bucket_key",
    "identity_slots_key",
    "ip_slots_key",
    "room_members_key",
]

DEFAULT_CONN_RETRY_MS: Final = 5_000


def connect_bucket_key(identity: ClientIdentity) -> str:
    """The token bucket an identity's connection attempts spend (a user's, or an anonymous client IP's)."""
    return f"connect:{identity.key}"


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
    """Limits on connection attempts and simultaneous connections; None means unlimited, 0 admits nobody."""

    per_user: int | None = None
    """Sockets per identity: an authenticated user, or an anonymous client's IP."""
    per_ip: int | None = None
    """Sockets per client IP, signed in or not."""
    room_max_members: int | None = None
    """Sockets per room."""
    lease_ms: int = DEFAULT_LEASE_MS
    """How long a slot outlives its last refresh."""
    retry_after_ms: int = DEFAULT_CONN_RETRY_MS
    """The ``retry_after_ms`` hint in a slot denial (a rate denial gives the bucket's exact wait)."""
    connect_rate: float | None = None
    """Connection attempts per second per identity (refill rate of its bucket); may be fractional."""
    connect_burst: int | None = None
    """Attempts bucket size; defaults to the rate rounded up (at least 1). Needs `connect_rate`."""

    def __post_init__(self) -> None:
        check_optional_count("per_user", self.per_user, minimum=0)
        check_optional_count("per_ip", self.per_ip, minimum=0)
        check_optional_count("room_max_members", self.room_max_members, minimum=0)
        check_count("lease_ms", self.lease_ms)
        check_count("retry_after_ms", self.retry_after_ms, minimum=0)
        if self.connect_rate is None and self.connect_burst is not None:
            raise InvalidArgument(f"connect_burst={self.connect_burst!r} needs a connect_rate")
        try:
            # The same bucket arguments and checks as a message rate, once, here.
            MessageLimits(rate=self.connect_rate, burst=self.connect_burst)
        except InvalidArgument as exc:
            raise InvalidArgument(f"connect_rate/connect_burst: {exc}") from None

    @property
    def connect_bucket_burst(self) -> int | None:
        """The attempts burst in effect (the given one, or the rate rounded up); None without a rate."""
        return None if self.connect_rate is None else burst_in_effect(self.connect_rate, self.connect_burst)


@dataclass(frozen=True, slots=True)
class Occupancy:
    """Live slots for one identity, its IP and (when given) a room."""

    identity: int
    """Sockets the identity (a user, or an anonymous client's IP) holds."""
    ip: int
    """Sockets from the identity's IP, signed in or not."""
    room: int | None = None
    """Members of the room; None when no room was asked about."""


@dataclass(frozen=True, slots=True)
class _Check:
    """One limit an attempt must pass: a slot in the set at `key`, which holds at most `capacity`."""

    limit: Limit
    key: str
    capacity: int


@dataclass(frozen=True, slots=True)
class _Refusal:
    """The limit that refused the attempt, and the storage's answer."""

    limit: Limit
    capacity: int
    """The set's capacity, or the attempts bucket's burst."""
    unavailable: bool
    """Refused only because the primary storage is down."""
    retry_after_ms: int | None = None
    """The bucket's exact wait; None for a full set (the configured hint applies)."""


class _Split:
    """The outcome of asking every limit at once when one refused and another admitted: not final."""

    def __repr__(self) -> str:
        return "_SPLIT"


_SPLIT: Final = _Split()


class ConnectionPolicy:
    """Connection admission on top of any `Backend`.

    `on_error` decides when the backend fails (``"fallback"``, ``"allow"``,
    ``"deny"``; see `failures`); None lets the `BackendError` through.
    `shadow` reports every decision without refusing anything (see the module's docstring).
    """

    __slots__ = ("backend", "hooks", "limits", "on_error", "shadow")

    def __init__(
        self,
        backend: Backend,
        limits: ConnectionLimits,
        *,
        on_error: OnError | None = None,
        hooks: DecisionHooks | None = None,
        shadow: bool = False,
    ) -> None:
        self.backend = backend
        """Where the limits are counted."""
        self.limits = limits
        """The limits this policy enforces."""
        self.on_error = None if on_error is None else check_on_error(on_error)
        """What to decide when the backend fails; None raises the `BackendError`."""
        self.hooks = hooks
        """Where decisions are reported, if anywhere."""
        self.shadow = check_flag("shadow", shadow)
        """Report the limits' decisions without refusing anything (`Admitted.shadowed`)."""

    def __repr__(self) -> str:
        shadow = ", shadow=True" if self.shadow else ""
        return f"ConnectionPolicy({self.backend!r}, {self.limits!r}, on_error={self.on_error!r}{shadow})"

    async def admit(
        self, identity: ClientIdentity, room: str | None = None, *, connection_id: str | None = None
    ) -> ConnectionVerdict:
        """Spend an attempt token and take a slot under every limit that is set, or none at all.

        The attempts bucket (`ConnectionLimits.connect_rate`) and every slot limit
        are asked at once, in one round trip; the first refusal in the order rate,
        identity, IP, room decides the `Denial`, and the hooks hear the decisions in
        that order up to it. An empty bucket refuses with
        `ErrorCode.CONNECTION_RATE_EXCEEDED` and the bucket's exact `retry_after_ms`.
        A token is spent for good: an attempt refused, failed or cancelled does not
        give it back. The bucket shares the round trip rather than going first, so
        that an admission costs one round trip whatever is configured; the price is
        that an attempt refused by the rate (or by one slot limit) holds its other
        slots for that round trip, until the refusal gives them back, and a
        concurrent attempt may be refused for them meanwhile. Once `admit` returns,
        a refused attempt holds nothing.

        When one slot limit refused the attempt while another admitted it, the
        refusal is not final: two concurrent attempts may each hold the slot the
        other lacks (on Redis Cluster each set's node orders them its own way), and
        both giving up would admit fewer than the capacity. The attempt then gives
        back what it took and asks the limits again one after another, in order
        (the token is not spent again): those that pass the first limit are the
        only ones competing for the next, so concurrent attempts fill every limit
        to its capacity, never beyond. This costs round trips only at capacity.

        On `Admitted`, the caller owns the leases: refresh them while the connection
        lives and release them when it ends. In shadow mode every outcome that would
        have been a `Denial` is an `Admitted` holding every slot it took, with that
        denial as `Admitted.shadowed`, and the hooks hear every limit's decision.
        A refusal because the primary storage is down (`SetResult.unavailable`,
        `BucketResult.unavailable`) is the `ErrorCode.BACKEND_UNAVAILABLE` denial.

        Every other outcome leaves nothing held: a refusal, a storage failure, a
        timeout or a cancellation removes each slot this attempt asked for, once
        every call in flight has ended (storage may run a call whose caller gave
        up, and a removal must not overtake it). That removal is not cut short by
        a second cancellation, and the original exception propagates. A
        `BackendError` then raises when `on_error` is None; otherwise it is logged
        and the connection is admitted holding no slots, or refused with
        `ErrorCode.BACKEND_UNAVAILABLE` under ``"deny"``.
        """
        member = connection_id if connection_id is not None else uuid.uuid4().hex
        attempt = _Attempt(self.backend, member, self.limits.lease_ms)
        checks = self._checks(identity, room)
        try:
            refusal = await self._ask_all(attempt, identity, checks)
            if isinstance(refusal, _Split):
                await attempt.give_back_taken()
                refusal = await self._ask_in_turn(attempt, identity, checks)
        except BaseException as exc:
            await attempt.give_back(exc)
            if self.on_error is None or not isinstance(exc, BackendError):
                raise
            return self._unchecked(exc, self.on_error)
        if refusal is None:
            return Admitted(attempt.leases(), attempt.degraded)
        if self.shadow:
            # Every slot stays taken (none was refused: see the module's docstring); the caller owns them.
            return Admitted(attempt.leases(), attempt.degraded, self._denial(refusal, identity, attempt.degraded))
        # Cancelled here, the removal still completes (release is shielded) and the cancellation propagates.
        await attempt.leases().release()
        return self._denial(refusal, identity, attempt.degraded)

    def _checks(self, identity: ClientIdentity, room: str | None) -> list[_Check]:
        """The limits that are set, in the order they decide."""
        limits = self.limits
        checks: list[_Check] = []
        if limits.per_user is not None:
            checks.append(_Check("user", identity_slots_key(identity), limits.per_user))
        if limits.per_ip is not None:
            checks.append(_Check("ip", ip_slots_key(identity.ip), limits.per_ip))
        if limits.room_max_members is not None and room is not None:
            checks.append(_Check("room", room_members_key(room), limits.room_max_members))
        return checks

    async def _ask_all(
        self, attempt: _Attempt, identity: ClientIdentity, checks: list[_Check]
    ) -> _Refusal | _Split | None:
        """Ask the bucket and every slot at once; the first refusal in order, `_SPLIT`, else None.

        `_SPLIT` (only the bucket's decision reported to the hooks yet) when a slot
        limit refused while another admitted, and the bucket passed: `_ask_in_turn`
        decides then.

        Raises the first failure in that order once every call has ended (the attempt
        then knows what storage may hold).
        """
        rate, burst = self.limits.connect_rate, self.limits.connect_bucket_burst
        bucket = None
        if rate is not None and burst is not None:
            bucket = self.backend.bucket_consume(connect_bucket_key(identity), rate=rate, burst=burst)
        token, slots = await attempt.ask(bucket, checks, capped=not self.shadow)
        rate_refusal = None
        if token is not None:
            if self.hooks:
                code = _rate_code(token)
                self.hooks.emit(Decision("connect", token.allowed, code, identity.key, token.degraded, self.shadow))
            if not token.allowed:
                rate_refusal = _Refusal("connect", burst or 0, token.unavailable, token.retry_after_ms)
                if not self.shadow:
                    return rate_refusal  # the hooks hear the decisions up to the first refusal
        if rate_refusal is None and _split(slots):
            return _SPLIT  # never in shadow mode: its adds are uncapped
        slot_refusal = self._slot_refusal(identity, checks, slots)
        return rate_refusal if rate_refusal is not None else slot_refusal

    async def _ask_in_turn(self, attempt: _Attempt, identity: ClientIdentity, checks: list[_Check]) -> _Refusal | None:
        """Take a slot under each limit in turn; the first full one stops the attempt and is returned."""
        for check in checks:
            _, slots = await attempt.ask(None, [check])
            refusal = self._slot_refusal(identity, [check], slots)
            if refusal is not None:
                return refusal
        return None

    def _slot_refusal(self, identity: ClientIdentity, checks: list[_Check], slots: list[SetResult]) -> _Refusal | None:
        """The first slot refused; the hooks hear each decision up to it (every one in shadow mode)."""
        refusal = None
        for check, result in zip(checks, slots, strict=True):
            # Uncapped (shadow), the add always succeeds: the size after it says whether it would have.
            over = not result.added or (self.shadow and result.size > check.capacity)
            if self.hooks:
                _report(self.hooks, check.limit, result, identity, over=over, shadow=self.shadow)
            if over and refusal is None:
                refusal = _Refusal(check.limit, check.capacity, result.unavailable)
            if refusal is not None and not self.shadow:
                break  # the hooks hear the decisions up to the first refusal; shadow mode reports them all
        return refusal

    def _unchecked(self, exc: BackendError, on_error: OnError) -> ConnectionVerdict:
        """The verdict `on_error` gives when the storage failed (the attempt holds nothing by now)."""
        report_failure("connection admission", exc, on_error, shadow=self.shadow)
        nothing = Leases(self.backend, (), self.limits.lease_ms)
        if on_error == "deny":
            if self.shadow:
                return Admitted(nothing, degraded=True, shadowed=connection_unavailable(self.limits.retry_after_ms))
            return connection_unavailable(self.limits.retry_after_ms)
        return Admitted(nothing, degraded=True)

    def _denial(self, refusal: _Refusal, identity: ClientIdentity, degraded: bool) -> Denial:
        if refusal.unavailable:
            return connection_unavailable(self.limits.retry_after_ms)
        capacity = refusal.capacity
        retry = self.limits.retry_after_ms if refusal.retry_after_ms is None else refusal.retry_after_ms
        if refusal.limit == "connect":
            message = f"too many connection attempts (burst {capacity}), retry in {retry} ms"
            return Denial(ErrorCode.CONNECTION_RATE_EXCEEDED, message, retry, CloseCode.CONNECTION_REFUSED, degraded)
        if refusal.limit == "room":
            message = f"room is full ({capacity} members)"
            return Denial(ErrorCode.ROOM_FULL, message, retry, CloseCode.CONNECTION_REFUSED, degraded)
        if refusal.limit == "ip":
            message = f"too many connections from this IP address (limit {capacity})"
        else:
            who = "client" if identity.anonymous else "user"
            message = f"too many connections for this {who} (limit {capacity})"
        return Denial(ErrorCode.CONNECTION_LIMIT_EXCEEDED, message, retry, CloseCode.CONNECTION_REFUSED, degraded)

    async def occupancy(self, identity: ClientIdentity, room: str | None = None) -> Occupancy:
        """How many live slots `identity`, its IP and `room` hold now (for tests, dashboards)."""
        return Occupancy(
            identity=await self.backend.set_size(identity_slots_key(identity)),
            ip=await self.backend.set_size(ip_slots_key(identity.ip)),
            room=None if room is None else await self.backend.set_size(room_members_key(room)),
        )


class _Attempt:
    """The slots one `admit` call asked for, and its calls still in flight."""

    __slots__ = ("_backend", "_giving_back", "_in_flight", "_lease_ms", "_member", "_taken", "degraded")

    def __init__(self, backend: Backend, member: str, lease_ms: int) -> None:
        self._backend = backend
        self._member = member
        self._lease_ms = lease_ms
        self._taken: list[Slot] = []
        self._in_flight: list[asyncio.Future[Any]] = []
        self._giving_back: Leases | None = None
        """The removal `give_back_taken` started, if it has not ended."""
        self.degraded = False
        """Some answer came without the primary storage."""

    async def ask(
        self, bucket: Coroutine[Any, Any, BucketResult] | None, checks: list[_Check], *, capped: bool = True
    ) -> tuple[BucketResult | None, list[SetResult]]:
        """Run `bucket` and a `set_add` per check, all issued at once; their results once all have ended.

        `capped` False adds every slot without its capacity (shadow mode). The slots
        join those taken by earlier calls (`give_back_taken` starts again from none).

        Every slot is recorded as taken before its call: storage may still run a call
        whose caller was cancelled or timed out, so the clean-up must remove it too
        (removal is idempotent). A refused add added nothing and is dropped. Raises
        the first failure, in the order bucket then checks, once every call has ended.
        """
        member, lease_ms = self._member, self._lease_ms
        asked = [Slot(check.key, member) for check in checks]
        self._taken += asked
        # Each call its own task, all created before any runs: the backend sees them in one
        # turn of the loop (one pipeline), and a cancellation leaves them running so that
        # the clean-up can wait for them (a removal sent ahead of its add could arrive first).
        calls: list[Awaitable[Any]] = [] if bucket is None else [bucket]
        calls += [
            self._backend.set_add(c.key, member, capacity=c.capacity if capped else None, lease_ms=lease_ms)
            for c in checks
        ]
        self._in_flight = [asyncio.ensure_future(call) for call in calls]
        outcomes = await asyncio.shield(asyncio.gather(*self._in_flight, return_exceptions=True))
        self._in_flight = []
        answers = outcomes[len(outcomes) - len(checks) :]
        refused = [slot for slot, answer in zip(asked, answers, strict=True) if _refused(answer)]
        self._taken = [slot for slot in self._taken if slot not in refused]
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome  # the first failure, in order
        results = cast("list[SetResult]", answers)
        token = cast("BucketResult", outcomes[0]) if bucket is not None else None
        self.degraded = self.degraded or any(answer.degraded for answer in [token, *results] if answer is not None)
        return token, results

    async def give_back_taken(self) -> None:
        """Remove every slot taken so far (shielded, as any release) and start again holding nothing."""
        self._giving_back = self.leases()
        await self._giving_back.release()
        # Only once removed: cancelled before, the removal goes on and `give_back` leaves it be.
        self._giving_back = None
        self._taken = []

    def leases(self) -> Leases:
        return Leases(self._backend, self._taken, self._lease_ms)

    async def give_back(self, exc: BaseException) -> None:
        """Release what was taken after `exc` interrupted the attempt, once every call in flight has ended.

        The removal runs as its own task: a second cancellation while it runs does not
        stop it, and does not replace `exc` (a cancelled attempt ends with its own
        `CancelledError`). Any other interruption lets the new `CancelledError` through.
        """
        if self._giving_back is not None:
            # `give_back_taken` was cancelled: its removal goes on by itself (`Leases.release` is
            # shielded) and nothing else was taken or is in flight, so there is nothing to wait for.
            return
        removal = asyncio.ensure_future(_remove_after(self.leases(), self._in_flight))
        try:
            await asyncio.shield(removal)
        except asyncio.CancelledError:
            if isinstance(exc, asyncio.CancelledError):
                raise exc from None
            raise


def _split(slots: list[SetResult]) -> bool:
    """Some slot limit refused while another admitted, none of them because the primary storage is down."""
    refused = [result for result in slots if not result.added]
    return bool(refused) and len(refused) < len(slots) and not any(result.unavailable for result in refused)


def _refused(outcome: object) -> bool:
    """A `set_add` that answered without adding (a failed one may have added: it stays to be removed)."""
    return isinstance(outcome, SetResult) and not outcome.added


async def _remove_after(leases: Leases, in_flight: list[asyncio.Future[Any]]) -> None:
    if in_flight:
        # Whatever they return or raise, the slots are removed after them: only the order matters.
        await asyncio.wait(in_flight)
    await leases.release()


def _report(
    hooks: DecisionHooks, limit: Limit, result: SetResult, identity: ClientIdentity, *, over: bool, shadow: bool
) -> None:
    code: ErrorCode | None
    if not over:
        code = None
    elif result.unavailable:
        code = ErrorCode.BACKEND_UNAVAILABLE
    else:
        code = ErrorCode.ROOM_FULL if limit == "room" else ErrorCode.CONNECTION_LIMIT_EXCEEDED
    hooks.emit(Decision(limit, not over, code, identity.key, result.degraded, shadow))


def _rate_code(result: BucketResult) -> ErrorCode | None:
    """The wire code an attempts bucket answer reports to the hooks; None when the attempt passed."""
    if result.allowed:
        return None
    return ErrorCode.BACKEND_UNAVAILABLE if result.unavailable else ErrorCode.CONNECTION_RATE_EXCEEDED
