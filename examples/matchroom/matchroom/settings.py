"""Settings of the match room example: no database, demonstrative WebSocket limits.

The limits are small on purpose, so that a few clicks on the page reach each of
them. ``WS_RATE_BACKEND`` comes from the environment (default ``memory://``):
``WS_RATE_BACKEND=redis://127.0.0.1:6379/0`` shares the limits between processes.
"""

from __future__ import annotations

import os

SECRET_KEY = "matchroom-example-not-secret"  # the example has no sessions or signed data
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, object] = {}
ROOT_URLCONF = "matchroom.urls"
USE_TZ = True

# Chat fan-out within one process. With several processes only the limits are shared
# (through Redis); chat across processes would need channels_redis.
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

WS_RATE_BACKEND = os.environ.get("WS_RATE_BACKEND") or "memory://"
WS_RATE_CONN_PER_USER = 2  # sockets per user (per IP for anonymous sockets)
WS_RATE_CONN_PER_IP = 20  # high enough for several demo users on one machine
WS_RATE_ROOM_MAX_MEMBERS = 4
WS_RATE_CONNECT_RPS = 0.5  # connection attempts per user (per IP for anonymous): one every 2 s ...
WS_RATE_CONNECT_BURST = 6  # ... after a burst of 6, so the page's connect storm of 10 meets both limits
WS_RATE_MSG_RPS = 5
WS_RATE_MSG_BURST = 5
WS_RATE_MSG_STRIKES = 10  # refusals in a row before the socket is closed with 4010
WS_RATE_MSG_TYPES = {"chat": {"rps": 1, "burst": 3}, "emote": {"rps": 0.2, "burst": 1}}  # on top of WS_RATE_MSG_RPS
WS_RATE_MSG_QUOTA = (100, 60)  # 100 messages per user per minute, however fast
WS_MAX_PAYLOAD_BYTES = 1024
WS_RATE_CONN_RETRY_MS = 5000

# The limiter's own records: denials (DEBUG), lease and backend trouble (WARNING), recovery (INFO).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        name: {"handlers": ["console"], "level": "INFO", "propagate": False}
        for name in ("ratelimit_core", "ratelimit_channels")
    },
}
