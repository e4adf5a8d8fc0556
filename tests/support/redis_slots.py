"""The connection slots the example's servers keep in Redis, read back the way the engine reads them.

Each limit is a set whose members are connection ids with a lease
(`ratelimit_core.policies.connections`): one set per identity (``user:<name>``),
one per client IP and one per room. `RedisSlots` reads the live members (those
whose lease has not ended) through the public `RedisBackend` API, with the
adapter's default key prefix, and with timeouts generous enough for a loaded
machine (a slow answer here must fail nothing).
"""

from __future__ import annotations

from typing import Final, Self

from ratelimit_core import RedisBackend
from ratelimit_core.policies import ClientIdentity
from ratelimit_core.policies.connections import identity_slots_key, ip_slots_key, room_members_key

__all__ = ["CLIENT_IP", "RedisSlots"]

CLIENT_IP: Final = "127.0.0.1"
"""Every test client connects from loopback, so every socket is in this IP's set."""
_TIMEOUT_S: Final = 10


class RedisSlots:
    """Live slot sets on the Redis at `url` (the example's servers use its default prefix, ``rl:``)."""

    def __init__(self, url: str) -> None:
        self._backend = RedisBackend.from_url(url, socket_timeout=_TIMEOUT_S, socket_connect_timeout=_TIMEOUT_S)

    async def of_user(self, user: str) -> frozenset[str]:
        """The ids of the connections counted against signed-in `user`."""
        return await self._backend.set_members(identity_slots_key(ClientIdentity(CLIENT_IP, user)))

    async def of_ip(self, ip: str = CLIENT_IP) -> frozenset[str]:
        """The ids of every connection from `ip`, signed in or not."""
        return await self._backend.set_members(ip_slots_key(ip))

    async def of_room(self, room: str) -> frozenset[str]:
        """The ids of the connections in `room`."""
        return await self._backend.set_members(room_members_key(room))

    async def aclose(self) -> None:
        await self._backend.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
