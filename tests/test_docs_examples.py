"""The documentation's examples run and print what the pages say they print."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

QUICKSTART = Path(__file__).resolve().parent.parent / "docs" / "examples" / "quickstart.py"


def _run(source: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.splitlines()


def test_quickstart_prints_three_allowed_then_the_wait_for_the_next_token() -> None:
    lines = _run(QUICKSTART.read_text(encoding="utf-8"))
    assert lines[:3] == ["True 2 0", "True 1 0", "True 0 0"]
    allowed, remaining, retry_after_ms = lines[3].split()
    assert (allowed, remaining) == ("False", "0")
    assert 0 < int(retry_after_ms) <= 1000  # 1000 ms less the time the calls took
    assert lines[4:] == ["True 1"]


def test_quickstart_on_a_manual_clock_waits_exactly_one_second() -> None:
    source = QUICKSTART.read_text(encoding="utf-8")
    clock = 'clock=__import__("ratelimit_core").ManualClock()'
    manual = source.replace('backend_from_url("memory://")', f'backend_from_url("memory://", {clock})')
    assert manual != source
    assert _run(manual)[3] == "False 0 1000"


def test_the_policies_example_refuses_a_second_socket_and_closes_on_the_third_strike() -> None:
    lines = _run((QUICKSTART.parent / "policies.py").read_text(encoding="utf-8"))
    assert lines == [
        "connection_limit_exceeded 4008",
        "a delivered",
        "b delivered",
        "c rate_limit_exceeded None",
        "d rate_limit_exceeded None",
        "e rate_limit_exceeded 4010",
        "Occupancy(identity=0, ip=0, room=0)",
    ]


def test_the_readme_shows_the_quickstart_the_docs_run() -> None:
    readme = (QUICKSTART.parents[2] / "README.md").read_text(encoding="utf-8")
    assert QUICKSTART.read_text(encoding="utf-8").strip() in readme
