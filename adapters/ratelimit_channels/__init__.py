"""Django Channels adapter: WebSocket rate limits enforced by an ASGI middleware.

Put `RateLimitMiddleware` inside ``AuthMiddlewareStack``, around the ``URLRouter``::

    application = ProtocolTypeRouter({
        "websocket": AuthMiddlewareStack(RateLimitMiddleware(URLRouter(websocket_urlpatterns))),
    })
"""

from ratelimit_core import __version__ as __version__

from .backends import BackendCache, BackendFactory, BackendOptions, build_backend, default_backend_cache
from .connection import SCOPE_KEY, ConnectionInfo
from .middleware import RateLimitMiddleware
from .settings import SETTINGS, RoomResolver

__all__ = [
    "SCOPE_KEY",
    "SETTINGS",
    "BackendCache",
    "BackendFactory",
    "BackendOptions",
    "ConnectionInfo",
    "RateLimitMiddleware",
    "RoomResolver",
    "build_backend",
    "default_backend_cache",
]
