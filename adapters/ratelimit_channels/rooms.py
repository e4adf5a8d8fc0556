"""Which room a connection joins: from a `room_resolver(scope)`, from ``scope["url_route"]``,
or by matching the path against the routes of the `URLRouter` the middleware wraps.

The usual place for the middleware is around the `URLRouter`, where the router has
not run yet and ``scope["url_route"]`` is not set; `route_kwargs` then does what
the router will do (``root_path``, nested routers, ``default_args``, routers
wrapped in middleware) without calling anything. A path that matches no route has
no room.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from .asgi import Scope
from .settings import RoomResolver

__all__ = ["RouteMatch", "find_router", "match_route", "resolve_room", "route_kwargs", "routed_to"]

_MAX_WRAPPERS: Final = 32
"""How many middleware layers `find_router` looks through (a guard against cycles)."""


def find_router(app: object) -> Any | None:
    """The first Channels `URLRouter` in `app`, looking through middleware (``.inner``)
    and the ``"websocket"`` entry of a `ProtocolTypeRouter`; None when there is none."""
    for _ in range(_MAX_WRAPPERS):
        # URLRouter marks itself so; nested routers are recognised by the same flag.
        if getattr(app, "_path_routing", False) is True and hasattr(app, "routes"):
            return app
        mapping = getattr(app, "application_mapping", None)
        app = mapping.get("websocket") if isinstance(mapping, Mapping) else getattr(app, "inner", None)
        if app is None:
            return None
    return None


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """The route a connection's path matches: its pattern (nested patterns joined) and its kwargs."""

    pattern: str
    kwargs: dict[str, Any]


def route_kwargs(scope: Scope, router: Any) -> dict[str, Any] | None:
    """The ``url_route`` kwargs `router` would give this connection, or None when no route matches."""
    match = match_route(scope, router)
    return None if match is None else match.kwargs


def match_route(scope: Scope, router: Any) -> RouteMatch | None:
    """The route of `router` this connection would reach, or None when no route matches."""
    path = scope.get("path_remaining", scope.get("path"))
    if not isinstance(path, str):
        return None
    if "path_remaining" not in scope:
        # The outermost router strips root_path, and refuses paths outside it.
        root_path = scope.get("root_path", "") or ""
        if root_path and not path.startswith(root_path):
            return None
        path = path[len(root_path) :]
    path = path.lstrip("/")
    outer = scope.get("url_route") or {}
    for route in router.routes:
        match = route.pattern.match(path)
        if not match:
            continue
        remaining, args, kwargs = match
        merged = {**outer.get("kwargs", {}), **kwargs, **route.default_args}
        nested = find_router(route.callback)
        if nested is None:
            return RouteMatch(str(route.pattern), merged)
        inner_scope = dict(
            scope,
            path_remaining=remaining,
            url_route={"args": tuple(outer.get("args", ())) + tuple(args), "kwargs": merged},
        )
        found = match_route(inner_scope, nested)
        if found is not None:
            return RouteMatch(str(route.pattern) + found.pattern, found.kwargs)
        # The nested router raises Resolver404 here, and the outer one tries its next route.
    return None


def routed_to(scope: Scope, app: object) -> RouteMatch | None:
    """The route this connection reaches: matched in the router inside `app`, else the one a router
    outside the middleware already chose (its pattern unknown: the path stands for it)."""
    router = find_router(app)
    if router is not None:
        return match_route(scope, router)
    url_route = scope.get("url_route")
    if url_route:
        return RouteMatch(str(scope.get("path")), dict(url_route.get("kwargs") or {}))
    return None


def resolve_room(scope: Scope, app: object, *, room_kwarg: str, resolver: RoomResolver | None = None) -> str | None:
    """The room of this connection, or None for no room check.

    `resolver` wins when given. Otherwise ``scope["url_route"]`` is used when it
    already names the room (the middleware wraps a single route's consumer), else
    the path is matched against the router inside `app`.
    """
    if resolver is not None:
        room = resolver(scope)
        return None if room is None else str(room)
    kwargs = (scope.get("url_route") or {}).get("kwargs") or {}
    if room_kwarg not in kwargs:
        router = find_router(app)
        kwargs = (route_kwargs(scope, router) if router is not None else None) or {}
    value = kwargs.get(room_kwarg)
    return None if value is None else str(value)
