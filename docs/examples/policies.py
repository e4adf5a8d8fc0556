"""The policies without a framework: one connection, admitted, sending a burst, then ending."""

import asyncio

from ratelimit_core import MemoryBackend
from ratelimit_core.policies import (
    ClientIdentity,
    ConnectionLimits,
    ConnectionPolicy,
    Denial,
    MessageLimits,
    MessagePolicy,
    TrustedProxies,
    client_ip,
)


async def main() -> None:
    backend = MemoryBackend()
    connections = ConnectionPolicy(backend, ConnectionLimits(per_user=1, room_max_members=50), on_error="fallback")
    messages = MessagePolicy(backend, MessageLimits(rate=2, strikes=3), on_error="fallback")

    # What an adapter reads from its framework: the peer, the proxy headers, the signed-in user.
    ip = client_ip("10.0.0.7:51234", ["203.0.113.9"], TrustedProxies(["10.0.0.0/8"]))
    identity = ClientIdentity(ip=ip, user="42")

    verdict = await connections.admit(identity, room="lobby")
    if isinstance(verdict, Denial):
        print("refused:", verdict.frame_text(), verdict.close_code)
        return
    try:
        second = await connections.admit(identity, room="lobby")  # per_user=1: refused
        assert isinstance(second, Denial)
        print(second.code, int(second.close_code))
        gate = messages.gate(identity)
        for text in ["a", "b", "c", "d", "e"]:
            decision = await gate.admit(text=text)
            if isinstance(decision, Denial):
                print(text, decision.code, decision.close_code and int(decision.close_code))
                if decision.close_code is not None:
                    break  # send decision.frame_text(), then close with decision.close_code
            else:
                print(text, "delivered")
        # A live connection calls `await verdict.leases.refresh()` more often than lease_ms.
    finally:
        await verdict.leases.release()  # however the connection ends: idempotent, not cut short
    print(await connections.occupancy(identity, room="lobby"))


asyncio.run(main())
