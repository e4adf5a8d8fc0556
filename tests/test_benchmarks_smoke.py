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
import math
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


# The quick load run: real uvicorn and daphne processes, a redis-server, two client processes.
_LOAD_TIMEOUT_S = 400
_LOAD_SUBJECTS = ("off", "memory", "redis")
_EVERY_SUBJECT = (
    "connect rate",
    "echo throughput at saturation",
    "server CPU per echo",
    "p50 latency at the offered load",
    "p99 latency at the offered load",
    "offered load",
)
_ON_REDIS = (
    "Redis script calls per connect",
    "Redis commands per connect",
    "Redis round trips per connect",
    "Redis CPU per connect",
    "Redis commands per disconnect",
    "Redis CPU per disconnect",
    "Redis commands per echo",
    "Redis round trips per echo",
    "Redis socket reads per echo",
    "Redis CPU per echo",
    "Redis CPU per echo at the offered load",
    "Redis commands per echo at the offered load",
    "Redis memory per slot",
    "Redis memory per socket, message bucket included",
    "Redis CPU per s at rest",
    "idle heartbeats per interval (all sockets)",
    "idle Redis script calls per slot per heartbeat (all sockets)",
    "idle Redis commands per socket per s (all sockets)",
    "idle Redis commands per process per heartbeat (all sockets)",
    "idle Redis commands per process per heartbeat (half the sockets)",
    "idle Redis round trips per process per heartbeat (all sockets)",
    "idle Redis socket reads per process per heartbeat (all sockets)",
    "idle Redis bytes in per socket per s (all sockets)",
    "idle Redis CPU per s (all sockets)",
)


def _finite_positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


@pytest.mark.redis
def test_the_quick_load_run_measures_every_figure_and_both_restart_scenarios(tmp_path: Path) -> None:
    if find_server_binary("redis") is None:
        missing_server("no redis-server binary found for the load benchmark")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "load", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=_LOAD_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads((tmp_path / "load-quick.json").read_text(encoding="utf-8"))
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "load-quick.png").stat().st_size > 0
    medians = report["medians"]
    assert set(medians) == set(_LOAD_SUBJECTS)
    for subject in _LOAD_SUBJECTS:
        for metric in _EVERY_SUBJECT:
            assert _finite_positive(medians[subject][metric]["value"]), (subject, metric, medians[subject][metric])
        # Every socket opened was welcomed (the limits are set never to refuse in the rounds).
        assert medians[subject]["echoes lost at the offered load"]["value"] == 0
    for metric in _ON_REDIS:
        assert _finite_positive(medians["redis"][metric]["value"]), (metric, medians["redis"][metric])
    for metric in ("Redis commands per echo", "Redis round trips per echo", "Redis script calls per echo"):
        assert medians["off"][metric]["value"] == 0, f"the middleware-off server never calls Redis ({metric})"
    # One message bucket per frame, counted by the app's own backends: less if the fallback answered, a
    # little more for the NOSCRIPT resend of the bucket script's first use (the app counts it twice).
    assert 0 < medians["redis"]["Redis script calls per echo"]["value"] <= 1.01
    assert medians["redis"]["Redis commands per echo"]["value"] <= 1.0, "a frame is at most one command"
    for subject in ("memory", "redis"):
        assert all(math.isfinite(value) for value in report["ratios"][subject].values())
    assert [restart["server"] for restart in report["restarts"]] == ["uvicorn", "daphne"]
    for restart in report["restarts"]:
        assert restart["sockets"] == restart["reconnected"] > 0, restart
        assert 0 <= restart["refused"] <= restart["sockets"]
    crash = report["crash"]
    assert crash["never admitted"] == 0, crash
    # Locked out at least until the lease of the killed process's slots ran out, and not forever.
    assert 0 < crash["lockout max s"] < 3 * crash["lease_ms"] / 1000, crash
    targets = {target["name"] for target in report["targets"]}
    assert {"Redis echo throughput", "Redis connect rate", "Redis idle cost"} <= targets
    assert "Targets of issue 11" in done.stdout


@pytest.mark.memory
def test_the_sizing_command_sizes_redis_by_cpu_and_reproduces_a_load_run_at_its_own_size(tmp_path: Path) -> None:
    """The model built from a run, applied to that same run's size, gives back what the run measured."""
    redis_figures = {
        "echo throughput at saturation": 3000.0,
        "offered load": 1500.0,
        # The main thread's CPU is what a shard has to spare: the model takes it over the all-threads figure.
        "Redis CPU per echo": 30.0,
        "Redis main-thread CPU per echo": 20.0,
        "Redis CPU per echo at the offered load": 25.0,
        "Redis main-thread CPU per echo at the offered load": 20.0,
        "Redis main-thread CPU per connect": 60.0,
        "Redis main-thread CPU per disconnect": 40.0,
        "idle Redis main-thread CPU per socket per heartbeat (all sockets)": 10.0,
        "Redis commands per echo at the offered load": 0.25,
        "Redis commands per connect": 0.3,
        "Redis commands per disconnect": 0.2,
        "Redis memory per socket, message bucket included": 600.0,
        "server CPU per echo": 200.0,
        "server CPU per connect": 2000.0,
        "idle Redis commands per process per heartbeat (all sockets)": 12.0,
        "idle Redis commands per process per heartbeat (half the sockets)": 6.0,
        "idle server CPU per socket per s (all sockets)": 5.0,
        "idle server CPU per socket per s (half the sockets)": 5.0,
    }
    document = {
        "scale": {"sockets": 1000, "lease_ms": 6000},
        "medians": {
            "off": {"server CPU per echo": {"value": 150.0}, "server CPU per connect": {"value": 1000.0}},
            "redis": {metric: {"value": value} for metric, value in redis_figures.items()},
        },
    }
    run = tmp_path / "run.json"
    run.write_text(json.dumps(document), encoding="utf-8")
    deployment = ["--sockets", "1000000", "--messages-per-socket", "0.5", "--lease-ms", "60000"]
    deployment += ["--churn-per-s", "1000", "--shard-cpu", "0.8"]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "sizing", *deployment, "--from", str(run), "--check", str(run)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # 1M sockets: 500,000 frames/s at 20 µs of Redis CPU each (10 cores), 1,000 connects/s at 100 µs (0.1),
    # heartbeats 10 µs per socket per 20 s (0.5): 10.6 cores, 14 shards at 80% of a core.
    assert "Redis CPU, total                           10.60 cores" in done.stdout, done.stdout
    assert "Redis Cluster shards                          14" in done.stdout
    # Commands: 0.25 per frame, 0.5 per connection, 12 per 1,000 sockets per 6 s heartbeat (fitted per socket).
    assert "Redis commands/s, total                  126,100" in done.stdout
    checks = [line for line in done.stdout.splitlines() if "model/measured" in line]
    assert len(checks) == 7
    assert all(line.endswith("model/measured 1.00") for line in checks), checks


@pytest.mark.memory
def test_the_sizing_command_refuses_a_run_without_redis_cpu_and_a_shard_share_over_one(tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"scale": {"sockets": 10}, "medians": {"redis": {}}}), encoding="utf-8")
    for arguments, says in (
        (["--from", str(old)], "has no Redis CPU figures"),
        (["--shard-cpu", "1.5"], "--shard-cpu must be positive"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks", "sizing", *arguments],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 2, done.stdout + done.stderr
        assert says in done.stderr
