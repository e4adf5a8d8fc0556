"""Hypothesis strategies for the conformance machine's arguments, small ones composed.

Every value drawn here is valid for every backend: bucket plans stay inside the
documented bounds, and a rate with six decimal places comes only with bursts up
to 10**6, where no driver needs more than 2**52 units of precision.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

__all__ = [
    "MAX_CAPACITY",
    "NOTABLE_TEXTS",
    "BucketPlan",
    "KeyPlan",
    "bucket_plans",
    "capacities",
    "clock_rewinds",
    "clock_steps",
    "costs",
    "counter_amounts",
    "durations",
    "key_plans",
    "limits",
    "texts",
]

NOTABLE_TEXTS = (
    "",
    "a",
    "a:b",
    ":",
    "{a}",
    "{",
    "}",
    "a b",
    " ",
    "#",
    "#a",
    "rl:c:a",
    "*?[a]\\",
    "é",
    "ключ",
    "键🔑",
    "\x00",
    "\ud800",  # a lone surrogate: still a str, so still a key
    "k" * 129,
    "é" * 5_000,  # 10 KB of UTF-8
    "k" * 10_240,
)
"""Keys and members that have broken key encodings before: separators, hash tags,
glob characters, non-ASCII, NUL, a lone surrogate and long strings."""

LONG_TEXT_CHARS = 10_240
MAX_CAPACITY = 4


@dataclass(frozen=True, slots=True)
class BucketPlan:
    """The (rate, burst) a bucket key always uses: state is only defined for one spec per key."""

    rate: float
    burst: int


@dataclass(frozen=True, slots=True)
class KeyPlan:
    """A key of one run, with the set capacity and the bucket plan it always uses.

    The same text is used as a counter, a set and a bucket key, so the run also
    proves that the three primitives never share state.
    """

    text: str
    capacity: int | None
    bucket: BucketPlan

    def __repr__(self) -> str:
        text = repr(self.text) if len(self.text) <= 40 else f"{self.text[:12]!r}+...({len(self.text)} chars)"
        return f"KeyPlan(text={text}, capacity={self.capacity!r}, bucket={self.bucket!r})"


def texts() -> st.SearchStrategy[str]:
    """Keys and set members: notable ones, short random ones, separator soup and long repeats."""
    repeated = st.tuples(st.text(min_size=1, max_size=3), st.integers(20, 3_000)).map(lambda p: p[0] * p[1])
    return st.one_of(
        st.sampled_from(NOTABLE_TEXTS),
        st.text(max_size=6),
        st.text(alphabet=":{}# é\x00", max_size=5),
        repeated.map(lambda text: text[:LONG_TEXT_CHARS]),
    )


def bursts(maximum: int) -> st.SearchStrategy[int]:
    edges = [burst for burst in (10, 1_000, 10**6, 10**9) if burst <= maximum]
    return st.one_of(st.integers(1, 5), st.sampled_from(edges), st.integers(1, maximum))


def coarse_rates() -> st.SearchStrategy[float]:
    """Rates with up to three decimal places: any burst up to 10**9 goes with them."""
    return st.one_of(
        st.sampled_from((0.3, 1000, 1, 2.5, 0.001, 7, 10**9)),
        st.integers(1, 10**6).map(lambda thousandths: thousandths / 1000),
        st.integers(1, 10**9),
    )


def fine_rates() -> st.SearchStrategy[float]:
    """Rates with six decimal places, down to the minimum of 0.000001/s."""
    return st.one_of(
        st.sampled_from((0.000001, 0.123457, 0.333333)),
        st.integers(1, 10**6).map(lambda millionths: millionths / 10**6),
    )


def bucket_plans() -> st.SearchStrategy[BucketPlan]:
    return st.one_of(
        st.builds(BucketPlan, rate=coarse_rates(), burst=bursts(10**9)),
        st.builds(BucketPlan, rate=fine_rates(), burst=bursts(10**6)),
    )


def capacities() -> st.SearchStrategy[int | None]:
    return st.one_of(st.none(), st.integers(0, MAX_CAPACITY))


def key_plans() -> st.SearchStrategy[KeyPlan]:
    return st.builds(KeyPlan, text=texts(), capacity=capacities(), bucket=bucket_plans())


def costs(burst: int) -> st.SearchStrategy[int]:
    """Bucket costs for `burst`, leaning on the edges: 1, burst and just below it."""
    return st.one_of(st.just(1), st.just(burst), st.integers(max(1, burst - 2), burst), st.integers(1, burst))


def counter_amounts() -> st.SearchStrategy[int]:
    # 10**15 is large enough that a few increments pass 2**53, where doubles stop being exact.
    return st.one_of(st.integers(1, 3), st.just(10**15))


def limits() -> st.SearchStrategy[int | None]:
    return st.one_of(st.none(), st.integers(0, 6), st.just(10**15))


def durations() -> st.SearchStrategy[int | None]:
    """Windows and leases in ms; None means no window, or a permanent member."""
    return st.one_of(st.none(), st.integers(1, 50), st.sampled_from((1_000, 10**9, 10**15)))


def clock_steps(maximum: int) -> st.SearchStrategy[int]:
    """How far the clock moves in one step: often not at all, sometimes very far."""
    far = [step for step in (10**6, 10**9, 10**12) if step <= maximum]
    return st.one_of(st.just(0), st.integers(1, 50), st.integers(51, 100_000), st.sampled_from(far))


def clock_rewinds() -> st.SearchStrategy[int]:
    """How far the clock steps back in one go: a few ms (behind a bucket's last update),
    a leap second, ten minutes (an NTP step, a failover to a server behind), or far."""
    return st.one_of(st.integers(1, 50), st.integers(51, 100_000), st.sampled_from((1_000, 600_000, 10**9)))
