"""Misconfigurations only a live connection shows, logged once per middleware at WARNING.

The system checks (`checks`) see the settings but not where the middleware sits
nor which routes it serves; these do, from a connection's scope. Each warning says
what to change, and is logged the first time it is seen, not at every connection.
"""

from __future__ import annotations

import logging
from typing import Final

from .asgi import Scope
from .rooms import routed_to
from .settings import RateLimitSettings

__all__ = ["ConfigWarnings"]

logger = logging.getLogger("ratelimit_channels")

NO_USER: Final = "no_user"
NO_ROOM: Final = "no_room"


class ConfigWarnings:
    """The runtime misconfigurations one middleware has already logged; cheap once each is logged."""

    __slots__ = ("_logged",)

    def __init__(self) -> None:
        self._logged: set[str] = set()

    def check_user(self, scope: Scope, settings: RateLimitSettings) -> None:
        """A per-user limit with no ``scope["user"]``: the middleware sits outside the auth middleware."""
        if NO_USER in self._logged or settings.connections.per_user is None or "user" in scope:
            return
        self._logged.add(NO_USER)
        logger.warning(
            "WS_RATE_CONN_PER_USER is set, but RateLimitMiddleware sees no 'user' in the scope: it is outside "
            "the auth middleware, so every signed-in user counts as their IP. Put it inside: "
            "AuthMiddlewareStack(RateLimitMiddleware(URLRouter(...)))."
        )

    def check_room(self, scope: Scope, app: object, settings: RateLimitSettings, room: str | None) -> None:
        """A room limit, but the route this connection matched has kwargs and none of them is the room's."""
        if (
            room is not None
            or NO_ROOM in self._logged
            or settings.connections.room_max_members is None
            or settings.room_resolver is not None
        ):
            return
        route = routed_to(scope, app)
        if route is None or not route.kwargs:
            # No route, or one without kwargs (``ws/notifications/``): no kwarg could name a room there.
            return
        self._logged.add(NO_ROOM)
        logger.warning(
            "WS_RATE_ROOM_MAX_MEMBERS is set, but route %r gives kwargs %s and no %r, so its connections join no "
            "room and no room limit applies. Set WS_RATE_ROOM_KWARG to the kwarg that names the room, or "
            "WS_RATE_ROOM_RESOLVER to a function of the scope that returns it.",
            route.pattern,
            sorted(route.kwargs),
            settings.room_kwarg,
        )
