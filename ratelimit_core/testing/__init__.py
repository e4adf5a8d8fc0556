"""The conformance kit: run the engine's state machine against any Backend.

A Hypothesis state machine sends one random sequence of counter, set and bucket
calls and clock moves to every backend you give it, on one shared `RewindableClock`,
and asserts that all of them answer exactly like an independent reference model.
Each backend factory takes the clock and returns a backend (or an awaitable of
one). Needs ``hypothesis`` (the ``testing`` extra). Call `run_conformance` from a
synchronous test: the machine owns its event loop. The documentation's guide
"Writing and testing a backend" (docs/guides/custom-backend.md) shows a whole test.
"""

from __future__ import annotations

import unittest

from hypothesis import settings as Settings
from hypothesis.stateful import run_state_machine_as_test

from .clock import RewindableClock
from .machine import HORIZON_MS, BackendFactory, ConformanceMachine
from .model import ReferenceModel

__all__ = [
    "HORIZON_MS",
    "BackendFactory",
    "ConformanceMachine",
    "ReferenceModel",
    "RewindableClock",
    "conformance_machine",
    "conformance_test_case",
    "run_conformance",
]


def conformance_machine(*factories: BackendFactory) -> type[ConformanceMachine]:
    """A `ConformanceMachine` subclass that drives the backends `factories` make."""
    if not factories:
        raise ValueError("factories: give at least one backend factory (a callable taking the clock)")
    for factory in factories:
        if not callable(factory):
            raise TypeError(f"factories: a backend factory must be callable, got {factory!r:.80}")
    made = tuple(factories)

    class BackendConformance(ConformanceMachine):
        backend_factories = made

    return BackendConformance


def run_conformance(*factories: BackendFactory, settings: Settings | None = None) -> None:
    """Run the state machine over backends from `factories`; raise on the first disagreement.

    Hypothesis then prints the shortest sequence of calls it found that fails.
    `settings` defaults to the active Hypothesis profile, without a deadline.
    """
    machine = conformance_machine(*factories)
    run_state_machine_as_test(machine, settings=settings if settings is not None else machine.TestCase.settings)


def conformance_test_case(*factories: BackendFactory, settings: Settings | None = None) -> type[unittest.TestCase]:
    """A `unittest.TestCase` class that runs the state machine (collected by pytest and unittest)."""
    case = conformance_machine(*factories).TestCase
    if settings is not None:
        case.settings = settings
    return case
