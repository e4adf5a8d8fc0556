"""The table, the verdict on each target of issue 5, and the JSON and PNG files."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from .measure import Figure
from .peers import installed, peer_versions
from .recovery_suite import CPU, ROUND_TRIPS, WRONG, slots_of

__all__ = ["Target", "format_table", "targets", "write_chart", "write_json"]

_REFERENCE = {
    "memory": "limits fixed window",
    "redis": "raw EVALSHA floor",
    "fakeredis": "raw EVALSHA floor",
}
"""Each row's ratio is against this subject's row with the same keys, path and callers."""


def _find(figures: Iterable[Figure], section: str, subject: str, case: tuple[str, str, int]) -> Figure | None:
    """The figure of `subject` in `section` for `case` = (keys, path, callers)."""
    for figure in figures:
        if (figure.section, figure.subject) == (section, subject) and (
            figure.keys,
            figure.path,
            figure.callers,
        ) == case:
            return figure
    return None


def ratio(figures: Sequence[Figure], figure: Figure) -> float | None:
    """`figure` over its section's reference figure of the same case, or None."""
    reference = _REFERENCE.get(figure.section)
    if reference is None:
        return None
    base = _find(figures, figure.section, reference, (figure.keys, figure.path, figure.callers))
    if base is None or base.value <= 0:
        return None
    return figure.value / base.value


def _value(figure: Figure) -> str:
    if figure.unit == "ops/s":
        return f"{figure.value:>12,.0f} ops/s"
    if figure.unit in ("µs", "writes"):
        return f"{figure.value:>12,.2f} {figure.unit}"
    return f"{figure.value:>12,.0f} {figure.unit}"


def format_table(figures: Sequence[Figure]) -> str:
    header = f"{'section':<10} {'subject':<42} {'keys':>4} {'path':<8} {'callers':>7} {'median':>20} {'ratio':>16}"
    lines = [header, "-" * len(header)]
    section = None
    for figure in figures:
        if section is not None and figure.section != section:
            lines.append("")
        section = figure.section
        r = ratio(figures, figure)
        reference = _REFERENCE.get(figure.section, "")
        shown = f"{r:.2f}x" if r is not None else ""
        if r is not None and figure.subject != reference:
            shown += " vs " + ("floor" if "floor" in reference else "limits FW")
        lines.append(
            f"{figure.section:<10} {figure.subject:<42} {figure.keys:>4} {figure.path:<8} {figure.callers:>7}"
            f" {_value(figure):>20} {shown:>16}"
        )
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Target:
    """One target of issue 5, with what this run measured."""

    name: str
    goal: str
    cases: tuple[tuple[str, float], ...]
    """(case, measured value) for each case the target covers."""
    threshold: float
    at_most: bool = False
    unit: str | None = None
    """Shown after each value; by default " µs" for an at-most target, "x" (a ratio) otherwise."""

    @property
    def met(self) -> bool | None:
        if not self.cases:
            return None
        if self.at_most:
            return all(value <= self.threshold for _, value in self.cases)
        return all(value >= self.threshold for _, value in self.cases)

    def line(self) -> str:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[self.met]
        unit = self.unit if self.unit is not None else " µs" if self.at_most else "x"
        cases = ", ".join(f"{case} {value:.2f}{unit}" for case, value in self.cases)
        return f"{self.name} ({self.goal}): {verdict}" + (f" [{cases}]" if cases else "")


def _ratios(
    figures: Sequence[Figure], section: str, subject: str, cases: Iterable[tuple[str, str, int]]
) -> tuple[tuple[str, float], ...]:
    found = []
    for keys, path, callers in cases:
        figure = _find(figures, section, subject, (keys, path, callers))
        r = None if figure is None else ratio(figures, figure)
        if r is not None:
            found.append((f"{keys} key{'s' if keys != '1' else ''} {path}", r))
    return tuple(found)


def _recovery(figures: Sequence[Figure], subject: str, *, least_slots: int = 0) -> list[tuple[int, float]]:
    """(held slots, value) of each recovery case of `subject` holding at least `least_slots`."""
    found = [(slots_of(f.keys), f.value) for f in figures if (f.section, f.subject) == ("recovery", subject)]
    return [(slots, value) for slots, value in found if slots >= least_slots]


def _recovery_targets(figures: Sequence[Figure]) -> list[Target]:
    """The FallbackBackend recovery targets: the issue states them for 10,000 held slots."""
    cpu = [(f"{slots:,} slots", ms / 1_000) for slots, ms in _recovery(figures, CPU) if slots == 10_000]
    trips = [(f"{n:,} slots", 100 * t / n) for n, t in _recovery(figures, ROUND_TRIPS, least_slots=1_000)]
    wrong = [(f"{slots:,} slots", value) for slots, value in _recovery(figures, WRONG)]
    return [
        Target("FallbackBackend recovery CPU", "< 1 s for 10,000 held slots", tuple(cpu), 1.0, at_most=True, unit=" s"),
        Target(
            "FallbackBackend recovery round trips",
            "< 1 per 100 held slots, from 1,000 slots up",
            tuple(trips),
            1.0,
            at_most=True,
            unit=" per 100 slots",
        ),
        Target(
            "FallbackBackend recovery leaves Redis right",
            "Redis holds exactly the slots still held",
            tuple(wrong),
            0.0,
            at_most=True,
            unit=" slots wrong",
        ),
    ]


def targets(figures: Sequence[Figure], callers: int) -> list[Target]:
    both = [(keys, path, 1) for keys in ("1", "10k") for path in ("allowed", "denied")]
    crowd = [(keys, path, callers) for keys in ("1", "10k") for path in ("allowed", "denied")]
    frame = _find(figures, "channels", "middleware added per frame", ("-", "-", 1))
    ours = "ours bucket_consume"
    return [
        Target("memory bucket_consume", ">= 2x limits' fixed window", _ratios(figures, "memory", ours, both), 2.0),
        Target("Redis, one caller", ">= 0.9x the raw EVALSHA floor", _ratios(figures, "redis", ours, both), 0.9),
        Target(
            f"Redis, {callers} concurrent callers",
            ">= 3x the raw one-call-per-check floor with a pool",
            _ratios(figures, "redis", ours, crowd),
            3.0,
        ),
        Target(
            "Channels middleware per frame",
            "<= 15 µs on the memory backend",
            () if frame is None else (("memory backend", frame.value),),
            15.0,
            at_most=True,
        ),
        *_recovery_targets(figures),
    ]  # fmt: skip


def machine() -> dict[str, object]:
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "versions": peer_versions(),
    }


def write_json(path: Path, mode: str, figures: Sequence[Figure], goals: Sequence[Target], notes: Sequence[str]) -> None:
    document = {
        "mode": mode,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "figures": [{**asdict(figure), "ratio": ratio(figures, figure)} for figure in figures],
        "targets": [{**asdict(goal), "met": goal.met} for goal in goals],
        "notes": list(notes),
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_chart(path: Path, figures: Sequence[Figure], goals: Sequence[Target]) -> bool:
    """A PNG of the headline comparisons and the targets; False when matplotlib is not installed."""
    if not installed("matplotlib"):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def headline(section: str) -> list[Figure]:
        case = (section, "10k", "allowed")
        others = ("ours counter_incr", "ours set_add")
        return [f for f in figures if (f.section, f.keys, f.path) == case and f.subject not in others]

    panels = [
        ("In memory, one caller, 10k keys, allowed (checks/s)", headline("memory")),
        ("Redis, 10k keys, allowed (checks/s)", headline("redis")),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(18, 6))
    for axis, (title, rows) in zip(axes, panels, strict=False):
        labels = [f"{f.subject} ({f.callers} caller{'s' if f.callers > 1 else ''})" for f in rows]
        colours = ["tab:blue" if f.subject.startswith("ours") else "tab:gray" for f in rows]
        axis.barh(labels, [f.value for f in rows], color=colours)
        axis.set_title(title, fontsize=10)
        axis.invert_yaxis()
        axis.tick_params(axis="y", labelsize=8)
    axis = axes[2]
    labels, values = [], []
    for goal in goals:
        for case, value in goal.cases:
            labels.append(f"{goal.name}: {case}")
            if goal.at_most:
                values.append(goal.threshold / value if value > 0 else 1.0)
            else:
                values.append(value / goal.threshold)
    axis.barh(labels, values, color=["tab:green" if v >= 1 else "tab:red" for v in values])
    axis.axvline(1.0, color="black", linewidth=1)
    axis.set_title("Targets of issue 5 (measured / target; >= 1 is met)", fontsize=10)
    axis.invert_yaxis()
    axis.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
