"""`FallbackBackend` and its parts: the breaker, the watchdog, the holdings, the journal, the write-back.

Each part is a module of its own; what they do together is the documentation's
"Outages and recovery" page (docs/concepts/outages.md).
"""

from .backend import (
    DEFAULT_COOLDOWN_MS,
    DEFAULT_MAX_COOLDOWN_MS,
    DEFAULT_TIMEOUT_MS,
    DEFAULT_WARMUP_MS,
    FallbackBackend,
)

__all__ = [
    "DEFAULT_COOLDOWN_MS",
    "DEFAULT_MAX_COOLDOWN_MS",
    "DEFAULT_TIMEOUT_MS",
    "DEFAULT_WARMUP_MS",
    "FallbackBackend",
]
