"""The identity of a Channels connection: ``scope["user"]`` when signed in, else the client IP."""

from __future__ import annotations

from ratelimit_core.policies import ClientIdentity, TrustedProxies, client_ip
from ratelimit_core.policies.identity import DEFAULT_IPV6_PREFIX, ip_group

from .asgi import Scope

__all__ = ["scope_identity"]

_FORWARDED_FOR = b"x-forwarded-for"


def scope_identity(scope: Scope, trusted: TrustedProxies, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> ClientIdentity:
    """Who this connection counts as.

    The peer is ``scope["client"][0]`` (a list on daphne, a tuple elsewhere,
    missing under the test communicator: then the shared unknown identity).
    X-Forwarded-For is read only from a peer in `trusted` (matched on its full
    address); the client's address found is then grouped by `ipv6_prefix`.
    """
    client = scope.get("client")
    peer = str(client[0]) if client else None
    forwarded: list[str] = []
    if trusted:
        forwarded = [
            value.decode("latin-1") for name, value in scope.get("headers") or () if name.lower() == _FORWARDED_FOR
        ]
    return ClientIdentity(ip_group(client_ip(peer, forwarded, trusted), ipv6_prefix), _user_pk(scope.get("user")))


def _user_pk(user: object) -> str | None:
    # Reading is_authenticated resolves Channels' lazy user; AuthMiddleware has filled it by then.
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    pk = getattr(user, "pk", None)
    return None if pk is None else str(pk)
