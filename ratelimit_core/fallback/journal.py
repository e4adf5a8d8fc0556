"""`Journal`: what this process changed while the primary was down, to write back when it answers.

For each set member touched during the outage, the journal keeps the state the
primary must end in: present with a lease, or absent. An add the primary never
saw, removed again before the outage ended, cancels out and leaves nothing, so the
journal is bounded by the members live or released during the outage, never by
churn. A removal is kept whenever the primary may hold the member: it held it
before the outage, or an add of it was sent there and got no answer (a frozen
server runs such an add when it wakes).

Counters keep one net change per key. A counter increment is not idempotent, so
it is written back at most once: one whose write-back got no answer is not sent
again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from .holdings import Member

__all__ = ["ABSENT", "Absent", "Journal"]


class Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = Absent()
"""The member must not be on the primary."""


@dataclass
class Journal:
    """Changes to write back: members by desired state, counters by net change."""

    members: dict[Member, int | Absent | None] = field(default_factory=dict)
    """(key, member) -> lease_ms of an add (None: permanent), or `ABSENT`."""
    unseen: set[Member] = field(default_factory=set)
    """Members added during the outage that the primary cannot hold: their removal cancels out."""
    counters: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    """key -> (net change, window_ms of the first increment)."""

    def __bool__(self) -> bool:
        return bool(self.members or self.counters)

    def __len__(self) -> int:
        return len(self.members) + len(self.counters)

    def added(self, key: str, member: str, lease_ms: int | None, *, primary_may_hold: bool) -> None:
        """`member` was added locally; `primary_may_hold` unless the primary never saw it."""
        held = (key, member)
        if not primary_may_hold and (held in self.unseen or held not in self.members):
            self.unseen.add(held)
        else:
            self.unseen.discard(held)
        self.members[held] = lease_ms

    def removed(self, key: str, member: str) -> None:
        """`member` was removed locally (or its add got no answer): the primary must not keep it."""
        held = (key, member)
        if held in self.unseen:
            self.unseen.discard(held)
            del self.members[held]
        else:
            self.members[held] = ABSENT

    def counter_change(self, key: str, change: int, window_ms: int | None) -> None:
        net, window = self.counters.get(key, (0, window_ms))
        if net + change:
            self.counters[key] = (net + change, window)
        else:
            self.counters.pop(key, None)

    def take(self) -> Journal:
        """Everything journalled so far, leaving this journal empty for what happens next."""
        taken = Journal(self.members, self.unseen, self.counters)
        self.members, self.unseen, self.counters = {}, set(), {}
        return taken

    def restore(self, older: Journal) -> None:
        """Put back what `older` could not write; what was journalled since wins.

        A member put back is never `unseen` again: its add may have reached the primary.
        """
        for held, state in older.members.items():
            if held not in self.members:
                self.members[held] = state
        for key, (change, window_ms) in older.counters.items():
            self.counter_change(key, change, window_ms)
