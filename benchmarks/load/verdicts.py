"""The load suite's targets (issue 11), as ratios to the middleware-off server of the same rounds."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["LoadTarget", "load_targets", "ratios"]

Medians = dict[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class LoadTarget:
    name: str
    goal: str
    measured: float | None
    threshold: float
    at_most: bool = False
    unit: str = "x"

    @property
    def met(self) -> bool | None:
        if self.measured is None or math.isnan(self.measured):
            return None
        return self.measured <= self.threshold if self.at_most else self.measured >= self.threshold

    def line(self) -> str:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[self.met]
        shown = "" if self.measured is None else f" [{self.measured:.2f}{self.unit}]"
        return f"{self.name} ({self.goal}): {verdict}{shown}"


def _value(medians: Medians, subject: str, metric: str) -> float | None:
    found = medians.get(subject, {}).get(metric)
    return None if found is None else float(found["value"])


def _ratio(medians: Medians, subject: str, metric: str) -> float | None:
    ours, off = _value(medians, subject, metric), _value(medians, "off", metric)
    return None if ours is None or not off else ours / off


def _added(medians: Medians, subject: str, metric: str) -> float | None:
    ours, off = _value(medians, subject, metric), _value(medians, "off", metric)
    return None if ours is None or off is None else ours - off


def ratios(medians: Medians) -> dict[str, dict[str, float | None]]:
    """For memory and Redis: throughput and connect-rate ratios to off, added p50/p99 (ms), added CPU (µs)."""
    return {
        subject: {
            "throughput ratio": _ratio(medians, subject, "echo throughput at saturation"),
            "connect rate ratio": _ratio(medians, subject, "connect rate"),
            "added p50 ms": _added(medians, subject, "p50 latency at the offered load"),
            "added p99 ms": _added(medians, subject, "p99 latency at the offered load"),
            "added CPU per echo µs": _added(medians, subject, "server CPU per echo"),
            "added CPU per connect µs": _added(medians, subject, "server CPU per connect"),
        }
        for subject in ("memory", "redis")
        if subject in medians
    }


def load_targets(medians: Medians, restarts: list[dict[str, Any]], crash: dict[str, Any] | None) -> list[LoadTarget]:
    on_redis = ratios(medians).get("redis", {})
    # The app's own count: Redis reads a heartbeat of thousands of slots 16 KB at a time, several reads a trip.
    idle = _value(medians, "redis", "idle Redis round trips per process per heartbeat (all sockets)")
    found = [
        LoadTarget("Redis echo throughput", ">= 0.9x off", on_redis.get("throughput ratio"), 0.9),
        LoadTarget("Redis connect rate", ">= 0.7x off", on_redis.get("connect rate ratio"), 0.7),
        LoadTarget("Redis added p50 at half load", "<= 0.5 ms", on_redis.get("added p50 ms"), 0.5, True, " ms"),
        LoadTarget("Redis added p99 at half load", "<= 2 ms", on_redis.get("added p99 ms"), 2.0, True, " ms"),
        LoadTarget("Redis idle cost", "<= 1 round trip per process per heartbeat", idle, 1.0, True, " round trips"),
    ]
    for restart in restarts:
        found.append(
            LoadTarget(
                f"graceful restart on {restart['server']}",
                "0 reconnects refused",
                float(restart["refused"]),
                0.0,
                True,
                " refused",
            )
        )
    if crash is not None:
        # A client learns it is admitted at its next retry: the measure is late by up to 1.5 retry intervals.
        lease_s, late_s = crash["lease_ms"] / 1000, 1.5 * crash["retry_s"]
        found.append(
            LoadTarget(
                f"crash on {crash['server']}: longest lockout",
                f"<= one lease ({lease_s:g} s) + the clients' retry resolution ({late_s:g} s)",
                crash["lockout max s"],
                lease_s + late_s,
                True,
                " s",
            )
        )
    return found
