"""``python -m benchmarks sizing``: what N open sockets cost Redis and the app servers, from measured constants.

The constants are those of a load run (``--from benchmarks/results/load.json``)
or, without one, `MEASURED`: the figures of the run documented in the README.
The model is linear, with one exception: idle heartbeats cost a fixed part per
process and heartbeat interval plus a part per open socket, both fitted from the
load run's two idle windows (all sockets, then half of them), so that a batched
heartbeat (one call per process) and a per-slot one (a call per slot) are both
extrapolated as what they are. ``--check RUN.json`` compares the model with a
measured run at that run's own size.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Final

__all__ = ["MEASURED", "Constants", "Deployment", "Sizing", "constants_from", "size", "sizing_main"]


@dataclass(frozen=True, slots=True)
class Constants:
    """What one socket, message and connection cost, from a load run on the middleware over Redis."""

    calls_per_message: float
    """Redis calls per frame through the middleware."""
    calls_per_connection: float
    """Redis calls to admit and release one connection."""
    idle_calls_per_process: float
    """Idle Redis calls per process per heartbeat interval, whatever its socket count (the fitted intercept)."""
    idle_calls_per_socket: float
    """Idle Redis calls per open socket per heartbeat interval (the fitted slope)."""
    redis_bytes_per_socket: float
    """Redis memory per open socket that has sent a frame (3 slots and its message bucket)."""
    cpu_us_per_message: float
    """App-server CPU per echo with the middleware (Channels and the consumer included)."""
    cpu_us_per_connection: float
    """App-server CPU per connect plus disconnect with the middleware."""
    middleware_us_per_message: float
    """What the middleware adds per echo (the Redis run minus the middleware-off run)."""
    middleware_us_per_connection: float
    idle_cpu_us_per_socket_s: float
    """App-server CPU per open idle socket per second (heartbeats), at the run's heartbeat."""
    heartbeat_ms: int
    """The heartbeat interval the idle figures were measured at."""
    source: str = "MEASURED"


MEASURED: Final = Constants(
    # The README's run 1: python -m benchmarks load, 1,000 sockets, 3 rounds, on a shared 2-core VM.
    calls_per_message=1.0,
    calls_per_connection=6.0,
    idle_calls_per_process=1.37,
    idle_calls_per_socket=2.997,
    redis_bytes_per_socket=379.9,
    cpu_us_per_message=416.3,
    cpu_us_per_connection=1_900.0,
    middleware_us_per_message=106.8,
    middleware_us_per_connection=450.0,
    idle_cpu_us_per_socket_s=75.1,
    heartbeat_ms=2_000,
)


def _median(medians: dict[str, Any], subject: str, metric: str, default: float = 0.0) -> float:
    found = medians.get(subject, {}).get(metric)
    return default if found is None else float(found["value"])


def _idle_fit(full: float, half: float, sockets: int) -> tuple[float, float]:
    """(per process, per socket) of an idle cost measured at `sockets` (`full`) and at half of them (`half`)."""
    per_socket = max(0.0, (full - half) / (sockets - sockets // 2))
    return max(0.0, full - per_socket * sockets), per_socket


def constants_from(document: dict[str, Any], source: str) -> Constants:
    """The constants of a load run's JSON document."""
    medians = document["medians"]
    sockets = int(document["scale"]["sockets"])

    def redis(metric: str) -> float:
        return _median(medians, "redis", metric)

    def added(metric: str) -> float:
        return max(0.0, redis(metric) - _median(medians, "off", metric))

    per_process, per_socket = _idle_fit(
        redis("idle Redis calls per process per heartbeat (all sockets)"),
        redis("idle Redis calls per process per heartbeat (half the sockets)"),
        sockets,
    )
    # The idle CPU figures are per socket: the fit takes the process's totals, so its own idle loop drops out.
    _, idle_cpu_per_socket = _idle_fit(
        redis("idle server CPU per socket per s (all sockets)") * sockets,
        redis("idle server CPU per socket per s (half the sockets)") * (sockets - sockets // 2),
        sockets,
    )
    return Constants(
        calls_per_message=redis("Redis calls per echo"),
        calls_per_connection=redis("Redis calls per connect") + redis("Redis calls per disconnect"),
        idle_calls_per_process=per_process,
        idle_calls_per_socket=per_socket,
        redis_bytes_per_socket=redis("Redis memory per socket, message bucket included"),
        cpu_us_per_message=redis("server CPU per echo"),
        cpu_us_per_connection=redis("server CPU per connect") + redis("server CPU per disconnect"),
        middleware_us_per_message=added("server CPU per echo"),
        middleware_us_per_connection=added("server CPU per connect") + added("server CPU per disconnect"),
        idle_cpu_us_per_socket_s=idle_cpu_per_socket,
        heartbeat_ms=max(1, int(document["scale"]["lease_ms"]) // 3),
        source=source,
    )


@dataclass(frozen=True, slots=True)
class Deployment:
    sockets: int
    messages_per_socket: float
    """Frames per open socket per second."""
    lease_ms: int
    churn_per_s: float
    """Connections opened (and as many closed) per second."""
    shard_ops: float
    """Redis calls per second one Redis Cluster shard carries."""
    core_share: float = 0.7
    """How busy one app process (one core) may be."""


@dataclass(frozen=True, slots=True)
class Sizing:
    message_calls_per_s: float
    connection_calls_per_s: float
    heartbeat_calls_per_s: float
    redis_calls_per_s: float
    redis_memory_bytes: float
    shards: int
    app_processes: int
    """Processes (one core each, at `core_share`) the whole workload needs, the middleware included."""
    middleware_cores: float
    """The middleware's own CPU, in cores."""
    middleware_processes: float
    """How many of `app_processes` the middleware's own cost accounts for."""


def size(deployment: Deployment, constants: Constants) -> Sizing:
    d, c = deployment, constants
    messages = d.sockets * d.messages_per_socket
    heartbeat_s = max(1, d.lease_ms // 3) / 1000
    idle_cpu = d.sockets * c.idle_cpu_us_per_socket_s * (c.heartbeat_ms / 1000) / heartbeat_s
    app_cores = (messages * c.cpu_us_per_message + d.churn_per_s * c.cpu_us_per_connection + idle_cpu) / 1e6
    processes = max(1, math.ceil(app_cores / d.core_share))
    heartbeats = (processes * c.idle_calls_per_process + d.sockets * c.idle_calls_per_socket) / heartbeat_s
    message_calls = messages * c.calls_per_message
    connection_calls = d.churn_per_s * c.calls_per_connection
    total = message_calls + connection_calls + heartbeats
    middleware_cores = (messages * c.middleware_us_per_message + d.churn_per_s * c.middleware_us_per_connection) / 1e6
    middleware_cores += idle_cpu / 1e6
    return Sizing(
        message_calls_per_s=message_calls,
        connection_calls_per_s=connection_calls,
        heartbeat_calls_per_s=heartbeats,
        redis_calls_per_s=total,
        redis_memory_bytes=d.sockets * c.redis_bytes_per_socket,
        shards=max(1, math.ceil(total / d.shard_ops)),
        app_processes=processes,
        middleware_cores=middleware_cores,
        middleware_processes=middleware_cores / d.core_share,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks sizing", description=__doc__)
    parser.add_argument("--sockets", type=int, default=1_000_000, help="open sockets (default 1,000,000)")
    parser.add_argument("--messages-per-socket", type=float, default=0.5, help="frames per socket per second")
    parser.add_argument("--lease-ms", type=int, default=60_000, help="WS_RATE_LEASE_MS (heartbeat: a third)")
    parser.add_argument("--churn-per-s", type=float, default=1_000, help="connections opened (and closed) per second")
    parser.add_argument("--shard-ops", type=float, default=100_000, help="Redis calls per second one shard carries")
    parser.add_argument("--core-share", type=float, default=0.7, help="how busy one app process (a core) may be")
    parser.add_argument("--from", dest="source", type=Path, help="a load run's JSON (default: the README's run)")
    parser.add_argument("--check", type=Path, help="a load run's JSON to compare the model with, at its own size")
    return parser


def _deployment(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Deployment:
    checks = {
        "--sockets": args.sockets >= 1,
        "--messages-per-socket": args.messages_per_socket >= 0,
        "--lease-ms": args.lease_ms >= 3,
        "--churn-per-s": args.churn_per_s >= 0,
        "--shard-ops": args.shard_ops > 0,
        "--core-share": 0 < args.core_share <= 1,
    }
    for flag, ok in checks.items():
        if not ok:
            value = getattr(args, flag.removeprefix("--").replace("-", "_"))
            parser.error(f"{flag} must be positive (--core-share at most 1, --lease-ms at least 3), got {value}")
    return Deployment(
        args.sockets, args.messages_per_socket, args.lease_ms, args.churn_per_s, args.shard_ops, args.core_share
    )


def _load(path: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    try:
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        parser.error(f"cannot read the load run {path}: {exc}")
    if "medians" not in document or "redis" not in document["medians"]:
        parser.error(f"{path} is not the JSON of a load run (python -m benchmarks load) with a Redis subject")
    return document


def _print_sizing(deployment: Deployment, constants: Constants, sizing: Sizing) -> None:
    print(f"Deployment: {asdict(deployment)}")
    print(f"Constants ({constants.source}):")
    for field in fields(Constants):
        if field.name != "source":
            print(f"  {field.name:<30} {getattr(constants, field.name):>14,.3f}")
    print("Sizing:")
    print(f"  Redis calls/s, messages           {sizing.message_calls_per_s:>14,.0f}")
    print(f"  Redis calls/s, connects at churn  {sizing.connection_calls_per_s:>14,.0f}")
    print(f"  Redis calls/s, heartbeats         {sizing.heartbeat_calls_per_s:>14,.0f}")
    print(f"  Redis calls/s, total              {sizing.redis_calls_per_s:>14,.0f}")
    print(f"  Redis memory                      {sizing.redis_memory_bytes / 2**20:>14,.1f} MiB")
    print(f"  Redis Cluster shards              {sizing.shards:>14,}  (at {deployment.shard_ops:,.0f} calls/s each)")
    print(f"  app processes (1 core each)       {sizing.app_processes:>14,}  (at {deployment.core_share:.0%} busy)")
    print(f"  middleware's own CPU              {sizing.middleware_cores:>14,.2f} cores"
          f" ({sizing.middleware_processes:,.1f} processes' worth)")  # fmt: skip


def _check(path: Path, constants: Constants, parser: argparse.ArgumentParser) -> None:
    """The model at a measured run's size and message rate, next to what that run measured."""
    run = _load(path, parser)
    medians = run["medians"]["redis"]
    sockets = int(run["scale"]["sockets"])
    lease_ms = int(run["scale"]["lease_ms"])
    rate = medians["echo throughput at saturation"]["value"]
    heartbeat_s = max(1, lease_ms // 3) / 1000
    predicted = size(Deployment(sockets, rate / sockets, lease_ms, 0, 1e12, 1.0), constants)
    idle_model = size(Deployment(sockets, 0, lease_ms, 0, 1e12, 1.0), constants)
    rows = (
        (
            "Redis calls/s at saturation",
            predicted.message_calls_per_s,
            rate * medians["Redis calls per echo"]["value"],
        ),
        (
            "idle Redis calls/s, all sockets",
            idle_model.heartbeat_calls_per_s,
            medians["idle Redis calls per process per heartbeat (all sockets)"]["value"] / heartbeat_s,
        ),
        (
            "Redis memory, all sockets (bytes)",
            predicted.redis_memory_bytes,
            sockets * medians["Redis memory per socket, message bucket included"]["value"],
        ),
        (
            "app CPU at saturation (cores)",
            rate * constants.cpu_us_per_message / 1e6,
            rate * medians["server CPU per echo"]["value"] / 1e6,
        ),
    )
    print(f"\nCheck against {path} ({sockets:,} sockets, {rate:,.0f} echoes/s, lease {lease_ms} ms):")
    for name, model, measured in rows:
        ratio = model / measured if measured else float("nan")
        print(f"  {name:<36} model {model:>14,.1f}   measured {measured:>14,.1f}   model/measured {ratio:.2f}")


def sizing_main(argv: Sequence[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    deployment = _deployment(args, parser)
    constants = MEASURED if args.source is None else constants_from(_load(args.source, parser), str(args.source))
    _print_sizing(deployment, constants, size(deployment, constants))
    if args.check is not None:
        _check(args.check, constants, parser)
    return 0
