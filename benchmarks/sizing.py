"""``python -m benchmarks sizing``: what N open sockets cost Redis and the app servers, from measured constants.

The constants are those of a load run (``--from benchmarks/results/load.json``)
or, without one, `MEASURED`: the figures of the run documented in the docs. Redis
is sized by its CPU: since the driver bundles the calls of a round trip (up to
256 to one ``EVALSHA``), a command is no longer one script run, and what a shard
carries is the CPU its main thread spends. The model is linear: Redis CPU per
frame, per connection and per open socket per heartbeat, the same for commands
(reported too, as commands), and app CPU per frame, connection and idle socket.
Idle commands are fitted as a part per process and heartbeat plus a part per
socket from the run's two idle windows (all sockets, then half); idle Redis CPU
is the run's per socket per heartbeat (Redis's own timers left in). ``--check RUN.json``
compares the model with a measured run at that run's own size.
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

    redis_cpu_us_per_message: float
    """Redis CPU (main thread where reported) per frame through the middleware, at the offered load."""
    redis_cpu_us_per_connection: float
    """Redis CPU to admit and release one connection."""
    idle_redis_cpu_us_per_socket: float
    """Redis CPU per open socket per heartbeat (its slots refreshed; Redis's own timers left in)."""
    commands_per_message: float
    """Redis commands per frame at the offered load (the checks of concurrent frames share bundles)."""
    commands_per_connection: float
    """Redis commands to admit and release one connection."""
    idle_commands_per_process: float
    """Idle Redis commands per process per heartbeat, whatever its socket count (the fitted intercept)."""
    idle_commands_per_socket: float
    """Idle Redis commands per open socket per heartbeat (the fitted slope)."""
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
    # python -m benchmarks load, 1,000 sockets, 3 rounds, on a shared 2-core VM (docs/production/sizing.md).
    redis_cpu_us_per_message=33.3,
    redis_cpu_us_per_connection=80.0,
    idle_redis_cpu_us_per_socket=42.5,
    commands_per_message=0.274,
    commands_per_connection=0.154,
    idle_commands_per_process=0.0,
    idle_commands_per_socket=0.012,
    redis_bytes_per_socket=395.1,
    cpu_us_per_message=353.3,
    cpu_us_per_connection=1_890.0,
    middleware_us_per_message=45.6,
    middleware_us_per_connection=390.0,
    idle_cpu_us_per_socket_s=153.2,
    heartbeat_ms=2_000,
)


def _median(medians: dict[str, Any], subject: str, metric: str, default: float = 0.0) -> float:
    found = medians.get(subject, {}).get(metric)
    return default if found is None else float(found["value"])


def _idle_fit(full: float, half: float, sockets: int) -> tuple[float, float]:
    """(per process, per socket) of an idle cost measured at `sockets` (`full`) and at half of them (`half`)."""
    per_socket = max(0.0, (full - half) / (sockets - sockets // 2))
    return max(0.0, full - per_socket * sockets), per_socket


def _redis_cpu(medians: dict[str, Any], metric: str) -> float:
    """``Redis main-thread CPU ...`` where the run has it (the thread that runs commands), else ``Redis CPU ...``."""
    main = metric.replace("Redis CPU", "Redis main-thread CPU")
    found = medians.get("redis", {})
    return _median(medians, "redis", main if main in found else metric)


def constants_from(document: dict[str, Any], source: str) -> Constants:
    """The constants of a load run's JSON document."""
    medians = document["medians"]
    sockets = int(document["scale"]["sockets"])

    def redis(metric: str) -> float:
        return _median(medians, "redis", metric)

    def added(metric: str) -> float:
        return max(0.0, redis(metric) - _median(medians, "off", metric))

    per_process, per_socket = _idle_fit(
        redis("idle Redis commands per process per heartbeat (all sockets)"),
        redis("idle Redis commands per process per heartbeat (half the sockets)"),
        sockets,
    )
    # The idle CPU figures are per socket: the fit takes the process's totals, so its own idle loop drops out.
    _, idle_cpu_per_socket = _idle_fit(
        redis("idle server CPU per socket per s (all sockets)") * sockets,
        redis("idle server CPU per socket per s (half the sockets)") * (sockets - sockets // 2),
        sockets,
    )
    return Constants(
        redis_cpu_us_per_message=_redis_cpu(medians, "Redis CPU per echo at the offered load"),
        redis_cpu_us_per_connection=(
            _redis_cpu(medians, "Redis CPU per connect") + _redis_cpu(medians, "Redis CPU per disconnect")
        ),
        idle_redis_cpu_us_per_socket=_redis_cpu(medians, "idle Redis CPU per socket per heartbeat (all sockets)"),
        commands_per_message=redis("Redis commands per echo at the offered load"),
        commands_per_connection=redis("Redis commands per connect") + redis("Redis commands per disconnect"),
        idle_commands_per_process=per_process,
        idle_commands_per_socket=per_socket,
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
    shard_cpu: float = 0.8
    """The share of one core a Redis Cluster shard's main thread may spend on the limits."""
    core_share: float = 0.7
    """How busy one app process (one core) may be."""


@dataclass(frozen=True, slots=True)
class Sizing:
    message_redis_cores: float
    """Redis CPU seconds per second (cores) the frames cost; likewise for connections and heartbeats."""
    connection_redis_cores: float
    heartbeat_redis_cores: float
    redis_cores: float
    message_commands_per_s: float
    connection_commands_per_s: float
    heartbeat_commands_per_s: float
    redis_commands_per_s: float
    redis_memory_bytes: float
    shards: int
    """Redis Cluster shards for `redis_cores` at `Deployment.shard_cpu` each."""
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
    # One heartbeat per interval: the keeper shortens each by up to a tenth, and starts the next after
    # the refresh ends, which a slow refresh (a loaded app) lengthens.
    heartbeats_per_s = 1 / heartbeat_s
    idle_cpu = d.sockets * c.idle_cpu_us_per_socket_s * (c.heartbeat_ms / 1000) / heartbeat_s
    app_cores = (messages * c.cpu_us_per_message + d.churn_per_s * c.cpu_us_per_connection + idle_cpu) / 1e6
    processes = max(1, math.ceil(app_cores / d.core_share))
    message_cores = messages * c.redis_cpu_us_per_message / 1e6
    connection_cores = d.churn_per_s * c.redis_cpu_us_per_connection / 1e6
    heartbeat_cores = d.sockets * c.idle_redis_cpu_us_per_socket * heartbeats_per_s / 1e6
    redis_cores = message_cores + connection_cores + heartbeat_cores
    message_commands = messages * c.commands_per_message
    connection_commands = d.churn_per_s * c.commands_per_connection
    heartbeat_commands = (
        processes * c.idle_commands_per_process + d.sockets * c.idle_commands_per_socket
    ) / heartbeat_s
    middleware_cores = (messages * c.middleware_us_per_message + d.churn_per_s * c.middleware_us_per_connection) / 1e6
    middleware_cores += idle_cpu / 1e6
    return Sizing(
        message_redis_cores=message_cores,
        connection_redis_cores=connection_cores,
        heartbeat_redis_cores=heartbeat_cores,
        redis_cores=redis_cores,
        message_commands_per_s=message_commands,
        connection_commands_per_s=connection_commands,
        heartbeat_commands_per_s=heartbeat_commands,
        redis_commands_per_s=message_commands + connection_commands + heartbeat_commands,
        redis_memory_bytes=d.sockets * c.redis_bytes_per_socket,
        shards=max(1, math.ceil(redis_cores / d.shard_cpu - 1e-9)),
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
    parser.add_argument(
        "--shard-cpu", type=float, default=0.8, help="share of one core a Redis shard may spend (default 0.8)"
    )
    parser.add_argument("--core-share", type=float, default=0.7, help="how busy one app process (a core) may be")
    parser.add_argument("--from", dest="source", type=Path, help="a load run's JSON (default: the documented run)")
    parser.add_argument("--check", type=Path, help="a load run's JSON to compare the model with, at its own size")
    return parser


def _deployment(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Deployment:
    checks = {
        "--sockets": args.sockets >= 1,
        "--messages-per-socket": args.messages_per_socket >= 0,
        "--lease-ms": args.lease_ms >= 3,
        "--churn-per-s": args.churn_per_s >= 0,
        "--shard-cpu": 0 < args.shard_cpu <= 1,
        "--core-share": 0 < args.core_share <= 1,
    }
    for flag, ok in checks.items():
        if not ok:
            value = getattr(args, flag.removeprefix("--").replace("-", "_"))
            parser.error(
                f"{flag} must be positive (--shard-cpu and --core-share at most 1, --lease-ms at least 3), got {value}"
            )
    return Deployment(
        args.sockets, args.messages_per_socket, args.lease_ms, args.churn_per_s, args.shard_cpu, args.core_share
    )


def _load(path: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    try:
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        parser.error(f"cannot read the load run {path}: {exc}")
    if "medians" not in document or "redis" not in document["medians"]:
        parser.error(f"{path} is not the JSON of a load run (python -m benchmarks load) with a Redis subject")
    if "Redis CPU per echo at the offered load" not in document["medians"]["redis"]:
        parser.error(
            f"{path} has no Redis CPU figures: it was written before the load suite measured them;"
            " run python -m benchmarks load again"
        )
    return document


def _print_sizing(deployment: Deployment, constants: Constants, sizing: Sizing) -> None:
    print(f"Deployment: {asdict(deployment)}")
    print(f"Constants ({constants.source}):")
    for field in fields(Constants):
        if field.name != "source":
            print(f"  {field.name:<30} {getattr(constants, field.name):>14,.3f}")
    s = sizing
    print("Sizing:")
    print(f"  Redis CPU, messages               {s.message_redis_cores:>14,.2f} cores")
    print(f"  Redis CPU, connects at churn      {s.connection_redis_cores:>14,.2f} cores")
    print(f"  Redis CPU, heartbeats             {s.heartbeat_redis_cores:>14,.2f} cores")
    print(f"  Redis CPU, total                  {s.redis_cores:>14,.2f} cores")
    print(f"  Redis commands/s, messages        {s.message_commands_per_s:>14,.0f}")
    print(f"  Redis commands/s, connects        {s.connection_commands_per_s:>14,.0f}")
    print(f"  Redis commands/s, heartbeats      {s.heartbeat_commands_per_s:>14,.0f}")
    print(f"  Redis commands/s, total           {s.redis_commands_per_s:>14,.0f}")
    print(f"  Redis memory                      {s.redis_memory_bytes / 2**20:>14,.1f} MiB")
    print(f"  Redis Cluster shards              {s.shards:>14,}  (at {deployment.shard_cpu:.0%} of a core each)")
    print(f"  app processes (1 core each)       {s.app_processes:>14,}  (at {deployment.core_share:.0%} busy)")
    print(f"  middleware's own CPU              {s.middleware_cores:>14,.2f} cores"
          f" ({s.middleware_processes:,.1f} processes' worth)")  # fmt: skip


def _check_rows(run: dict[str, Any], constants: Constants) -> list[tuple[str, float, float]]:
    """(figure, model, measured) at a run's own size and message rates."""
    medians = run["medians"]
    measured = medians["redis"]
    sockets = int(run["scale"]["sockets"])
    heartbeat_s = max(1, int(run["scale"]["lease_ms"]) // 3) / 1000
    # The model at the heartbeats the run's keeper made, so that its per-heartbeat costs are what is compared.
    beats = _median(medians, "redis", "idle heartbeats per interval (all sockets)", 1.0) / heartbeat_s

    def value(metric: str) -> float:
        return float(measured[metric]["value"])

    saturation, offered = value("echo throughput at saturation"), value("offered load")
    idle_commands = (constants.idle_commands_per_process + sockets * constants.idle_commands_per_socket) * beats
    return [
        (
            "Redis CPU at the offered load (cores)",
            offered * constants.redis_cpu_us_per_message / 1e6,
            offered * _redis_cpu(medians, "Redis CPU per echo at the offered load") / 1e6,
        ),
        (
            "Redis CPU at saturation (cores)",
            saturation * constants.redis_cpu_us_per_message / 1e6,
            saturation * _redis_cpu(medians, "Redis CPU per echo") / 1e6,
        ),
        (
            "Redis commands/s at the offered load",
            offered * constants.commands_per_message,
            offered * value("Redis commands per echo at the offered load"),
        ),
        (
            "idle Redis CPU, all sockets (cores)",
            sockets * constants.idle_redis_cpu_us_per_socket * beats / 1e6,
            sockets * _redis_cpu(medians, "idle Redis CPU per socket per heartbeat (all sockets)") * beats / 1e6,
        ),
        (
            "idle Redis commands/s, all sockets",
            idle_commands,
            value("idle Redis commands per process per heartbeat (all sockets)") * beats,
        ),
        (
            "Redis memory, all sockets (bytes)",
            sockets * constants.redis_bytes_per_socket,
            sockets * value("Redis memory per socket, message bucket included"),
        ),
        (
            "app CPU at saturation (cores)",
            saturation * constants.cpu_us_per_message / 1e6,
            saturation * value("server CPU per echo") / 1e6,
        ),
    ]


def _check(path: Path, constants: Constants, parser: argparse.ArgumentParser) -> None:
    """The model at a measured run's size and message rates, next to what that run measured."""
    run = _load(path, parser)
    sockets = int(run["scale"]["sockets"])
    measured = run["medians"]["redis"]
    saturation = measured["echo throughput at saturation"]["value"]
    offered = measured["offered load"]["value"]
    print(
        f"\nCheck against {path} ({sockets:,} sockets, {saturation:,.0f} echoes/s at saturation,"
        f" {offered:,.0f} offered, lease {run['scale']['lease_ms']} ms):"
    )
    for name, model, found in _check_rows(run, constants):
        ratio = model / found if found else float("nan")
        print(f"  {name:<38} model {model:>14,.3f}   measured {found:>14,.3f}   model/measured {ratio:.2f}")


def sizing_main(argv: Sequence[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    deployment = _deployment(args, parser)
    constants = MEASURED if args.source is None else constants_from(_load(args.source, parser), str(args.source))
    _print_sizing(deployment, constants, size(deployment, constants))
    if args.check is not None:
        _check(args.check, constants, parser)
    return 0
