"""The identity of a Channels connection: ``scope["user"]`` when signed in, else the client IP."""

from __future__ import annotations

from ratelimit_core.policies import ClientIdentity, TrustedProxies, client_ip

from .asgi import Scope

__all__ = ["scope_identity"]

_FORWARDED_FOR = b"x-forwarded-for"


def scope_identity(scope: Scope, trusted: TrustedProxies) -> ClientIdentity:
    """Who this connection counts as.

    The peer is ``scope["client"][0]`` (a list on daphne, a tuple elsewhere,
    missing under the test communicator: then the shared unknown identity).
    X-Forwarded-For is read only from a peer in `trusted`.
    """
    client = scope.get("client")
    peer = str(client[0]) if client else None
    forwarded: list[str] = []
    if trusted:
        forwarded = [
            value.decode("latin-1") for name, value in scope.get("headers") or () if name.lower() == _FORWARDED_FOR
        ]
    return ClientIdentity(client_ip(peer, forwarded, trusted), _user_pk(scope.get("user")))


def _user_pk(user: object) -> str | None:
    # Reading is_authenticated resolves Channels' lazy user; AuthMiddleware has filled it by then.
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    pk = getattr(user, "pk", None)
    return None if pk is None else str(pk)
