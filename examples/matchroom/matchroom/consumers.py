"""`MatchConsumer`: one player's socket in a match room; chat frames go to everyone in the room."""

from __future__ import annotations

import json
import os
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer  # type: ignore[import-untyped]

from ratelimit_channels import SCOPE_KEY, ConnectionInfo

from .shadow_reports import SHADOW_REPORTS

__all__ = ["MatchConsumer"]


class MatchConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """Welcomes the player, relays text frames to the room as chat, answers binary frames with their size.

    Frames reach it only after the rate limits passed them; refusals are sent by
    the middleware, never by this consumer. On the shadow route nothing is refused:
    the consumer tells the player what would have been (``"shadowed"`` in the
    welcome, a ``"shadow"`` frame per would-be refusal of a message).
    """

    async def connect(self) -> None:
        self.room: str = self.scope["url_route"]["kwargs"]["room_id"]
        self.group = f"match.{self.room}"
        user = self.scope.get("user")
        self.player: str | None = getattr(user, "username", None)
        info: ConnectionInfo | None = self.scope.get(SCOPE_KEY)
        self.counted_as: str | None = None if info is None else info.identity.key
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        welcome: dict[str, Any] = {
            "type": "welcome",
            "room": self.room,
            "user": self.player,
            # Who the limits count this socket as: "user:<name>", or "ip:<address>" when anonymous.
            "counted_as": self.counted_as,
            "pid": os.getpid(),
        }
        if info is not None and info.shadowed is not None:
            # Shadow route only: the error frame the limits would have refused this socket with.
            welcome["shadowed"] = info.shadowed.frame()
        await self.send_json(welcome)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        if self.counted_as is not None:
            for decision in SHADOW_REPORTS.take(self.counted_as):
                await self.send_json({"type": "shadow", "limit": decision.limit, "code": decision.code})
        if text_data is not None:
            text, kind = _typed(text_data)
            await self.channel_layer.group_send(
                self.group, {"type": "chat.message", "user": self.player, "text": text, "kind": kind}
            )
        elif bytes_data is not None:
            await self.send_json({"type": "binary", "bytes": len(bytes_data)})

    async def chat_message(self, event: dict[str, Any]) -> None:
        chat = {"type": "chat", "user": event["user"], "text": event["text"]}
        if event.get("kind") is not None:
            chat["kind"] = event["kind"]  # the message type of a typed frame (see the page's type selector)
        await self.send_json(chat)

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)


def _typed(text: str) -> tuple[str, str | None]:
    """A typed frame ``{"type": "emote", "text": "..."}`` as its text and type; any other text as itself, untyped."""
    try:
        frame = json.loads(text)
    except ValueError:
        return text, None
    if isinstance(frame, dict) and isinstance(frame.get("type"), str) and isinstance(frame.get("text"), str):
        return frame["text"], frame["type"]
    return text, None
