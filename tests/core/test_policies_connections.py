"""ConnectionPolicy on every backend: identity, IP and room slots as leased set members."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ratelimit_core import Backend, InvalidArgument, ManualClock, SetResult
from ratelimit_core.observe import Decision, DecisionHooks
from ratelimit_core.policies import (
    Admitted,
    ClientIdentity,
    CloseCode,
    ConnectionLimits,
    ConnectionPolicy,
    ErrorCode,
    Occupancy,
    OnError,
)
from support.policy_clients import ALICE, ANON, BOB, admitted, denied

CAROL = ClientIdentity("2.2.2.2", "carol")
LIMITS_3 = ConnectionLimits(per_user=3, per_ip=3, room_max_members=3, retry_after_ms=2_500)


async def test_a_user_gets_per_user_slots_and_the_next_is_refused(backend: Backend) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(per_user=2, retry_after_ms=1234))
    first = admitted(await policy.admit(ALICE))
    admitted(await policy.admit(ALICE))
    denial = denied(await policy.admit(ALICE))
    assert (denial.code, denial.close_code, denial.retry_after_ms) == (
        ErrorCode.CONNECTION_LIMIT_EXCEEDED,
        CloseCode.CONNECTION_REFUSED,
        1234,
    )
    admitted(await policy.admit(BOB))
    await first.leases.release()
    admitted(await policy.admit(ALICE))


async def test_the_ip_limit_counts_every_socket_from_the_ip_signed_in_or_not(backend: Backend) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(per_ip=2))
    admitted(await policy.admit(ALICE))
    admitted(await policy.admit(ANON))
    denial = denied(await policy.admit(BOB))
    assert denial.code == ErrorCode.CONNECTION_LIMIT_EXCEEDED
    assert "IP" in denial.message
    admitted(await policy.admit(CAROL))


async def test_a_refusal_gives_back_the_slots_it_took(backend: Backend) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(per_user=5, per_ip=5, room_max_members=1))
    admitted(await policy.admit(ALICE, "r1"))
    assert denied(await policy.admit(BOB, "r1")).code == ErrorCode.ROOM_FULL
    assert await policy.occupancy(BOB, "r1") == Occupancy(identity=0, ip=1, room=1)


async def test_rooms_are_independent(backend: Backend) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(room_max_members=1))
    held = admitted(await policy.admit(ALICE, "r1"))
    assert denied(await policy.admit(BOB, "r1")).code == ErrorCode.ROOM_FULL
    admitted(await policy.admit(BOB, "r2"))
    await held.leases.release()
    admitted(await policy.admit(BOB, "r1"))


async def test_no_room_means_no_room_check(backend: Backend) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(room_max_members=0))
    admitted(await policy.admit(ALICE, None))
    assert denied(await policy.admit(ALICE, "r")).code == ErrorCode.ROOM_FULL


async def test_unset_limits_take_no_slots(backend: Backend) -> None:
    verdict = admitted(await ConnectionPolicy(backend, ConnectionLimits()).admit(ALICE, "r"))
    assert verdict.leases.slots == ()


async def test_release_happens_exactly_once(backend: Backend) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(per_user=1))
    held = admitted(await policy.admit(ALICE))
    await held.leases.release()
    again = admitted(await policy.admit(ALICE))
    await held.leases.release()  # must not free the slot `again` holds
    assert await policy.occupancy(ALICE) == Occupancy(identity=1, ip=0)
    assert again.leases.slots != held.leases.slots


async def test_a_vanished_holder_frees_its_slot_when_the_lease_ends(backend: Backend, clock: ManualClock) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(per_user=1, per_ip=1, room_max_members=1, lease_ms=60_000))
    admitted(await policy.admit(ALICE, "r"))  # never released: its process died
    clock.advance(59_999)
    denied(await policy.admit(ALICE, "r"))
    clock.advance(1)
    admitted(await policy.admit(ALICE, "r"))


async def test_refresh_keeps_a_live_holder_past_many_lease_periods(backend: Backend, clock: ManualClock) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(per_user=1, room_max_members=1, lease_ms=1_000))
    held = admitted(await policy.admit(ALICE, "r"))
    for _ in range(5):
        clock.advance(900)
        assert await held.leases.refresh()
    denied(await policy.admit(ALICE, "r"))
    await held.leases.release()
    assert not await held.leases.refresh()
    assert await policy.occupancy(ALICE, "r") == Occupancy(identity=0, ip=0, room=0)


async def test_refresh_brings_back_an_expired_slot_of_a_live_connection(backend: Backend, clock: ManualClock) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(per_user=1, lease_ms=1_000))
    held = admitted(await policy.admit(ALICE))
    clock.advance(5_000)  # the event loop stalled past the lease
    assert await held.leases.refresh()
    assert await policy.occupancy(ALICE) == Occupancy(identity=1, ip=0)


async def test_concurrent_attempts_never_admit_more_than_the_limit(backend: Backend) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(per_user=10, per_ip=10))
    verdicts = await asyncio.gather(*(policy.admit(ALICE) for _ in range(100)))
    assert sum(isinstance(v, Admitted) for v in verdicts) == 10
    assert await policy.occupancy(ALICE) == Occupancy(identity=10, ip=10)


async def test_concurrent_attempts_under_several_limits_fill_the_tightest_one_exactly(backend: Backend) -> None:
    # Five users on one IP, 20 attempts each at once: at most 3 per user (15), 10 per IP, 7 in the room.
    # One limit refusing while another admits is asked again in order, so no slot another attempt
    # held for a moment is lost: the room ends exactly full, every limit within its capacity.
    policy = ConnectionPolicy(backend, ConnectionLimits(per_user=3, per_ip=10, room_max_members=7))
    users = [ClientIdentity("2.2.2.2", f"user{n}") for n in range(5)]
    attempts = [policy.admit(user, "arena") for user in users for _ in range(20)]
    verdicts = await asyncio.gather(*attempts)
    admitted = [v for v in verdicts if isinstance(v, Admitted)]
    assert len(admitted) == 7
    for user in users:
        occupancy = await policy.occupancy(user, "arena")
        assert occupancy.identity <= 3
        assert (occupancy.ip, occupancy.room) == (7, 7)
    assert sum([(await policy.occupancy(user)).identity for user in users]) == 7
    for verdict in admitted:
        await verdict.leases.release()
    assert await policy.occupancy(users[0], "arena") == Occupancy(identity=0, ip=0, room=0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("per_user", -1), ("per_ip", 1.5), ("room_max_members", True), ("lease_ms", 0), ("retry_after_ms", -5)],
)
def test_bad_limits_are_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(InvalidArgument, match=field):
        ConnectionLimits(**{field: value})  # type: ignore[arg-type]


class PrimaryDown:
    """Answers `set_add` as a `FallbackBackend` does while its primary is down: a refusal, degraded.

    `unavailable` says whether the refusal is only because the primary is down
    (``on_error="deny"``) or the local share of the limit was reached (``"fallback"``).
    """

    def __init__(self, backend: Backend, *, unavailable: bool) -> None:
        self.backend = backend
        self.unavailable = unavailable

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def set_add(self, key: str, member: str, **kwargs: Any) -> SetResult:
        return SetResult(False, await self.backend.set_size(key), degraded=True, unavailable=self.unavailable)


@pytest.mark.parametrize("on_error", [None, "allow", "fallback", "deny"])
async def test_a_refusal_marked_unavailable_is_backend_unavailable_whatever_the_policy_on_error(
    backend: Backend, on_error: OnError | None
) -> None:
    decisions: list[Decision] = []
    policy = ConnectionPolicy(
        PrimaryDown(backend, unavailable=True), LIMITS_3, on_error=on_error, hooks=DecisionHooks(decisions.append)
    )
    denial = denied(await policy.admit(ALICE, "r"))
    assert (denial.code, denial.close_code, denial.retry_after_ms, denial.degraded) == (
        ErrorCode.BACKEND_UNAVAILABLE,
        CloseCode.TRY_AGAIN_LATER,
        LIMITS_3.retry_after_ms,
        True,
    )
    assert [(d.limit, d.allowed, d.code, d.degraded) for d in decisions] == [
        ("user", False, ErrorCode.BACKEND_UNAVAILABLE, True)
    ]
    assert await policy.occupancy(ALICE, "r") == Occupancy(identity=0, ip=0, room=0)


async def test_a_degraded_refusal_not_marked_unavailable_is_the_limit_reached_even_when_the_policy_denies(
    backend: Backend,
) -> None:
    # The wrapper's local share of the limit is full: the client did reach a limit.
    policy = ConnectionPolicy(PrimaryDown(backend, unavailable=False), LIMITS_3, on_error="deny")
    denial = denied(await policy.admit(ALICE, "r"))
    assert (denial.code, denial.close_code, denial.degraded) == (
        ErrorCode.CONNECTION_LIMIT_EXCEEDED,
        CloseCode.CONNECTION_REFUSED,
        True,
    )
