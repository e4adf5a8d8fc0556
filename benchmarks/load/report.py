"""The load suite's table, its JSON document and its chart."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..peers import installed
from ..report import machine
from .plan import LoadScale
from .verdicts import LoadTarget, Medians

__all__ = ["format_load_table", "write_load_chart", "write_load_json"]

_UNITS = (
    ("CPU", "µs"),
    ("time in commands", "µs"),
    ("latency", "ms"),
    ("echoes lost", "echoes"),
    ("memory", "bytes"),
    ("bytes", "bytes"),
    ("Redis", ""),
    ("connect rate", "sockets/s"),
    ("throughput", "echoes/s"),
    ("offered load", "echoes/s"),
)
"""(word in the metric's name, unit), first match wins."""


def unit_of(metric: str) -> str:
    for word, unit in _UNITS:
        if word in metric:
            return unit
    return ""


def format_load_table(medians: Medians) -> str:
    subjects = list(medians)
    metrics = list(dict.fromkeys(name for found in medians.values() for name in found))
    width = max([26, *map(len, metrics)])
    header = f"{'metric (median of rounds)':<{width}} " + " ".join(f"{s:>12}" for s in subjects) + "  unit"
    lines = [header, "-" * len(header)]
    for metric in metrics:
        cells = []
        for subject in subjects:
            found = medians[subject].get(metric)
            cells.append(f"{found['value']:>12,.3f}" if found is not None else f"{'-':>12}")
        lines.append(f"{metric:<{width}} " + " ".join(cells) + f"  {unit_of(metric)}")
    return "\n".join(lines)


def write_load_json(path: Path, scale: LoadScale, document: dict[str, Any], goals: Sequence[LoadTarget]) -> None:
    full = {
        "mode": f"load-{scale.name}",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "scale": asdict(scale),
        **document,
        "targets": [{**asdict(goal), "met": goal.met} for goal in goals],
    }
    path.write_text(json.dumps(full, indent=2, ensure_ascii=False, allow_nan=True) + "\n", encoding="utf-8")


def write_load_chart(path: Path, medians: Medians, goals: Sequence[LoadTarget]) -> bool:
    """Throughput, connect rate and latency per subject, and the targets; False without matplotlib."""
    if not installed("matplotlib"):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("echo throughput at saturation", "echoes/s"),
        ("connect rate", "sockets/s"),
        ("p99 latency at the offered load", "p99 ms at half the off throughput"),
    )
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(20, 5))
    for axis, (metric, title) in zip(axes, panels, strict=False):
        subjects = [s for s in medians if metric in medians[s]]
        axis.bar(subjects, [medians[s][metric]["value"] for s in subjects], color=["tab:gray", "tab:blue", "tab:red"])
        axis.set_title(title, fontsize=10)
    axis = axes[-1]
    shown = [goal for goal in goals if goal.met is not None and goal.measured is not None]
    values = []
    for goal in shown:
        assert goal.measured is not None
        if goal.at_most:
            values.append(
                1.0 if goal.measured <= goal.threshold else goal.threshold / goal.measured if goal.measured else 1.0
            )
        else:
            values.append(goal.measured / goal.threshold)
    axis.barh([goal.name for goal in shown], values, color=["tab:green" if g.met else "tab:red" for g in shown])
    axis.axvline(1.0, color="black", linewidth=1)
    axis.set_title("Targets of issue 11 (>= 1 is met)", fontsize=10)
    axis.invert_yaxis()
    axis.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
