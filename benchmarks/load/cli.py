"""``python -m benchmarks load [--quick] [--sockets N]``: the end-to-end load suite (see `benchmarks.load`)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..server import RedisServer, find_redis_server
from .app_process import ASGI_SERVERS, AppProcess, proc_readable
from .clients import ClientPool
from .plan import IDLE_TIMEOUT_MS, LIMITS, SCALES, SERVER_GC, SERVER_GC_VARIABLE, SUBJECTS, LoadScale
from .report import format_load_table, write_load_chart, write_load_json
from .restarts import crash, graceful_restart
from .rounds import medians, run_rounds
from .verdicts import load_targets, ratios

__all__ = ["load_main"]

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks load", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="50 sockets, one short round (CI smoke test)")
    parser.add_argument("--sockets", type=int, help="open sockets per subject (default 1,000; --quick 50)")
    parser.add_argument("--rounds", type=int, help="rounds of every subject in turn (default 3; --quick 1)")
    parser.add_argument(
        "--restart-servers",
        default=",".join(ASGI_SERVERS),
        help=f"ASGI servers the graceful restart runs on, comma-separated of: {', '.join(ASGI_SERVERS)}",
    )
    parser.add_argument(
        "--idle-timeout-ms",
        type=int,
        default=IDLE_TIMEOUT_MS,
        help=f"WS_RATE_BACKEND_TIMEOUT_MS of the idle windows' server (default {IDLE_TIMEOUT_MS}, the library's)",
    )
    parser.add_argument(
        "--server-gc",
        choices=SERVER_GC,
        default="default",
        help="the app servers' garbage collector: Python's defaults, or 'frozen' (gc.freeze() once the app is"
        " loaded and a first-generation threshold of 50,000 allocations; see docs/performance.md)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON and PNG go (benchmarks/results)")
    parser.add_argument("--redis-server", help="the redis-server binary ($RATELIMIT_REDIS_SERVER, else PATH)")
    return parser


def _scale(args: argparse.Namespace, parser: argparse.ArgumentParser) -> LoadScale:
    scale = SCALES["quick" if args.quick else "full"]
    try:
        if args.sockets is not None:
            scale = scale.with_sockets(args.sockets)
    except ValueError as exc:
        parser.error(str(exc))
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error(f"--rounds must be at least 1, got {args.rounds}")
        scale = LoadScale(**{**_fields(scale), "rounds": args.rounds})
    return scale


def _fields(scale: LoadScale) -> dict[str, Any]:
    return {name: getattr(scale, name) for name in LoadScale.__dataclass_fields__}


def _subject_settings(subject: str, redis_url: str) -> dict[str, object]:
    """The rounds' servers: the default lease, so that no heartbeat falls in a turn."""
    return {**LIMITS, "WS_RATE_BACKEND": redis_url if subject == "redis" else "memory://"}


def _measure(scale: LoadScale, redis_binary: str, restart_servers: list[str], idle_timeout_ms: int) -> dict[str, Any]:
    with RedisServer(redis_binary) as redis_server, ClientPool(scale.clients) as clients:
        with contextlib.ExitStack() as stack:
            apps = {
                subject: stack.enter_context(
                    AppProcess(
                        "uvicorn",
                        middleware=subject != "off",
                        settings=_subject_settings(subject, redis_server.url),
                    )
                )
                for subject in SUBJECTS
            }
            idle_settings = {
                **LIMITS,
                "WS_RATE_BACKEND": redis_server.url,
                "WS_RATE_LEASE_MS": scale.lease_ms,
                "WS_RATE_BACKEND_TIMEOUT_MS": idle_timeout_ms,
            }
            idle = stack.enter_context(AppProcess("uvicorn", middleware=True, settings=idle_settings))
            metrics, notes, commands = run_rounds(apps, idle, clients, redis_server.url, scale)
        restarts = [graceful_restart(server, redis_server.url, clients, scale) for server in restart_servers]
        crashed = crash("uvicorn", redis_server.url, clients, scale)
    found = medians(metrics)
    return {
        "medians": found,
        "ratios": ratios(found),
        "restarts": restarts,
        "crash": crashed,
        "notes": notes,
        "redis commands": commands,
        "idle timeout ms": idle_timeout_ms,
    }


def _print(document: dict[str, Any], scale: LoadScale, goals: Sequence[Any]) -> None:
    print(format_load_table(document["medians"]))
    print()
    for subject, found in document["ratios"].items():
        shown = ", ".join(f"{name} {value:.2f}" for name, value in found.items() if value is not None)
        print(f"{subject} vs off: {shown}")
    for restart in document["restarts"]:
        print(f"graceful restart: {restart}")
    print(f"crash: {document['crash']}")
    for stretch, commands in document["redis commands"].items():
        print(f"Redis commands by name, {stretch} (first round): {commands}")
    print()
    print(f"(the idle windows' server: WS_RATE_BACKEND_TIMEOUT_MS={document['idle timeout ms']};")
    print(f" every app server's garbage collector: {document['server gc']})")
    print(f"Targets of issue 11 ({scale.sockets:,} sockets, medians of {scale.rounds} rounds):")
    for goal in goals:
        print(f"  {goal.line()}")
    for note in document["notes"]:
        print(f"  note: {note}")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def load_main(argv: Sequence[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    scale = _scale(args, parser)
    restart_servers = [name.strip() for name in args.restart_servers.split(",") if name.strip()]
    unknown = sorted(set(restart_servers) - set(ASGI_SERVERS))
    if unknown:
        parser.error(f"--restart-servers names unknown servers {unknown}; valid: {', '.join(ASGI_SERVERS)}")
    redis_binary = args.redis_server or find_redis_server()
    if redis_binary is None:
        parser.error("no redis-server found: pass --redis-server or set $RATELIMIT_REDIS_SERVER")
    if args.idle_timeout_ms < 1:
        parser.error(f"--idle-timeout-ms must be at least 1, got {args.idle_timeout_ms}")
    if not proc_readable():
        parser.error("the load suite reads process CPU and memory from /proc: it runs on Linux only")
    # Stopped by SIGTERM, the run still stops every process it started (the `with` blocks' exits).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started = time.perf_counter()
    os.environ[SERVER_GC_VARIABLE] = args.server_gc  # the app servers inherit it (see echo_app)
    document = _measure(scale, redis_binary, restart_servers, args.idle_timeout_ms)
    document["server gc"] = args.server_gc
    goals = load_targets(document["medians"], document["restarts"], document["crash"])
    _print(document, scale, goals)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "load" if scale.name == "full" else f"load-{scale.name}"
    json_path, chart = args.out / f"{stem}.json", args.out / f"{stem}.png"
    write_load_json(json_path, scale, document, goals)
    written = [json_path, chart] if write_load_chart(chart, document["medians"], goals) else [json_path]
    print(f"\nWrote {', '.join(str(path) for path in written)} in {time.perf_counter() - started:.0f} s.")
    return 0
