"""This process's part of a limit while the primary is down (``processes`` shares it)."""

from __future__ import annotations

import math

from ..bucket import bucket_spec
from ..errors import InvalidArgument

__all__ = ["bucket_share", "share"]


def share(limit: int | None, processes: int) -> int | None:
    """`limit` divided among `processes`, rounded up (None stays unlimited)."""
    return None if limit is None else math.ceil(limit / processes)


def bucket_share(rate: float, burst: int, cost: int, processes: int) -> tuple[float, int]:
    """This process's rate and burst (the rate unscaled if the scaled one is not representable)."""
    if processes == 1:
        return rate, burst
    local_rate, local_burst = rate / processes, max(cost, math.ceil(burst / processes))
    try:
        bucket_spec(local_rate, local_burst, cost)
    except InvalidArgument:
        return rate, local_burst
    return local_rate, local_burst
