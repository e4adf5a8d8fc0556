"""``python -m benchmarks [--quick]``: run the suite, print the table, write JSON and a PNG chart.

``python -m benchmarks load [--quick]`` runs the end-to-end load suite instead (`benchmarks.load`), and
``python -m benchmarks sizing ...`` computes a deployment's size from its figures (`benchmarks.sizing`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from .channels_suite import channels_figures
from .footprint import footprint_figures
from .measure import Figure
from .memory_suite import memory_figures
from .recovery_suite import recovery_figures
from .redis_suite import fakeredis_figures, redis_figures
from .report import format_table, targets, write_chart, write_json
from .scales import SCALES, Scale
from .server import RedisServer, find_redis_server

__all__ = ["main"]

SECTIONS = ("memory", "footprint", "channels", "fakeredis", "redis", "recovery")
RESULTS = Path(__file__).resolve().parent / "results"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", const="quick", dest="mode", help="a run under a minute (CI)")
    mode.add_argument(
        "--smoke",
        action="store_const",
        const="smoke",
        dest="mode",
        help="tiny: every code path, no figure worth reading",
    )
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated sections of: {', '.join(SECTIONS)}"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON and PNG go (benchmarks/results)")
    parser.add_argument("--redis-server", help="the redis-server binary ($RATELIMIT_REDIS_SERVER, else PATH)")
    parser.set_defaults(mode="full")
    return parser


OnServer = Callable[[str, Scale, list[str]], Awaitable[list[Figure]]]
"""A section measured against a redis-server at a URL."""


async def _on_redis(
    section: str, figures: OnServer, scale: Scale, redis_binary: str | None, notes: list[str]
) -> list[Figure]:
    """`figures` against a private redis-server of its own."""
    if redis_binary is None:
        notes.append(f"{section}: no redis-server found (set $RATELIMIT_REDIS_SERVER), so it was not measured")
        return []
    with RedisServer(redis_binary) as server:
        return await figures(server.url, scale, notes)


async def _run(scale: Scale, sections: Sequence[str], redis_binary: str | None, notes: list[str]) -> list[Figure]:
    runners: dict[str, Callable[[], Awaitable[list[Figure]]]] = {
        "memory": lambda: memory_figures(scale, notes),
        "footprint": lambda: footprint_figures(scale),
        "channels": lambda: channels_figures(scale, notes),
        "fakeredis": lambda: fakeredis_figures(scale, notes),
        "redis": lambda: _on_redis("redis", redis_figures, scale, redis_binary, notes),
        "recovery": lambda: _on_redis("recovery", recovery_figures, scale, redis_binary, notes),
    }
    figures: list[Figure] = []
    for name in SECTIONS:
        if name in sections:
            started = time.perf_counter()
            figures += await runners[name]()
            notes.append(f"{name} took {time.perf_counter() - started:.1f} s")
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "load":
        from .load.cli import load_main

        return load_main(argv[1:])
    if argv and argv[0] == "sizing":
        from .sizing import sizing_main

        return sizing_main(argv[1:])
    args = _parser().parse_args(argv)
    sections = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        _parser().error(f"--only names unknown sections {sorted(unknown)}; valid: {', '.join(SECTIONS)}")
    scale = SCALES[args.mode]
    notes: list[str] = []
    started = time.perf_counter()
    figures = asyncio.run(_run(scale, sections, args.redis_server or find_redis_server(), notes))
    goals = targets(figures, scale.callers)
    print(format_table(figures))
    print()
    print(f"Targets of issue 5 ({args.mode} run, medians of {scale.runs}):")
    for goal in goals:
        print(f"  {goal.line()}")
    for note in dict.fromkeys(notes):
        print(f"  note: {note}")
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"{args.mode}.json"
    write_json(json_path, args.mode, figures, goals, list(dict.fromkeys(notes)))
    chart = args.out / f"{args.mode}.png"
    written = [json_path, chart] if write_chart(chart, figures, goals) else [json_path]
    if len(written) == 1:
        print("  note: matplotlib is not installed (pip install matplotlib, or the bench extra): no chart")
    print(f"\nWrote {', '.join(str(path) for path in written)} in {time.perf_counter() - started:.0f} s.")
    return 0
