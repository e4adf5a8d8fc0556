"""Decision hooks and the Prometheus exporter."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from ratelimit_core import FallbackBackend, RedisBackend
from ratelimit_core.observe import Decision, DecisionHooks
from ratelimit_core.policies import ErrorCode
from ratelimit_core.prometheus import PrometheusMetrics

DENIED = Decision("room", False, ErrorCode.ROOM_FULL, "user:7")
ALLOWED = Decision("rate", True, None, "ip:10.0.0.1", degraded=True)


def test_empty_hooks_are_false_so_callers_can_skip_building_decisions() -> None:
    hooks = DecisionHooks()
    assert not hooks
    seen: list[Decision] = []
    hooks.add(seen.append)
    assert hooks
    hooks.emit(DENIED)
    hooks.remove(seen.append)
    hooks.remove(seen.append)  # removing twice is a no-op
    hooks.emit(ALLOWED)
    assert seen == [DENIED]
    assert not hooks


def test_a_failing_hook_is_logged_and_never_stops_the_others(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Decision] = []

    def broken(decision: Decision) -> None:
        raise RuntimeError("metrics down")

    hooks = DecisionHooks(broken, seen.append)
    with caplog.at_level(logging.ERROR, logger="ratelimit_core.observe"):
        hooks.emit(DENIED)
    assert seen == [DENIED]
    assert "decision hook" in caplog.text


def test_prometheus_counts_decisions_by_limit_outcome_code_and_shadow() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    hooks = DecisionHooks(metrics.record)
    hooks.emit(DENIED)
    hooks.emit(DENIED)
    hooks.emit(ALLOWED)
    hooks.emit(Decision("room", False, ErrorCode.ROOM_FULL, "user:7", shadow=True))

    def value(**labels: str) -> float | None:
        return registry.get_sample_value("ratelimit_decisions_total", labels)

    assert value(limit="room", outcome="denied", code="room_full", degraded="false", shadow="false") == 2
    assert value(limit="rate", outcome="allowed", code="", degraded="true", shadow="false") == 1
    assert value(limit="room", outcome="denied", code="room_full", degraded="false", shadow="true") == 1


async def test_prometheus_gauge_follows_the_fallback_breaker() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    assert registry.get_sample_value("ratelimit_backend_up") == 1
    dead = RedisBackend.from_url("redis://127.0.0.1:1/0")  # port 1: connection refused at once
    async with FallbackBackend(dead, on_transition=metrics.backend_transition) as backend:
        result = await backend.set_add("room", "m")
    assert result.degraded
    assert registry.get_sample_value("ratelimit_backend_up") == 0
