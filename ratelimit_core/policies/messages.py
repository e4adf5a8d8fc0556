"""`MessagePolicy`: admit each incoming message by size, then by its rate limits and quota.

A frame larger than `max_payload_bytes` (text counted as UTF-8 bytes) ends the
connection; the size check needs no storage. Otherwise the frame must pass every
limit that applies to it: a token from the sender identity's bucket (`rate`, shared
by all of that identity's sockets), a token from its type's bucket (`types`, see
`message_types`) and one message of the identity's `quota` (see `quotas`).

The checks a frame needs are started together, in the same turn of the event loop,
so the calls a driver can pipeline leave in one round trip; each is atomic on its own
key, but they are not one transaction: a frame refused by one check has still been
counted by the others (a frame a bucket refused still counts toward the quota, and a
frame over the quota still took its tokens), since each decides without seeing the
others' answers. No check is ever counted twice, and each answer is exact for its own
key.

A frame a bucket refused is dropped and counts as a strike (strikes count across
the identity's bucket and every type's); the `strikes`-th refusal in a row ends the
connection. A frame over the quota is dropped with `ErrorCode.QUOTA_EXCEEDED` and is
no strike. When several checks refuse, the quota is reported first (its wait is the
one that matters), else the bucket with the longest wait. When the storage fails,
`on_error` decides (see `failures`); a refusal the backend marks `unavailable` (its
primary is down) drops the message with `ErrorCode.BACKEND_UNAVAILABLE`. A message
dropped for either reason is not a strike.

In shadow mode (``shadow=True``) every frame is delivered: each check still runs and
is reported (each `Decision` marked ``shadow``), and the denial that would have
applied rides on the `Allowed` as `Allowed.shadowed`. A frame too large is then
still counted by the other checks (it is delivered), and its payload denial is the
one reported. A frame a bucket refused took no token (a bucket refuses atomically)
and is a strike; when the strikes reach `strikes`, the would-be close is reported
and the count starts again.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from ..arguments import check_count, check_flag, check_optional_count
from ..backend import Backend, BucketResult, CounterResult
from ..bucket import bucket_spec, burst_in_effect
from ..errors import BackendError, InvalidArgument
from ..failure_modes import OnError, check_on_error
from ..observe import Decision, DecisionHooks
from .codes import CloseCode, ErrorCode
from .failures import DEFAULT_UNAVAILABLE_RETRY_MS, message_unavailable, report_failure
from .identity import ClientIdentity
from .message_types import MessageTypeResolver, TypeRate, json_message_type, message_type_key
from .quotas import MessageQuota, quota_key
from .verdicts import Allowed, Denial, MessageVerdict

__all__ = [
    "DEFAULT_STRIKES",
    "MessageGate",
    "MessageLimits",
    "MessagePolicy",
    "burst_in_effect",
    "message_bucket_key",
    "payload_exceeds",
]

logger = logging.getLogger(__name__)

DEFAULT_STRIKES: Final = 10

_MAX_UTF8_BYTES_PER_CHAR = 4


def message_bucket_key(identity: ClientIdentity) -> str:
    """The token bucket shared by all of an identity's sockets."""
    return f"msg:{identity.key}"


def payload_exceeds(limit: int, text: str | None = None, data: bytes | None = None) -> bool:
    """True when the frame is larger than `limit` bytes (text counted as UTF-8).

    Text is encoded only when its length alone cannot decide.
    """
    size = 0 if data is None else len(data)
    if text is not None:
        if size + len(text) > limit:
            return True
        if size + len(text) * _MAX_UTF8_BYTES_PER_CHAR <= limit:
            return False
        size += len(text.encode("utf-8", "surrogatepass"))
    return size > limit


@dataclass(frozen=True, slots=True)
class MessageLimits:
    """Limits on incoming messages; None means unlimited."""

    max_payload_bytes: int | None = None
    """The largest frame in bytes (text counted as UTF-8); a larger one ends the connection. None: no limit."""
    rate: float | None = None
    """Messages per second (refill rate of the bucket); may be fractional, e.g. 0.01."""
    burst: int | None = None
    """Bucket size; defaults to the rate rounded up (at least 1). Needs `rate`."""
    strikes: int = DEFAULT_STRIKES
    """Refused messages in a row that close the connection."""
    types: tuple[TypeRate, ...] = ()
    """A bucket per message type and identity, on top of `rate` (see `message_types`)."""
    quota: MessageQuota | None = None
    """At most `quota.count` messages per identity per fixed window (see `quotas`)."""

    def __post_init__(self) -> None:
        check_optional_count("max_payload_bytes", self.max_payload_bytes, minimum=0)
        check_count("strikes", self.strikes)
        if not isinstance(self.types, tuple) or not all(isinstance(t, TypeRate) for t in self.types):
            raise InvalidArgument(f"types must be a tuple of TypeRate, got {self.types!r:.200}")
        names = [t.name for t in self.types]
        if len(set(names)) != len(names):
            raise InvalidArgument(f"types must name each message type once, got {names!r:.200}")
        if self.quota is not None and not isinstance(self.quota, MessageQuota):
            raise InvalidArgument(f"quota must be a MessageQuota or None, got {self.quota!r:.200}")
        if self.rate is None:
            if self.burst is not None:
                raise InvalidArgument(f"burst={self.burst!r} needs a rate")
            return
        check_count("burst", self.bucket_burst)
        bucket_spec(self.rate, self.bucket_burst, 1)

    @property
    def bucket_burst(self) -> int:
        """The burst in effect (the given one, or the rate rounded up)."""
        return burst_in_effect(self.rate, self.burst)


class MessagePolicy:
    """Message admission on top of any `Backend`; `gate()` gives one connection its view.

    `on_error` decides when the backend fails (``"fallback"``, ``"allow"``,
    ``"deny"``; see `failures`); None lets the `BackendError` through.
    `type_resolver` gives a frame's type when `limits.types` is set
    (`message_types.json_message_type` by default); an exception it raises is
    logged and the frame has no type. `shadow` reports every decision without
    dropping a frame or closing a socket (see the module's docstring).
    """

    __slots__ = ("backend", "hooks", "limits", "on_error", "shadow", "type_resolver", "types")

    def __init__(
        self,
        backend: Backend,
        limits: MessageLimits,
        *,
        on_error: OnError | None = None,
        hooks: DecisionHooks | None = None,
        type_resolver: MessageTypeResolver | None = None,
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
        self.type_resolver: MessageTypeResolver = json_message_type if type_resolver is None else type_resolver
        """How a frame's type is read (by default a JSON text frame's ``"type"`` field)."""
        self.types: Mapping[str, TypeRate] = MappingProxyType({t.name: t for t in limits.types})
        """`limits.types` by name."""
        self.shadow = check_flag("shadow", shadow)
        """Report the limits' decisions without dropping or closing anything (`Allowed.shadowed`)."""

    def __repr__(self) -> str:
        shadow = ", shadow=True" if self.shadow else ""
        return f"MessagePolicy({self.backend!r}, {self.limits!r}, on_error={self.on_error!r}{shadow})"

    def gate(self, identity: ClientIdentity) -> MessageGate:
        """The admission of one connection's messages (it counts that connection's strikes)."""
        return MessageGate(self, identity)

    def check_payload(self, text: str | None = None, data: bytes | None = None) -> Denial | None:
        """The `ErrorCode.PAYLOAD_TOO_LARGE` denial for an oversized frame, else None (no storage involved)."""
        limit = self.limits.max_payload_bytes
        if limit is None or not payload_exceeds(limit, text, data):
            return None
        message = f"message larger than {limit} bytes"
        return Denial(ErrorCode.PAYLOAD_TOO_LARGE, message, None, CloseCode.PAYLOAD_TOO_LARGE)

    def type_rate(self, text: str | None = None, data: bytes | None = None) -> TypeRate | None:
        """The `TypeRate` of this frame's type, or None (no types set, no type, or a type without a rate)."""
        if not self.types:
            return None
        try:
            kind = self.type_resolver(text, data)
        except Exception:
            # A bug in the site's resolver must not end the connection: the frame is untyped.
            logger.exception("message type resolver %r failed; the frame counts as untyped", self.type_resolver)
            return None
        return self.types.get(kind) if isinstance(kind, str) else None


class MessageGate:
    """One connection's message admission: its identity and its refusals in a row."""

    __slots__ = ("_failing", "_identity", "_key", "_policy", "_quota_key", "_strikes")

    def __init__(self, policy: MessagePolicy, identity: ClientIdentity) -> None:
        self._policy = policy
        self._identity = identity
        self._key = message_bucket_key(identity)
        self._quota_key = quota_key(identity)
        self._strikes = 0
        self._failing = False
        """The last storage call failed: an outage is logged once per connection, not once per frame."""

    @property
    def identity(self) -> ClientIdentity:
        """Whose bucket this connection's messages spend."""
        return self._identity

    @property
    def strikes(self) -> int:
        """Refused messages since the last allowed one."""
        return self._strikes

    async def admit(self, text: str | None = None, data: bytes | None = None) -> MessageVerdict:
        """Decide one incoming frame: `Allowed`, or a `Denial` that drops it or closes the socket.

        In shadow mode always `Allowed`, carrying the denial that would have applied.
        """
        policy = self._policy
        too_large = policy.check_payload(text, data)
        if too_large is not None:
            if policy.hooks:
                policy.hooks.emit(Decision("payload", False, too_large.code, self._identity.key, shadow=policy.shadow))
            if not policy.shadow:
                return too_large
        verdict = await self._decide(text, data)
        if too_large is None or not isinstance(verdict, Allowed):
            return verdict
        # Shadow mode: delivered all the same, and the size check would have decided first.
        return Allowed(verdict.remaining, verdict.degraded, too_large)

    async def _decide(self, text: str | None, data: bytes | None) -> MessageVerdict:
        """The verdict of the storage checks (rate, type, quota) on a frame of an accepted size."""
        policy = self._policy
        limits = policy.limits
        type_rate = policy.type_rate(text, data)
        if limits.rate is None and type_rate is None and limits.quota is None:
            self._strikes = 0  # an allowed frame ends the refusals in a row, limited or not
            return Allowed(None)
        try:
            rate, typed, quota = await self._checks(limits, type_rate)
        except BackendError as exc:
            if policy.on_error is None:
                raise
            return self._unchecked(exc, policy.on_error)
        self._failing = False
        if policy.hooks:
            self._emit(policy.hooks, rate, typed, quota)
        return self._verdict(rate, typed, type_rate, quota)

    async def _checks(
        self, limits: MessageLimits, type_rate: TypeRate | None
    ) -> tuple[BucketResult | None, BucketResult | None, CounterResult | None]:
        """Every check this frame needs, started in the same turn of the event loop (one round trip
        where the driver pipelines): the identity's bucket, the type's bucket, the quota."""
        backend = self._policy.backend
        calls: list[Coroutine[Any, Any, object]] = []
        if limits.rate is not None:
            calls.append(backend.bucket_consume(self._key, rate=limits.rate, burst=limits.bucket_burst))
        if type_rate is not None:
            key = message_type_key(self._identity, type_rate.name)
            calls.append(backend.bucket_consume(key, rate=type_rate.rate, burst=type_rate.bucket_burst))
        if limits.quota is not None:
            quota = limits.quota
            calls.append(backend.counter_incr(self._quota_key, 1, limit=quota.count, window_ms=quota.window_ms))
        # One check (the common case) is awaited here: no list of answers to gather.
        answers = [await calls[0]] if len(calls) == 1 else await _together(calls)
        found = iter(answers)
        rate = next(found) if limits.rate is not None else None
        typed = next(found) if type_rate is not None else None
        counted = next(found) if limits.quota is not None else None
        assert rate is None or isinstance(rate, BucketResult)
        assert typed is None or isinstance(typed, BucketResult)
        assert counted is None or isinstance(counted, CounterResult)
        return rate, typed, counted

    def _emit(
        self, hooks: DecisionHooks, rate: BucketResult | None, typed: BucketResult | None, quota: CounterResult | None
    ) -> None:
        key, shadow = self._identity.key, self._policy.shadow
        if rate is not None:
            hooks.emit(Decision("rate", rate.allowed, _code(rate), key, rate.degraded, shadow))
        if typed is not None:
            hooks.emit(Decision("type", typed.allowed, _code(typed), key, typed.degraded, shadow))
        if quota is not None:
            hooks.emit(Decision("quota", quota.allowed, _quota_code(quota), key, quota.degraded, shadow))

    def _verdict(
        self,
        rate: BucketResult | None,
        typed: BucketResult | None,
        type_rate: TypeRate | None,
        quota: CounterResult | None,
    ) -> MessageVerdict:
        """One verdict from the checks' answers (see the module's docstring for which refusal is reported)."""
        answers = [answer for answer in (rate, typed, quota) if answer is not None]
        degraded = any(answer.degraded for answer in answers)
        bucket = rate if rate is not None else typed
        remaining = None if bucket is None else bucket.remaining
        # Every refusal needs an answer that did not allow: when all allowed, there is nothing to weigh.
        allowed = all(answer.allowed for answer in answers)
        denial = None if allowed else self._denial(rate, typed, type_rate, quota, degraded)
        if denial is None:
            self._strikes = 0
            return Allowed(remaining, degraded)
        if self._policy.shadow:
            return Allowed(remaining, degraded, denial)
        return denial

    def _denial(
        self,
        rate: BucketResult | None,
        typed: BucketResult | None,
        type_rate: TypeRate | None,
        quota: CounterResult | None,
        degraded: bool,
    ) -> Denial | None:
        """The refusal the checks' answers make, if any (a bucket's counts a strike)."""
        answers = [answer for answer in (rate, typed, quota) if answer is not None]
        unavailable = [_wait(answer) for answer in answers if answer.unavailable and not answer.allowed]
        if unavailable:
            return message_unavailable(max(unavailable))
        if quota is not None and not quota.allowed:
            wait = quota.reset_after_ms or 0
            message = f"message quota used up: this one was dropped, the quota starts again in {wait} ms"
            return Denial(ErrorCode.QUOTA_EXCEEDED, message, wait, None, degraded)
        refused: list[tuple[BucketResult, str | None]] = []
        if rate is not None and not rate.allowed:
            refused.append((rate, None))
        if typed is not None and not typed.allowed and type_rate is not None:
            refused.append((typed, type_rate.name))
        if not refused:
            return None
        result, limit = max(refused, key=lambda pair: pair[0].retry_after_ms)
        return self._refused(result, limit, degraded)

    def _unchecked(self, exc: BackendError, on_error: OnError) -> MessageVerdict:
        """The verdict `on_error` gives when the storage failed; an outage is logged once per connection."""
        shadow = self._policy.shadow
        report_failure("message admission", exc, on_error, repeated=self._failing, shadow=shadow)
        self._failing = True
        if on_error == "deny":
            denial = message_unavailable(DEFAULT_UNAVAILABLE_RETRY_MS)
            return Allowed(None, degraded=True, shadowed=denial) if shadow else denial
        return Allowed(None, degraded=True)

    def _refused(self, result: BucketResult, limit: str | None, degraded: bool) -> Denial:
        """The denial of a message a bucket refused (`limit`: its type, None for the identity's): a strike."""
        retry = result.retry_after_ms
        self._strikes += 1
        what = "messages" if limit is None else f"{limit!r} messages"
        if self._strikes >= self._policy.limits.strikes:
            message = f"too many {what}: {self._strikes} refused in a row, closing"
            if self._policy.shadow:
                self._strikes = 0  # the would-be close is reported; the socket lives on, so the count starts again
            return Denial(ErrorCode.RATE_LIMIT_EXCEEDED, message, retry, CloseCode.RATE_LIMITED, degraded, limit)
        message = f"too many {what}: this one was dropped, retry in {retry} ms"
        return Denial(ErrorCode.RATE_LIMIT_EXCEEDED, message, retry, None, degraded, limit)


_start: Callable[[Coroutine[Any, Any, object]], asyncio.Task[object]]
if sys.version_info >= (3, 12):

    def _start(call: Coroutine[Any, Any, object]) -> asyncio.Task[object]:
        # Eager: a call that never suspends (the memory backend) ends here, with no turn of the loop.
        return asyncio.Task(call, loop=asyncio.get_running_loop(), eager_start=True)

else:
    _start = asyncio.ensure_future


async def _together(calls: list[Coroutine[Any, Any, object]]) -> list[object]:
    """Run `calls` concurrently, all started before any is awaited; each answer in order.

    The first runs in the caller's task and the others in tasks of their own (cheaper
    than `asyncio.gather`, which makes a task of each). Every call has ended when this
    returns; a `BackendError` is raised only then (the first one, in order), and if the
    caller is cancelled, or a call raises anything else, the calls still running are
    cancelled.
    """
    first, *rest = calls
    if not rest:
        return [await first]
    tasks = [_start(call) for call in rest]
    answers: list[object] = []
    try:
        for pending in (first, *tasks):
            try:
                answers.append(await pending)
            except BackendError as exc:
                answers.append(exc)
    finally:
        for task in tasks:
            task.cancel()  # a no-op for a task that has ended
    failed = next((answer for answer in answers if isinstance(answer, BackendError)), None)
    if failed is not None:
        raise failed
    return answers


def _wait(answer: BucketResult | CounterResult) -> int:
    """The wait an `unavailable` refusal reports: the time until the backend tries its primary again."""
    wait = answer.retry_after_ms if isinstance(answer, BucketResult) else answer.reset_after_ms
    return DEFAULT_UNAVAILABLE_RETRY_MS if wait is None else wait


def _code(result: BucketResult) -> ErrorCode | None:
    """The wire code a bucket answer reports to the hooks; None when the message passed."""
    if result.allowed:
        return None
    return ErrorCode.BACKEND_UNAVAILABLE if result.unavailable else ErrorCode.RATE_LIMIT_EXCEEDED


def _quota_code(result: CounterResult) -> ErrorCode | None:
    """The wire code a quota answer reports to the hooks; None when the message was within the quota."""
    if result.allowed:
        return None
    return ErrorCode.BACKEND_UNAVAILABLE if result.unavailable else ErrorCode.QUOTA_EXCEEDED
