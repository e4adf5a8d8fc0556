"""`LimitedConnection`: one WebSocket connection seen through the rate limits.

Made per connection by `RateLimitMiddleware`, it holds everything that belongs to
that connection: its identity, its leases, its strikes, whether it was closed here.
It admits the connection before the inner app sees it, then sits between the
inner app and the server: incoming frames go through the message gate, and once
this side closes the socket, the inner app is told ``websocket.disconnect`` and
whatever it sends afterwards is dropped.

Storage failures never reach the inner app or the client as an exception:
admission and the message gate apply ``WS_RATE_ON_BACKEND_ERROR``, lease refreshes
are retried at the next heartbeat (the process's `LeaseKeeper`, shared by its
connections, refreshes them all together), and releases that fail are left to expire.
However the connection ends (either side closing, the inner app raising, the
task cancelled at any await, twice), its slots are released exactly once.
Decisions made without the primary storage are logged at DEBUG.

With ``WS_RATE_SHADOW`` the policies refuse nothing: a connection or a frame that
would have been refused goes on, the would-be denial is logged (at DEBUG, like a
refusal, marked shadow) and the inner app finds it on `ConnectionInfo.shadowed`
for the connection.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Final

from ratelimit_core import Backend
from ratelimit_core.observe import DecisionHooks
from ratelimit_core.policies import (
    Allowed,
    ClientIdentity,
    ConnectionPolicy,
    Denial,
    Leases,
    MessageGate,
    MessagePolicy,
    MessageVerdict,
)
from ratelimit_core.policies.codes import close_reason
from ratelimit_core.policies.keeper import LeaseKeeper

from .asgi import ASGIApp, Message, Receive, Scope, Send
from .config_warnings import ConfigWarnings
from .identity import scope_identity
from .rooms import resolve_room
from .settings import RateLimitSettings

__all__ = ["SCOPE_KEY", "ConnectionInfo", "LimitedConnection"]

logger = logging.getLogger("ratelimit_channels")

SCOPE_KEY: Final = "ratelimit"
"""The scope key under which the inner app finds this connection's `ConnectionInfo`."""

_DENIAL_RESPONSE: Final = "websocket.http.response"


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What the limits know about a connection (``scope["ratelimit"]`` for the inner app)."""

    identity: ClientIdentity
    """Whom the connection counts against (a signed-in user, or the client's IP)."""
    room: str | None
    """The room it joined (from the route kwarg or the resolver), or None."""
    degraded: bool = False
    """Admitted without the primary storage (a `FallbackBackend`'s local store, or ``on_error``)."""
    shadowed: Denial | None = None
    """In shadow mode (``WS_RATE_SHADOW``), the denial that would have refused this connection."""


class LimitedConnection:
    """The per-connection state of the middleware; `run` is the whole connection."""

    __slots__ = (
        "_backend",
        "_closed_here",
        "_config_warnings",
        "_gate",
        "_hooks",
        "_inner",
        "_keeper",
        "_leases",
        "_pending",
        "_receive",
        "_scope",
        "_send",
        "_settings",
    )

    def __init__(
        self,
        inner: ASGIApp,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        settings: RateLimitSettings,
        backend: Backend,
        keeper: LeaseKeeper,
        hooks: DecisionHooks | None = None,
        config_warnings: ConfigWarnings | None = None,
    ) -> None:
        self._keeper = keeper
        """Refreshes this connection's leases with every other's of the process (see `BackendCache.keeper`)."""
        self._hooks = hooks
        self._config_warnings = config_warnings
        """The middleware's record of misconfigurations already logged (shared by its connections)."""
        self._inner = inner
        self._scope = scope
        self._receive = receive
        self._send = send
        self._settings = settings
        self._backend = backend
        self._leases: Leases | None = None
        self._gate: MessageGate | None = None
        self._pending: Message | None = None
        self._closed_here: Message | None = None
        """The ``websocket.disconnect`` handed to the inner app once this side closed the socket."""

    async def run(self) -> None:
        first = await self._receive()
        if first.get("type") != "websocket.connect":
            # The client left before connecting: there is nothing to limit.
            self._pending = first
            await self._inner(self._scope, self._inner_receive, self._inner_send)
            return
        settings = self._settings
        identity = scope_identity(self._scope, settings.trusted_proxies, settings.ipv6_prefix)
        room = resolve_room(self._scope, self._inner, room_kwarg=settings.room_kwarg, resolver=settings.room_resolver)
        if self._config_warnings is not None:
            self._config_warnings.check_user(self._scope, settings)
            self._config_warnings.check_room(self._scope, self._inner, settings, room)
        on_error = settings.on_backend_error
        verdict = await ConnectionPolicy(
            self._backend, settings.connections, on_error=on_error, hooks=self._hooks, shadow=settings.shadow
        ).admit(identity, room)
        if verdict.degraded:
            outcome = verdict.code if isinstance(verdict, Denial) else "admitted"
            logger.debug("connection of %s to room %r: %s without the primary backend", identity.key, room, outcome)
        if isinstance(verdict, Denial):
            logger.debug(
                "refused a connection of %s to room %r: %s",
                identity.key,
                room,
                verdict.code,
                extra={"ratelimit_code": verdict.code, "ratelimit_identity": identity.key, "ratelimit_room": room},
            )
            await self._refuse(verdict)
            return
        self._leases = verdict.leases
        if verdict.shadowed is not None:
            _log_shadowed("connection", identity.key, verdict.shadowed, room)
        # From here on the slots are this connection's: every way out goes through the release below.
        try:
            messages = MessagePolicy(
                self._backend,
                settings.messages,
                on_error=on_error,
                hooks=self._hooks,
                type_resolver=settings.message_type_resolver,
                shadow=settings.shadow,
            )
            self._gate = messages.gate(identity)
            self._scope[SCOPE_KEY] = ConnectionInfo(identity, room, verdict.degraded, verdict.shadowed)
            self._pending = first
            self._keeper.keep(verdict.leases)
            await self._inner(self._scope, self._inner_receive, self._inner_send)
        finally:
            self._keeper.forget(verdict.leases)  # a refresh in flight still finishes first (see Leases)
            await self._release()

    async def _refuse(self, denial: Denial) -> None:
        if self._settings.http_denial and _DENIAL_RESPONSE in (self._scope.get("extensions") or {}):
            retry_s = math.ceil((denial.retry_after_ms or 0) / 1000)
            headers = [(b"content-type", b"application/json"), (b"retry-after", str(retry_s).encode())]
            await self._send(
                {"type": "websocket.http.response.start", "status": int(denial.http_status), "headers": headers}
            )
            await self._send({"type": "websocket.http.response.body", "body": denial.frame_text().encode()})
            return
        # A close before accept reaches a browser as a bare HTTP 403: accept, so the frame and code arrive.
        await self._send({"type": "websocket.accept"})
        await self._send_denial(denial)

    async def _send_denial(self, denial: Denial) -> None:
        """The error frame, then the close when the denial ends the connection."""
        await self._send({"type": "websocket.send", "text": denial.frame_text()})
        if denial.close_code is not None:
            # A plain int: some servers (daphne, through autobahn) refuse an int subclass such as CloseCode.
            close = {"type": "websocket.close", "code": int(denial.close_code), "reason": denial.close_reason}
            await self._send(close)

    async def _inner_receive(self) -> Message:
        if self._pending is not None:
            message, self._pending = self._pending, None
            return message
        if self._closed_here is not None:
            return self._closed_here
        while True:
            message = await self._receive()
            kind = message.get("type")
            if kind == "websocket.receive" and self._gate is not None:
                verdict = await self._gate.admit(message.get("text"), message.get("bytes"))
                if verdict.degraded:
                    _log_degraded(self._gate, verdict)
                if isinstance(verdict, Allowed):
                    if verdict.shadowed is not None:
                        _log_shadowed("message", self._gate.identity.key, verdict.shadowed)
                    return message
                _log_refused(self._gate, verdict)
                if verdict.close_code is None:
                    await self._send_denial(verdict)
                    continue  # the frame is dropped; the socket stays open
                return await self._close_here(verdict)
            if kind == "websocket.disconnect":
                await self._release()
            return message

    async def _close_here(self, denial: Denial) -> Message:
        """End the connection from this side: the denial to the client, the slots released, and the
        ``websocket.disconnect`` the inner app is handed from now on."""
        # Set first, so that anything the inner app sends from now on is dropped.
        code = None if denial.close_code is None else int(denial.close_code)
        self._closed_here = {"type": "websocket.disconnect", "code": code, "reason": denial.close_reason}
        await self._send_denial(denial)
        await self._release()
        return self._closed_here

    async def _inner_send(self, message: Message) -> None:
        if self._closed_here is not None:
            return
        if message.get("type") == "websocket.close":
            reason = message.get("reason")
            if reason:
                message = {**message, "reason": close_reason(reason)}
            await self._send(message)
            await self._release()
            return
        await self._send(message)

    async def _release(self) -> None:
        """Give the slots back: the one shielded removal of `Leases.release`, whichever path gets here first.

        A cancelled caller leaves the removal running, and a later call waits for
        that same removal, so no path can cut another short or remove twice.
        """
        if self._leases is not None:
            await self._leases.release()


def _log_degraded(gate: MessageGate, verdict: MessageVerdict) -> None:
    outcome = verdict.code if isinstance(verdict, Denial) else "allowed"
    logger.debug("message of %s: %s without the primary backend", gate.identity.key, outcome)


def _log_refused(gate: MessageGate, denial: Denial) -> None:
    key = gate.identity.key
    logger.debug(
        "refused a message of %s: %s%s",
        key,
        denial.code,
        "" if denial.close_code is None else f", closing {denial.close_code}",
        extra={"ratelimit_code": denial.code, "ratelimit_identity": key},
    )


def _log_shadowed(what: str, key: str, denial: Denial, room: str | None = None) -> None:
    """A would-be refusal in shadow mode: logged like a refusal, marked shadow, and nothing refused."""
    closing = "" if denial.close_code is None else f", closing {denial.close_code}"
    logger.debug(
        "shadow: would have refused a %s of %s: %s%s",
        what,
        key,
        denial.code,
        closing,
        extra={
            "ratelimit_code": denial.code,
            "ratelimit_identity": key,
            "ratelimit_room": room,
            "ratelimit_shadow": True,
        },
    )
