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
            "Backend URL (`redis://host:6379/0`, `rediss://`, `unix://`, `redis+cluster://`) or a `Backend` object "
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
        "msg_strikes": "Refused messages in a row before the socket is closed (4010).",
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
        "conn_retry_ms": "The `retry_after_ms` hint in connection and room denials.",
        "lease_ms": "Slots of a crashed process free themselves after this long.",
        "heartbeat_ms": (
            "How often a live connection refreshes its slots; must be shorter than the lease. `None`: a third of "
            "`WS_RATE_LEASE_MS`."
        ),
        "http_denial": (
            "Refuse connections with HTTP 429 + `Retry-After` where the server offers `websocket.http.response` "
            "(uvicorn, hypercorn; not daphne, which falls back to frame + close)."
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
            "logs), but nothing is refused, dropped or closed; a tier may turn it on or off per connection."
        ),
    }
)
"""Keyword override -> what the setting means (Markdown)."""
