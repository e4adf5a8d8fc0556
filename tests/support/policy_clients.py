"""The clients the policy tests admit, and the checks that a verdict is of the kind a test expects.

ALICE and BOB are two users behind one IP; ANON is an anonymous client of that IP.
`admitted`, `denied` and `allowed` return the verdict narrowed to its kind, or fail
the test showing the verdict that came instead.
"""

from __future__ import annotations

from typing import Final

from ratelimit_core.policies import Admitted, Allowed, ClientIdentity, Denial

__all__ = ["ALICE", "ANON", "BOB", "admitted", "allowed", "denied"]

ALICE: Final = ClientIdentity("1.1.1.1", "alice")
BOB: Final = ClientIdentity("1.1.1.1", "bob")
ANON: Final = ClientIdentity("1.1.1.1")


def admitted(verdict: Admitted | Denial) -> Admitted:
    assert isinstance(verdict, Admitted), verdict
    return verdict


def allowed(verdict: Allowed | Denial) -> Allowed:
    assert isinstance(verdict, Allowed), verdict
    return verdict


def denied(verdict: Admitted | Allowed | Denial) -> Denial:
    assert isinstance(verdict, Denial), verdict
    return verdict
