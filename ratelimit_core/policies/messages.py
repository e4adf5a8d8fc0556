"""`MessagePolicy`: admit each incoming message by size, then by rate.

A frame larger than `max_payload_bytes` (text counted as UTF-8 bytes) ends the
connection. Otherwise it costs one token from the sender identity's bucket, which
all of that identity's sockets share; a refused message is dropped and counts as
a strike, and the `strikes`-th refusal in a row ends the connection. The size
check needs no storage, so an allowed message costs exactly one backend call.
When the storage fails, `on_error` decides (see `failures`); a refusal the
backend marks `unavailable` (its primary is down) drops the message with
`ErrorCode.BACKEND_UNAVAILABLE`. A message dropped for either reason is not a strike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from ..arguments import check_count, check_optional_count
from ..backend import Backend, BucketResult
from ..bucket import bucket_spec
from ..errors import BackendError, InvalidArgument
from ..failure_modes import OnError, check_on_error
from ..observe import Decision, DecisionHooks
from .codes import CloseCode, ErrorCode
from .failures import DEFAULT_UNAVAILABLE_RETRY_MS, message_unavailable, report_failure
from .identity import ClientIdentity
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

    def __post_init__(self) -> None:
        check_optional_count("max_payload_bytes", self.max_payload_bytes, minimum=0)
        check_count("strikes", self.strikes)
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


def burst_in_effect(rate: float | None, burst: int | None) -> int:
    """`burst` when given, else the rate rounded up (at least 1): the default burst of every rate limit."""
    if burst is not None:
        return burst
    value = rate if isinstance(rate, int | float) else 1
    return max(1, math.ceil(value)) if math.isfinite(value) else 1


class MessagePolicy:
    """Message admission on top of any `Backend`; `gate()` gives one connection its view.

    `on_error` decides when the backend fails (``"fallback"``, ``"allow"``,
    ``"deny"``; see `failures`); None lets the `BackendError` through.
    """

    __slots__ = ("backend", "hooks", "limits", "on_error")

    def __init__(
        self,
        backend: Backend,
        limits: MessageLimits,
        *,
        on_error: OnError | None = None,
        hooks: DecisionHooks | None = None,
    ) -> None:
        self.backend = backend
        """Where the limits are counted."""
        self.limits = limits
        """The limits this policy enforces."""
        self.on_error = None if on_error is None else check_on_error(on_error)
        """What to decide when the backend fails; None raises the `BackendError`."""
        self.hooks = hooks
        """Where decisions are reported, if anywhere."""

    def __repr__(self) -> str:
        return f"MessagePolicy({self.backend!r}, {self.limits!r}, on_error={self.on_error!r})"

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


class MessageGate:
    """One connection's message admission: its identity and its refusals in a row."""

    __slots__ = ("_failing", "_identity", "_key", "_policy", "_strikes")

    def __init__(self, policy: MessagePolicy, identity: ClientIdentity) -> None:
        self._policy = policy
        self._identity = identity
        self._key = message_bucket_key(identity)
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
        """Decide one incoming frame: `Allowed`, or a `Denial` that drops it or closes the socket."""
        policy = self._policy
        too_large = policy.check_payload(text, data)
        if too_large is not None:
            if policy.hooks:
                policy.hooks.emit(Decision("payload", False, too_large.code, self._identity.key))
            return too_large
        limits = policy.limits
        if limits.rate is None:
            return Allowed(None)
        try:
            result = await policy.backend.bucket_consume(self._key, rate=limits.rate, burst=limits.bucket_burst)
        except BackendError as exc:
            if policy.on_error is None:
                raise
            return self._unchecked(exc, policy.on_error)
        self._failing = False
        if policy.hooks:
            policy.hooks.emit(Decision("rate", result.allowed, _code(result), self._identity.key, result.degraded))
        if result.allowed:
            self._strikes = 0
            return Allowed(result.remaining, result.degraded)
        return self._refused(result)

    def _unchecked(self, exc: BackendError, on_error: OnError) -> MessageVerdict:
        """The verdict `on_error` gives when the storage failed; an outage is logged once per connection."""
        report_failure("message admission", exc, on_error, repeated=self._failing)
        self._failing = True
        if on_error == "deny":
            return message_unavailable(DEFAULT_UNAVAILABLE_RETRY_MS)
        return Allowed(None, degraded=True)

    def _refused(self, result: BucketResult) -> Denial:
        """The denial of a message the bucket refused: a strike, unless only the primary storage was down."""
        retry = result.retry_after_ms
        if result.unavailable:
            # Refused only because the primary is down, not a strike: retry_after_ms is
            # then the time until the backend tries its primary again.
            return message_unavailable(retry)
        self._strikes += 1
        if self._strikes >= self._policy.limits.strikes:
            message = f"too many messages: {self._strikes} refused in a row, closing"
            return Denial(ErrorCode.RATE_LIMIT_EXCEEDED, message, retry, CloseCode.RATE_LIMITED, result.degraded)
        message = f"too many messages: this one was dropped, retry in {retry} ms"
        return Denial(ErrorCode.RATE_LIMIT_EXCEEDED, message, retry, None, result.degraded)


def _code(result: BucketResult) -> ErrorCode | None:
    """The wire code a bucket answer reports to the hooks; None when the message passed."""
    if result.allowed:
        return None
    return ErrorCode.BACKEND_UNAVAILABLE if result.unavailable else ErrorCode.RATE_LIMIT_EXCEEDED
