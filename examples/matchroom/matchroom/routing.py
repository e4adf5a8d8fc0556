"""The WebSocket routes: one match room per ``room_id`` (the route kwarg the rate limits read)."""

from __future__ import annotations

from django.urls import re_path

from .consumers import MatchConsumer

__all__ = ["websocket_urlpatterns"]

# Bounded, so that a room name is always a valid channel-layer group name.
websocket_urlpatterns = [
    re_path(r"^ws/match/(?P<room_id>[A-Za-z0-9_-]{1,50})/$", MatchConsumer.as_asgi()),
]
