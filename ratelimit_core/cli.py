"""``ratelimit``: look at and change the live state of the limits, from a shell.

Commands (each takes ``--backend URL``, default ``$WS_RATE_BACKEND`` or ``memory://``,
and ``--prefix``, default ``rl:``):

- ``inspect --user PK | --ip ADDRESS | --room NAME``: connections held, room
  members, and for a user or IP: the message tokens left and the wait for the next
  one (given ``--rate``/``--burst`` or ``$WS_RATE_MSG_RPS``/``$WS_RATE_MSG_BURST``),
  the tokens left of one message type's bucket (given ``--type``, ``--type-rate``
  and ``--type-burst``), and the message quota counted in the current window (with
  what is left of it, given ``--quota``). ``--json`` prints one JSON object.
- ``reset --user PK | --ip ADDRESS | --room NAME``: release every connection slot;
  for a user or IP also refill the message bucket, clear the message quota, and
  refill the bucket of the message type ``--type`` names.
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

The type and quota options have no environment defaults: ``WS_RATE_MSG_TYPES`` and
``WS_RATE_MSG_QUOTA`` are Python values in Django settings, not numbers.

Exit codes: 0 done; 1 the backend could not be reached or failed; 2 bad usage
(unknown option, malformed URL or value). Errors are one line on stderr, never a
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

from .arguments import MAX_COUNT
from .backend import Backend, BucketResult
from .errors import BackendError, InvalidArgument
from .policies import ClientIdentity, MessageLimits, TypeRate
from .policies.connections import identity_slots_key, ip_slots_key, room_members_key
from .policies.identity import DEFAULT_IPV6_PREFIX, check_ipv6_prefix, ip_group, parse_ip
from .policies.message_types import message_type_key
from .policies.messages import message_bucket_key
from .policies.quotas import quota_key
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
        _add_target_options(command)
        _add_message_options(command, name)
        if name == "inspect":
            command.add_argument("--json", action="store_true", help="print one JSON object")
        command.set_defaults(usage_error=command.error)

    ping = commands.add_parser("ping", help="check that the backend answers", description="check the backend")
    ping.add_argument("--count", type=int, default=_PING_COUNT, help=f"pings to time (default {_PING_COUNT})")
    bench = commands.add_parser("bench", help="run the benchmark suite", description="run the benchmark suite")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the benchmark suite, e.g. --quick")
    return parser


def _add_target_options(command: argparse.ArgumentParser) -> None:
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


def _add_message_options(command: argparse.ArgumentParser, name: str) -> None:
    command.add_argument("--rate", type=float, default=_env_float(RATE_ENV), help="messages per second")
    command.add_argument("--burst", type=int, default=_env_int(BURST_ENV), help="message bucket size")
    shown = "show" if name == "inspect" else "refill"
    command.add_argument(
        "--type",
        metavar="NAME",
        type=_type_name,
        help=f"a message type of WS_RATE_MSG_TYPES: {shown} the user's or IP's bucket of that type"
        + (", given its rate" if name == "inspect" else ""),
    )
    command.add_argument(
        "--type-rate", metavar="RATE", type=_positive_rate, help="messages of that type per second (its 'rps')"
    )
    command.add_argument(
        "--type-burst",
        metavar="BURST",
        type=_count,
        help="bucket size of that type (default: as the limits default it, the rate rounded up)",
    )
    command.add_argument(
        "--quota",
        metavar="COUNT",
        type=_count,
        help="messages per window of WS_RATE_MSG_QUOTA: also show what is left of it"
        if name == "inspect"
        else "accepted for the same command line as inspect; reset always clears the quota",
    )


def _type_name(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("must be a message type name, got an empty string")
    return text


def _positive_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of messages per second, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of messages per second, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_COUNT}, got {text!r}")
    return value


def _check_message_options(args: argparse.Namespace) -> None:
    """The checks across options argparse cannot make; a failure is a usage error naming the options."""
    fail: Callable[[str], NoReturn] = args.usage_error
    if args.type is None:
        given = [
            option
            for option, value in (("--type-rate", args.type_rate), ("--type-burst", args.type_burst))
            if value is not None
        ]
        if given:
            fail(f"{given[0]} needs --type NAME, the message type whose bucket it sizes")
    elif args.room is not None:
        fail("--type needs --user or --ip: a room has no message buckets")
    elif args.command == "inspect" and args.type_rate is None:
        fail(f"--type {args.type} needs --type-rate: the bucket's size and refill come from that type's rate")
    if args.room is not None and args.quota is not None:
        fail("--quota needs --user or --ip: a room has no message quota")
    if args.type_rate is not None:
        try:
            TypeRate(args.type, args.type_rate, args.type_burst)
        except InvalidArgument as exc:
            fail(f"--type-rate/--type-burst: {exc}")


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


def _type_rate(args: argparse.Namespace) -> TypeRate | None:
    if args.type is None or args.type_rate is None:
        return None
    # Built as the limits build it (checked when parsing): the same burst when none is given.
    return TypeRate(args.type, args.type_rate, args.type_burst)


def _bucket_report(state: BucketResult, burst: int) -> dict[str, Any]:
    return {
        "tokens_left": state.remaining,
        "burst": burst,
        "retry_after_ms": state.retry_after_ms,
        "full_after_ms": state.reset_after_ms,
    }


async def _quota_report(backend: Backend, identity: ClientIdentity, limit: int | None) -> dict[str, Any]:
    # An increment that can never pass (limit 0) changes nothing, and answers the count and the
    # time left in its window together in one atomic step: counter_get gives only the count.
    seen = await backend.counter_incr(quota_key(identity), 1, limit=0)
    return {
        "used": seen.value,
        "limit": limit,
        "left": None if limit is None else max(0, limit - seen.value),
        "reset_after_ms": seen.reset_after_ms,
    }


async def _inspect(backend: Backend, args: argparse.Namespace) -> dict[str, Any]:
    identity = _identity(args)
    report: dict[str, Any] = {}
    for label, key in _slot_keys(args, identity).items():
        members = await backend.set_members(key)
        report[label] = {"held": len(members), "members": sorted(members)}
    if identity is None:
        return report
    bucket = _bucket_args(args)
    if bucket is not None:
        state = await backend.bucket_peek(message_bucket_key(identity), **bucket)
        report["messages"] = _bucket_report(state, bucket["burst"])
    type_rate = _type_rate(args)
    if type_rate is not None:
        key = message_type_key(identity, type_rate.name)
        state = await backend.bucket_peek(key, rate=type_rate.rate, burst=type_rate.bucket_burst)
        report["message type"] = {"type": type_rate.name, **_bucket_report(state, type_rate.bucket_burst)}
    report["message quota"] = await _quota_report(backend, identity, args.quota)
    return report


async def _reset(backend: Backend, args: argparse.Namespace) -> list[str]:
    """Clear what `_inspect` shows; returns what was done, one phrase each."""
    identity = _identity(args)
    done = []
    for label, key in _slot_keys(args, identity).items():
        members = await backend.set_members(key)
        for member in members:
            await backend.set_remove(key, member)
        done.append(f"{label}: {len(members)} released")
    if identity is not None:
        await backend.bucket_reset(message_bucket_key(identity))
        done.append("message bucket refilled")
        # A counter at 0 is deleted, its window with it: subtracting the most a count can be does that in one step.
        await backend.counter_decr(quota_key(identity), MAX_COUNT)
        done.append("message quota cleared")
        if args.type is not None:
            await backend.bucket_reset(message_type_key(identity, args.type))
            done.append(f"{args.type!r} message bucket refilled")
    return done


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
            print(f"reset: {', '.join(await _reset(backend, args))}")
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
    if args.command in ("inspect", "reset"):
        _check_message_options(args)
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
