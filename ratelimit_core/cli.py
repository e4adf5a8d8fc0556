"""``ratelimit``: look at and change the live state of the limits, from a shell.

Commands (each takes ``--backend URL``, default ``$WS_RATE_BACKEND`` or ``memory://``,
and ``--prefix``, default ``rl:``):

- ``inspect --user PK | --ip ADDRESS | --room NAME``: connections held, room
  members, and (for a user or IP, given ``--rate``/``--burst`` or
  ``$WS_RATE_MSG_RPS``/``$WS_RATE_MSG_BURST``) the message tokens left and the
  wait for the next one. ``--json`` prints one JSON object.
- ``reset --user PK | --ip ADDRESS | --room NAME``: release every connection slot
  and refill the message bucket of that user, IP or room.
- ``ping``: whether the backend answers, and how fast.
- ``bench``: run the benchmark suite (from a source checkout).

An IPv6 ``--ip`` is grouped by ``--ipv6-prefix`` (default 64) as the limits group it,
so any address of a client's /64 (or the network itself, ``2001:db8:1:2::/64``)
names the same slots.

Environment: the defaults of ``--backend``, ``--rate``, ``--burst`` and
``--ipv6-prefix`` come from `BACKEND_ENV`, `RATE_ENV`, `BURST_ENV` and
`IPV6_PREFIX_ENV`. The command line owns these variables (the Channels adapter reads
Django settings, never the environment); they carry the names of the adapter's settings
on purpose, so that the environment a deployment builds its settings from points the
command at the same backend and bucket. The burst, when not given, is the one
`MessageLimits` puts into effect.

Exit codes: 0 done; 1 the backend could not be reached or failed; 2 bad usage
(unknown option, malformed URL or value). Errors are one line on stderr, never a
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from .backend import Backend
from .errors import BackendError, InvalidArgument
from .policies import ClientIdentity, MessageLimits
from .policies.connections import identity_slots_key, ip_slots_key, room_members_key
from .policies.identity import DEFAULT_IPV6_PREFIX, check_ipv6_prefix, ip_group, parse_ip
from .policies.messages import message_bucket_key
from .urls import backend_from_url

__all__ = ["BACKEND_ENV", "BURST_ENV", "IPV6_PREFIX_ENV", "RATE_ENV", "main"]

EXIT_OK, EXIT_BACKEND, EXIT_USAGE = 0, 1, 2
_PING_COUNT = 5

BACKEND_ENV: Final = "WS_RATE_BACKEND"
"""The default backend URL (else ``memory://``); the name of the Channels adapter's backend setting."""
RATE_ENV: Final = "WS_RATE_MSG_RPS"
"""The default ``--rate``; the name of the Channels adapter's message rate setting."""
BURST_ENV: Final = "WS_RATE_MSG_BURST"
"""The default ``--burst``; the name of the Channels adapter's message burst setting."""
IPV6_PREFIX_ENV: Final = "WS_RATE_IPV6_PREFIX"
"""The default ``--ipv6-prefix``; the name of the Channels adapter's IPv6 grouping setting."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ratelimit", description="Inspect and reset rate limits in a backend.")
    parser.add_argument(
        "--backend",
        default=os.environ.get(BACKEND_ENV, "memory://"),
        help=f"backend URL (default: ${BACKEND_ENV} or memory://)",
    )
    parser.add_argument("--prefix", default="rl:", help="key prefix the limits use (default: rl:)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, summary in [("inspect", "show the live state of limits"), ("reset", "clear limits")]:
        command = commands.add_parser(name, help=summary, description=summary)
        target = command.add_mutually_exclusive_group(required=True)
        target.add_argument("--user", metavar="PK", help="a signed-in user's primary key")
        target.add_argument("--ip", metavar="ADDRESS", help="a client IP address (anonymous clients)")
        command.add_argument(
            "--ipv6-prefix",
            type=int,
            default=_env_int(IPV6_PREFIX_ENV, DEFAULT_IPV6_PREFIX),
            help=f"prefix length IPv6 clients are grouped by (default: ${IPV6_PREFIX_ENV} or {DEFAULT_IPV6_PREFIX})",
        )
        target.add_argument("--room", metavar="NAME", help="a room")
        command.add_argument("--rate", type=float, default=_env_float(RATE_ENV), help="messages per second")
        command.add_argument("--burst", type=int, default=_env_int(BURST_ENV), help="message bucket size")
        if name == "inspect":
            command.add_argument("--json", action="store_true", help="print one JSON object")

    ping = commands.add_parser("ping", help="check that the backend answers", description="check the backend")
    ping.add_argument("--count", type=int, default=_PING_COUNT, help=f"pings to time (default {_PING_COUNT})")
    bench = commands.add_parser("bench", help="run the benchmark suite", description="run the benchmark suite")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the benchmark suite, e.g. --quick")
    return parser


def _env_float(name: str) -> float | None:
    value = os.environ.get(name)
    return None if value in (None, "") else float(value)


def _env_int(name: str, default: int | None = None) -> int | None:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def _identity(args: argparse.Namespace) -> ClientIdentity | None:
    if args.user is not None:
        return ClientIdentity(ip="", user=args.user)
    if args.ip is not None:
        prefix = check_ipv6_prefix("--ipv6-prefix", args.ipv6_prefix)
        # A network as the limits name it (2001:db8:1:2::/64) stands for its first address.
        address = args.ip.split("/", 1)[0] if ":" in args.ip else args.ip
        if parse_ip(address) is None:
            raise InvalidArgument(f"--ip must be an IP address, got {args.ip!r}")
        return ClientIdentity(ip=ip_group(address, prefix))
    return None


def _slot_keys(args: argparse.Namespace, identity: ClientIdentity | None) -> dict[str, str]:
    if identity is None:
        return {"room members": room_members_key(args.room)}
    keys = {"connections": identity_slots_key(identity)}
    if identity.user is None:
        keys["connections from this IP"] = ip_slots_key(identity.ip)
    return keys


def _bucket_args(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.rate is None:
        return None
    # The policy's own defaulting and checks: the bucket inspected is the one the limits use.
    limits = MessageLimits(rate=args.rate, burst=args.burst)
    return {"rate": args.rate, "burst": limits.bucket_burst}


async def _inspect(backend: Backend, args: argparse.Namespace) -> dict[str, Any]:
    identity = _identity(args)
    report: dict[str, Any] = {}
    for label, key in _slot_keys(args, identity).items():
        members = await backend.set_members(key)
        report[label] = {"held": len(members), "members": sorted(members)}
    bucket = _bucket_args(args)
    if identity is not None and bucket is not None:
        state = await backend.bucket_peek(message_bucket_key(identity), **bucket)
        report["messages"] = {
            "tokens_left": state.remaining,
            "burst": bucket["burst"],
            "retry_after_ms": state.retry_after_ms,
            "full_after_ms": state.reset_after_ms,
        }
    return report


async def _reset(backend: Backend, args: argparse.Namespace) -> dict[str, int]:
    identity = _identity(args)
    released = {}
    for label, key in _slot_keys(args, identity).items():
        members = await backend.set_members(key)
        for member in members:
            await backend.set_remove(key, member)
        released[label] = len(members)
    if identity is not None:
        await backend.bucket_reset(message_bucket_key(identity))
    return released


async def _ping(backend: Backend, count: int) -> list[float]:
    timings = []
    for _ in range(max(1, count)):
        start = time.perf_counter()
        await backend.ping()
        timings.append((time.perf_counter() - start) * 1000)
    return timings


async def _run(args: argparse.Namespace) -> int:
    async with backend_from_url(args.backend, prefix=args.prefix) as backend:
        if args.command == "inspect":
            report = await _inspect(backend, args)
            if args.json:
                print(json.dumps(report, sort_keys=True))
            else:
                for label, value in report.items():
                    details = ", ".join(f"{k}={v}" for k, v in value.items())
                    print(f"{label}: {details}")
        elif args.command == "reset":
            released = await _reset(backend, args)
            summary = ", ".join(f"{label}: {count} released" for label, count in released.items())
            print(f"reset: {summary}" + (", message bucket refilled" if "room members" not in released else ""))
        else:
            timings = sorted(await _ping(backend, args.count))
            print(f"ok: {args.backend.partition('://')[0]}:// answered {len(timings)} pings, "
                  f"median {timings[len(timings) // 2]:.2f} ms, max {timings[-1]:.2f} ms")  # fmt: skip
    return EXIT_OK


def _bench(extra: Sequence[str]) -> int:
    checkout = Path(__file__).resolve().parent.parent
    if not (checkout / "benchmarks" / "__main__.py").exists():
        print("error: `ratelimit bench` runs the benchmark suite of a source checkout; none found", file=sys.stderr)
        return EXIT_USAGE
    return subprocess.run([sys.executable, "-m", "benchmarks", *extra], cwd=checkout, check=False).returncode


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        args = _parser().parse_args(argv)
    except ValueError as exc:  # a malformed $RATE_ENV or $BURST_ENV
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "bench":
        return _bench(args.args)
    try:
        return asyncio.run(_run(args))
    except InvalidArgument as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BACKEND


if __name__ == "__main__":
    sys.exit(main())
