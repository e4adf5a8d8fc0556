"""An optional Prometheus exporter (``pip install "ratelimit-core[prometheus]"``).

```python
metrics = PrometheusMetrics()            # registers on prometheus_client's default registry
hooks = DecisionHooks(metrics.record)    # give `hooks` to the policies / the Channels middleware
backend = FallbackBackend(primary, on_transition=metrics.backend_transition)
```

Metrics:

- ``ratelimit_decisions_total{limit, outcome, code, degraded, shadow}``: a counter
  of decisions; `outcome` is ``allowed`` or ``denied``, `code` the wire code of a
  denial (empty when allowed), `shadow` ``true`` for a decision made in shadow mode
  (a ``denied`` one was only reported: nothing was refused).
- ``ratelimit_backend_up``: a gauge, 1 while the primary backend answers and 0
  while a `FallbackBackend` answers without it.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from .observe import Decision

__all__ = ["PrometheusMetrics"]


class PrometheusMetrics:
    """Decision counters and a backend health gauge on a Prometheus registry."""

    def __init__(self, registry: CollectorRegistry = REGISTRY, namespace: str = "ratelimit") -> None:
        self.decisions = Counter(
            "decisions",
            "Rate-limit decisions by limit, outcome and wire code.",
            ["limit", "outcome", "code", "degraded", "shadow"],
            namespace=namespace,
            registry=registry,
        )
        self.backend_up = Gauge(
            "backend_up",
            "1 while the primary backend answers, 0 while a fallback answers instead.",
            namespace=namespace,
            registry=registry,
        )
        self.backend_up.set(1)

    def record(self, decision: Decision) -> None:
        """A `DecisionHook`: count one decision."""
        self.decisions.labels(
            limit=decision.limit,
            outcome="allowed" if decision.allowed else "denied",
            code=decision.code or "",
            degraded="true" if decision.degraded else "false",
            shadow="true" if decision.shadow else "false",
        ).inc()

    def backend_transition(self, up: bool) -> None:
        """A `FallbackBackend` ``on_transition`` callback: set the health gauge."""
        self.backend_up.set(1 if up else 0)
