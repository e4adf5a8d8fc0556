"""The ASGI application: Django for HTTP, the rate-limited match rooms for WebSockets.

Serve it with ``uvicorn matchroom.asgi:application`` or ``daphne matchroom.asgi:application``
from ``examples/matchroom`` (or use ``scripts/run-example``).

Order of the WebSocket stack, outside in: the origin check (refuse other sites'
pages before anything is counted), the user (here the demo query-string user; in
a real project ``AuthMiddlewareStack``), then `RateLimitMiddleware` around the
`URLRouter`, where it finds the room from the route's ``room_id``. The rooms are
served twice: ``/ws/match/<room>/`` enforces the limits, ``/ws/shadow/<room>/`` runs
the same limits in shadow mode (``shadow=True``: every would-be refusal reported,
nothing refused), counted in the same storage.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "matchroom.settings")
# Set Django up before importing anything that touches models or settings.
http_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # type: ignore[import-untyped]  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # type: ignore[import-untyped]  # noqa: E402
from django.urls import re_path  # noqa: E402

from ratelimit_channels import RateLimitMiddleware  # noqa: E402

from .demo_users import QueryStringUserMiddleware  # noqa: E402
from .routing import room_urlpatterns  # noqa: E402
from .shadow_reports import SHADOW_REPORTS  # noqa: E402

enforcing = RateLimitMiddleware(URLRouter(room_urlpatterns))
shadow = RateLimitMiddleware(URLRouter(room_urlpatterns), shadow=True, hooks=SHADOW_REPORTS.hooks)
# Django's stubs type a route's view as an HTTP view; Channels' URLRouter takes any ASGI app there.
rooms = URLRouter(
    [
        re_path(r"^ws/match/", enforcing),  # type: ignore[arg-type]
        re_path(r"^ws/shadow/", shadow),  # type: ignore[arg-type]
    ]
)

application = ProtocolTypeRouter(
    {
        "http": http_application,
        "websocket": AllowedHostsOriginValidator(QueryStringUserMiddleware(rooms)),
    }
)
