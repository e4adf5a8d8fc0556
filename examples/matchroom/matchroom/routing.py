"""The WebSocket routes: one match room per ``room_id`` (the route kwarg the rate limits read).

`asgi` mounts these room routes twice: under ``ws/match/`` with the limits enforced,
and under ``ws/shadow/`` with the same limits in shadow mode (reported, not enforced).
"""

from __future__ import annotations

from django.urls import re_path

from .consumers import MatchConsumer

__all__ = ["room_urlpatterns"]

# Bounded, so that a room name is always a valid channel-layer group name.
room_urlpatterns = [
    re_path(r"^(?P<room_id>[A-Za-z0-9_-]{1,50})/$", MatchConsumer.as_asgi()),
]
