"""Busy cores for a test: plain CPU loops in separate processes, as on a loaded CI machine or a crowded host.

Like ``/work/shared/tools/with-busy-cores``, but inside the test (CI does not
guarantee that script's path): one process per core at normal priority, each of
which also ends by itself after `bound_s`, so a test runner that is itself killed
cannot leave them spinning.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Final

__all__ = ["busy_cores"]

_BURN: Final = "import time\nend = time.monotonic() + {bound_s}\nwhile time.monotonic() < end:\n    pass\n"
_REAP_TIMEOUT_S: Final = 10


@contextlib.contextmanager
def busy_cores(count: int | None = None, *, bound_s: float = 180) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Keep `count` cores (default: every core, `os.cpu_count()`) busy inside the block; kill the loops at exit."""
    burners: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count or os.cpu_count() or 1):
            burners.append(
                subprocess.Popen(
                    [sys.executable, "-c", _BURN.format(bound_s=bound_s)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        yield burners
    finally:
        for burner in burners:
            burner.kill()
        for burner in burners:
            burner.wait(timeout=_REAP_TIMEOUT_S)
