"""The two ways a process leaves: a graceful stop (SIGTERM, a deploy) and a crash (SIGKILL), both on Redis.

Two processes of the same ASGI server share one redis-server. Users sit at their
per-user limit (2 sockets each) on the first one. Graceful: the first process is
sent SIGTERM and each client reconnects to the second the moment its socket is
closed: every refusal there is a slot the stopped process left behind. Crash:
the first process is killed with a short lease, and each client tries again every
``retry_s`` (jittered) until it is admitted: how long a user stays locked out,
from the kill to the start of the attempt that got in (late by up to 1.5 retry
intervals, or early by the handshake that preceded the server's check).
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from typing import Any, Final

import redis

from .app_process import AppProcess
from .clients import ClientPool
from .plan import LIMITS, SOCKETS_PER_USER, LoadScale, sockets

__all__ = ["crash", "graceful_restart"]

_GRACEFUL_LEASE_MS: Final = 60_000
"""The default lease: a slot left behind by a stopped process would lock its user out this long."""
_OPEN_TIMEOUT_S: Final = 10.0


def _settings(redis_url: str, lease_ms: int) -> dict[str, object]:
    return {**LIMITS, "WS_RATE_BACKEND": redis_url, "WS_RATE_LEASE_MS": lease_ms}


def _fill(first: AppProcess, clients: ClientPool, scale: LoadScale, users: int) -> int:
    """`users` users at their limit on `first`; how many sockets were admitted."""
    held = sockets(SOCKETS_PER_USER * users)
    per_worker = max(1, scale.connect_concurrency // clients.size)
    shares = [
        {"base": first.ws_base(), "sockets": share, "concurrency": per_worker, "timeout_s": _OPEN_TIMEOUT_S}
        for share in clients.share(held)
    ]
    answers = clients.call("open", shares, wait_s=len(held) * _OPEN_TIMEOUT_S)
    admitted = int(sum(answer["admitted"] for answer in answers))
    if admitted != len(held):
        raise RuntimeError(f"only {admitted} of {len(held)} sockets were admitted on {first!r}:\n{first.log()}")
    return admitted


def _flush(redis_url: str) -> None:
    """Start from an empty Redis: the rounds' slots and buckets must not count here."""
    with redis.Redis.from_url(redis_url) as client:
        client.flushall()


def _records(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [record for answer in answers for record in answer["records"]]


def graceful_restart(asgi_server: str, redis_url: str, clients: ClientPool, scale: LoadScale) -> dict[str, Any]:
    """SIGTERM the first of two processes; clients reconnect at once to the second: how many are refused."""
    _flush(redis_url)
    settings = _settings(redis_url, _GRACEFUL_LEASE_MS)
    with (
        AppProcess(asgi_server, middleware=True, settings=settings) as first,
        AppProcess(asgi_server, middleware=True, settings=settings) as second,
    ):
        held = _fill(first, clients, scale, scale.restart_users)
        timeout_s = 60.0
        clients.send("follow", [{"base": second.ws_base(), "retry_s": None, "timeout_s": timeout_s}] * clients.size)
        first.terminate()
        exit_s = first.wait()
        records = _records(clients.gather("follow", timeout_s + 30))
        clients.call_all("close", 60, indices=None, timeout_s=50)
    outcomes = [record["attempts"][0] for record in records]
    codes = sorted({str(record["close_code"]) for record in records})
    return {
        "server": asgi_server,
        "sockets": held,
        "reconnected": len(records),
        "refused": sum(outcome.startswith("refused") for outcome in outcomes),
        "failed": sum(outcome.startswith("failed") for outcome in outcomes),
        "refusal codes": sorted({o.split(":", 1)[1] for o in outcomes if o.startswith("refused")}),
        "close codes": codes,
        "seconds to exit": exit_s,
    }


def crash(asgi_server: str, redis_url: str, clients: ClientPool, scale: LoadScale) -> dict[str, Any]:
    """SIGKILL the first of two processes; clients retry on the second until admitted: each user's lockout."""
    _flush(redis_url)
    lease_ms = scale.crash_lease_ms
    settings = _settings(redis_url, lease_ms)
    with (
        AppProcess(asgi_server, middleware=True, settings=settings) as first,
        AppProcess(asgi_server, middleware=True, settings=settings) as second,
    ):
        held = _fill(first, clients, scale, scale.crash_users)
        timeout_s = 3 * lease_ms / 1000 + 10
        retry = {"base": second.ws_base(), "retry_s": scale.retry_s, "timeout_s": timeout_s}
        clients.send("follow", [retry] * clients.size)
        killed_at = time.monotonic()
        first.kill()
        records = _records(clients.gather("follow", timeout_s + 30))
        clients.call_all("close", 60, indices=None, timeout_s=50)
    # A user is locked out until its last socket is admitted again.
    per_user: dict[str, float] = defaultdict(float)
    never = 0
    for record in records:
        if record["admitted_at"] is None:
            never += 1
            continue
        per_user[record["user"]] = max(per_user[record["user"]], record["admitted_at"] - killed_at)
    lockouts = sorted(per_user.values())
    return {
        "server": asgi_server,
        "sockets": held,
        "lease_ms": lease_ms,
        "retry_s": scale.retry_s,
        "never admitted": never,
        "lockout max s": lockouts[-1] if lockouts else float("nan"),
        "lockout median s": statistics.median(lockouts) if lockouts else float("nan"),
        "attempts per socket": statistics.mean(len(record["attempts"]) for record in records) if records else 0.0,
    }
