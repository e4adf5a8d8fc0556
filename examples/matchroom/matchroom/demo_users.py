"""DEMO ONLY: a signed-in user taken from the query string (``?user=alice``).

Anyone can claim any name this way, so it must never run in production: there,
use Channels' ``AuthMiddlewareStack`` (sessions) or your token authentication.
It lets the example show per-user limits without a database or a login form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs

from ratelimit_channels.asgi import ASGIApp, Receive, Scope, Send

__all__ = ["DemoUser", "QueryStringUserMiddleware"]

_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")


@dataclass(frozen=True, slots=True)
class DemoUser:
    """Just enough of a Django user for the rate limits: a primary key and is_authenticated."""

    pk: str
    is_authenticated: bool = True

    @property
    def username(self) -> str:
        return self.pk


class QueryStringUserMiddleware:
    """DEMO ONLY: sets ``scope["user"]`` from ``?user=NAME``; without it the socket is anonymous."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope = dict(scope)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        name = (query.get("user") or [""])[-1]
        if _NAME.fullmatch(name):
            scope["user"] = DemoUser(name)
        else:
            scope.pop("user", None)  # anonymous: limited per client IP
        await self.inner(scope, receive, send)
