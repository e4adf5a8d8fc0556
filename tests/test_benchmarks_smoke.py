"""The benchmark suite still runs: ``python -m benchmarks --smoke``, every code path on a tiny scale.

No speed is checked (it means nothing at this scale): only that each section
runs, reports its rows and the targets, and writes its files, and the figures
that are right or wrong at any scale (expired keys reclaimed, Redis holding
exactly the held slots after a recovery). The in-process
sections run with the memory backend selected, the Redis ones (which start their
own redis-server) with redis selected.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.backends import missing_server
from support.servers import find_server_binary

ROOT = Path(__file__).resolve().parent.parent

# Bounds a hang; the smoke run itself takes a few seconds.
_TIMEOUT_S = 120


def _smoke(out: Path, *sections: str) -> tuple[dict[str, Any], str]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--only", ",".join(sections), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads((out / "smoke.json").read_text(encoding="utf-8"))
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "smoke.png").stat().st_size > 0
    return report, done.stdout


def _rows(report: dict[str, Any]) -> set[tuple[str, str, int]]:
    return {(row["section"], row["subject"], row["callers"]) for row in report["figures"]}


@pytest.mark.memory
def test_the_in_process_benchmarks_run_and_report_every_row(tmp_path: Path) -> None:
    report, printed = _smoke(tmp_path, "memory", "footprint", "channels")
    rows = _rows(report)
    for primitive in ("bucket_consume", "counter_incr", "set_add"):
        assert ("memory", f"ours {primitive}", 1) in rows
    assert ("channels", "middleware added per frame", 1) in rows
    assert ("channels", "middleware added per connect", 1) in rows
    footprint = {row["subject"]: row["value"] for row in report["figures"] if row["section"] == "footprint"}
    assert footprint["bucket: bytes per idle key"] > 0
    assert footprint["expired keys left after sweep()"] == 0
    targets = {target["name"] for target in report["targets"]}
    assert {"memory bucket_consume", "Channels middleware per frame"} <= targets
    assert "Targets of issue 5" in printed


@pytest.mark.redis
def test_the_redis_benchmarks_start_their_own_server_and_report_every_row(tmp_path: Path) -> None:
    if find_server_binary("redis") is None:
        missing_server("no redis-server binary found for the benchmark")
    report, printed = _smoke(tmp_path, "fakeredis", "redis")
    rows = _rows(report)
    callers = max(row["callers"] for row in report["figures"])
    for section in ("redis", "fakeredis"):
        for subject in ("ours bucket_consume", "raw EVALSHA floor"):
            assert (section, subject, 1) in rows
            assert (section, subject, callers) in rows
        assert (section, "ours batch of 50", 1) in rows
    assert ("redis", "ours counter_incr", 1) in rows
    assert ("redis", "ours set_add", 1) in rows
    assert "no redis-server found" not in printed
    assert any(target["cases"] for target in report["targets"] if target["name"] == "Redis, one caller")


@pytest.mark.redis
def test_the_recovery_benchmark_replays_onto_its_own_server_and_leaves_redis_right(tmp_path: Path) -> None:
    if find_server_binary("redis") is None:
        missing_server("no redis-server binary found for the benchmark")
    report, printed = _smoke(tmp_path, "recovery")
    figures = {row["subject"]: row for row in report["figures"] if row["section"] == "recovery"}
    assert figures["FallbackBackend recovery, CPU"]["value"] > 0
    assert figures["FallbackBackend recovery, wall"]["value"] > 0
    assert figures["FallbackBackend recovery, round trips"]["value"] >= 1
    assert figures["slots wrong in Redis after recovery"]["value"] == 0
    targets = {target["name"]: target for target in report["targets"]}
    assert targets["FallbackBackend recovery leaves Redis right"]["met"] is True
    assert {"FallbackBackend recovery CPU", "FallbackBackend recovery round trips"} <= set(targets)
    assert "no redis-server found" not in printed
