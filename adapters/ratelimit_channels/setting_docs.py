"""What each setting means, for the documentation's settings table.

`SETTING_DOCS` maps every keyword of `SETTINGS` to one Markdown sentence or two (a
``None`` default's meaning included); the documentation build fails, and so does a
test, when a setting has no entry here or an entry names no setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

__all__ = ["SETTING_DOCS"]

SETTING_DOCS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "enabled": "Off: the middleware passes everything through.",
        "backend": (
            "Backend URL (`redis://host:6379/0`, `rediss://`, `unix://`, `redis+cluster://`, `rediss+cluster://`, "
            "`redis+sentinel://`) or "
            "a `Backend` object "
            "(used as given: wrap it in a `FallbackBackend` yourself). Memory: one per process; Redis: one client "
            "per URL per event loop."
        ),
        "conn_per_user": "Open sockets per signed-in user (per IP for anonymous sockets). `None`: unlimited.",
        "conn_per_ip": "Open sockets per client IP, signed in or not. `None`: unlimited.",
        "room_max_members": "Sockets per room. `None`: unlimited.",
        "connect_rps": (
            "Connection attempts per second per user (per IP for anonymous), admitted or not; floats allowed. "
            "`None`: unlimited."
        ),
        "connect_burst": "Attempts bucket size; needs `WS_RATE_CONNECT_RPS`. `None`: the rate rounded up.",
        "msg_rps": (
            "Messages per second per user (per IP for anonymous); floats allowed, e.g. `0.01`. `None`: unlimited."
        ),
        "msg_burst": "Message bucket size; needs `WS_RATE_MSG_RPS`. `None`: the rate rounded up.",
        "max_payload_bytes": "Largest frame; text counted as UTF-8 bytes. `None`: unlimited.",
        "msg_strikes": (
            "Refused messages in a row before the socket is closed (4010); refusals by the identity's bucket and by "
            "every type's bucket count together (a quota refusal is not a strike)."
        ),
        "msg_types": (
            "A token bucket per message type and user (per IP for anonymous), on top of `WS_RATE_MSG_RPS`: "
            '`{"chat": {"rps": 1, "burst": 3}, "typing": {"rps": 5}}` (`burst` defaults to the rate rounded up). '
            "Frames of other types, or of none, pass these buckets untouched. `None`: no type buckets."
        ),
        "msg_type_resolver": (
            '`resolver(text, bytes) -> str | None` (or its dotted path) giving a frame\'s type. `None`: the `"type"` '
            "string of a JSON-object text frame of at most 16,384 characters (anything else has no type; parsing "
            "never raises). A resolver that raises is logged and the frame has no type."
        ),
        "msg_quota": (
            "`(count, seconds)`, e.g. `(1000, 3600)`: at most `count` messages per user (per IP for anonymous) in a "
            "fixed window that starts with the first message; seconds may be a float (whole milliseconds). "
            "`None`: no quota."
        ),
        "trusted_proxies": (
            "CIDRs whose X-Forwarded-For is believed (walked right to left; the first untrusted address is the client)."
        ),
        "ipv6_prefix": (
            "IPv6 clients are counted by their network of this many bits (an int 1..128; `128`: each address "
            "alone) for per-IP limits and anonymous identities; IPv4 and IPv4-mapped addresses stay whole."
        ),
        "room_kwarg": "URL route kwarg naming the room.",
        "room_resolver": (
            "`room_resolver(scope) -> str | None` (or its dotted path); wins over the kwarg. `None`: use the kwarg."
        ),
        "limits_resolver": (
            "`resolver(scope) -> dict | None` (or its dotted path): this connection's overrides of any limit, by "
            "keyword name (see [Message types, quotas and tiers]"
            "(../guides/message-limits.md#limits-per-user-or-tier)). "
            "`None`: every connection gets the site's limits."
        ),
        "conn_retry_ms": "The `retry_after_ms` hint in connection and room denials.",
        "lease_ms": "Slots of a crashed process free themselves after this long.",
        "heartbeat_ms": (
            "How often a process refreshes the slots of its live connections (all together); must be shorter than the "
            "lease. `None`: a third of "
            "`WS_RATE_LEASE_MS`."
        ),
        "http_denial": (
            "Refuse connections with HTTP 429 + `Retry-After` where the server offers `websocket.http.response` "
            "(uvicorn, hypercorn; not daphne, which falls back to frame + close)."
        ),
        "release_on_sigterm": (
            "On SIGTERM, release every slot of the process before the server's own handler starts closing sockets "
            "(see [Graceful restart](../production/leases.md#graceful-restart-sigterm))."
        ),
        "release_timeout_ms": (
            "How long, in ms, the server's own SIGTERM handler waits for that release (an int of at least 1); what "
            "is not released by then is logged, and its removal goes on until the process ends (or the slot expires "
            "with its lease). Keep it well below the time your orchestrator allows between SIGTERM and SIGKILL."
        ),
        "on_backend_error": '`"fallback"`, `"allow"` or `"deny"`: what the limits decide when the backend fails.',
        "fallback": "Wrap Redis URLs in a `FallbackBackend`.",
        "backend_timeout_ms": (
            "How long Redis may answer nothing while a call waits before the fallback takes over (the client's "
            "connect and socket timeout without the wrapper)."
        ),
        "fallback_processes": "Divide limits by this while degraded (your number of server processes).",
        "fallback_cooldown_ms": "First probe interval while degraded (doubles up to 30 s).",
        "shadow": (
            "Shadow mode: every limit is counted and every decision reported (hooks, Prometheus `shadow` label, "
            "logs), but nothing is refused, dropped or closed; a tier may turn it on or off per connection "
            "(see [Shadow mode](../guides/shadow.md))."
        ),
    }
)
"""Keyword override -> what the setting means (Markdown)."""
