"""Every slot an attempt or a connection takes is released exactly once, however it ends, on every backend.

Storage here is `HeldCalls`: a call held at a gate still reaches the backend after
its caller was cancelled or timed out, as Redis runs a command already sent. Each
test cancels at one exact await, lets storage run everything, and then checks what
is held: nothing, with each removal made once.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Coroutine
from typing import Any

import pytest

from ratelimit_core import Backend, BackendUnavailable
from ratelimit_core.policies import (
    Admitted,
    ConnectionLimits,
    ConnectionPolicy,
    Denial,
    ErrorCode,
    Leases,
    Occupancy,
    OnError,
)
from ratelimit_core.policies.connections import identity_slots_key, ip_slots_key, room_members_key
from ratelimit_core.policies.leases import Slot
from support.failing_storage import LostReply
from support.held_calls import Gate, HeldCalls, Match, calls_to, nth_call
from support.policy_clients import ALICE, BOB

LIMITS = ConnectionLimits(per_user=1, per_ip=1, room_max_members=1)
ALICE_KEYS = (identity_slots_key(ALICE), ip_slots_key(ALICE.ip), room_members_key("r"))
NOTHING_HELD = Occupancy(identity=0, ip=0, room=0)


async def reconnects(backend: Backend) -> None:
    """A new attempt is admitted at once (nothing phantom holds the limit of 1) and gives its slots back."""
    verdict = await ConnectionPolicy(backend, LIMITS).admit(ALICE, "r")
    assert isinstance(verdict, Admitted), verdict
    await verdict.leases.release()


async def attempt(policy: ConnectionPolicy, caught: list[BaseException]) -> Admitted | Denial:
    """`admit(ALICE, "r")` as connection "c1", recording the exception it ends with."""
    try:
        return await policy.admit(ALICE, "r", connection_id="c1")
    except BaseException as exc:
        caught.append(exc)
        raise


async def cancelled_at(gate: Gate, storage: HeldCalls, admission: Coroutine[Any, Any, object]) -> None:
    """Run `admission`, cancel it once a call reaches `gate`, let storage run that call, and wait for the clean-up."""
    task = asyncio.create_task(admission)
    await asyncio.wait_for(gate.started.wait(), timeout=10)
    task.cancel()
    gate.go.set()  # storage runs the call the attempt gave up on
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=10)
    await storage.settle()


# -- admission ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("in_flight", [0, 1, 2], ids=["identity", "ip", "room"])
async def test_an_attempt_cancelled_while_a_set_add_is_in_flight_holds_nothing_once_storage_ran_it(
    backend: Backend, in_flight: int
) -> None:
    storage = HeldCalls(backend)
    gate = storage.hold(calls_to("set_add", ALICE_KEYS[in_flight]))
    policy = ConnectionPolicy(storage, LIMITS)
    await cancelled_at(gate, storage, policy.admit(ALICE, "r", connection_id="c1"))
    assert await policy.occupancy(ALICE, "r") == NOTHING_HELD
    # Every slot was asked for at once, so each counts as taken (the held one too): each removed exactly once.
    assert storage.removals == {(key, "c1"): 1 for key in ALICE_KEYS}
    await reconnects(backend)


async def test_an_attempt_that_times_out_while_a_set_add_is_in_flight_holds_nothing(backend: Backend) -> None:
    storage = HeldCalls(backend)
    gate = storage.hold(calls_to("set_add", "room:"))
    policy = ConnectionPolicy(storage, LIMITS)
    deadlines: list[asyncio.Timeout] = []

    async def within_deadline() -> Admitted | Denial:
        async with asyncio.timeout(None) as deadline:
            deadlines.append(deadline)
            return await policy.admit(ALICE, "r")

    task = asyncio.create_task(within_deadline())
    await asyncio.wait_for(gate.started.wait(), timeout=10)
    (deadline,) = deadlines
    deadline.reschedule(asyncio.get_running_loop().time())  # the deadline passes while the room add is in flight
    for _ in range(1_000):
        if deadline.expired():
            break
        await asyncio.sleep(0)
    assert deadline.expired()
    gate.go.set()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(task, timeout=10)
    await storage.settle()
    assert await policy.occupancy(ALICE, "r") == NOTHING_HELD
    await reconnects(backend)


@pytest.mark.parametrize("on_error", [None, "allow", "fallback", "deny"])
async def test_a_call_whose_reply_is_lost_leaves_no_phantom_slot_whatever_on_error_decides(
    backend: Backend, on_error: OnError | None
) -> None:
    policy = ConnectionPolicy(LostReply(backend), LIMITS, on_error=on_error)
    if on_error is None:
        with pytest.raises(BackendUnavailable):
            await policy.admit(ALICE, "r")
    else:
        verdict = await policy.admit(ALICE, "r")
        if on_error == "deny":
            assert isinstance(verdict, Denial)
            assert verdict.code == ErrorCode.BACKEND_UNAVAILABLE
        else:
            assert isinstance(verdict, Admitted)
            assert verdict.leases.slots == ()  # fail open: counted nowhere, so nothing phantom either
    assert await policy.occupancy(ALICE, "r") == NOTHING_HELD
    await reconnects(backend)


async def test_a_second_cancellation_during_clean_up_neither_stops_the_removal_nor_replaces_the_first(
    backend: Backend,
) -> None:
    storage = HeldCalls(backend)
    add = storage.hold(calls_to("set_add", "room:"))
    remove = storage.hold(calls_to("set_remove", "conn:addr:"))
    caught: list[BaseException] = []
    task = asyncio.create_task(attempt(ConnectionPolicy(storage, LIMITS), caught))
    await asyncio.wait_for(add.started.wait(), timeout=10)
    task.cancel("first")
    add.go.set()
    await asyncio.wait_for(remove.started.wait(), timeout=10)  # the clean-up is removing now, and is held
    task.cancel("second")
    # The attempt ends at once, while its removal is still held in storage.
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=10)
    assert not remove.go.is_set()
    ((first,),) = [exc.args for exc in caught]
    assert first == "first"
    await storage.settle()
    assert await ConnectionPolicy(backend, LIMITS).occupancy(ALICE, "r") == NOTHING_HELD
    assert storage.removals == {(key, "c1"): 1 for key in ALICE_KEYS}
    await reconnects(backend)


async def test_a_refusal_cancelled_while_giving_back_its_slots_still_gives_them_all_back(backend: Backend) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(per_user=5, per_ip=5, room_max_members=1))
    holder = await policy.admit(ALICE, "r")
    assert isinstance(holder, Admitted)
    storage = HeldCalls(backend)
    remove = storage.hold(calls_to("set_remove", identity_slots_key(BOB)))
    task = asyncio.create_task(ConnectionPolicy(storage, policy.limits).admit(BOB, "r", connection_id="b1"))
    await asyncio.wait_for(remove.started.wait(), timeout=10)  # refused by the room, giving back identity and IP
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=10)
    await storage.settle()
    assert await policy.occupancy(BOB, "r") == Occupancy(identity=0, ip=1, room=1)  # only ALICE's
    # The refused room add added nothing, so it is not removed.
    assert storage.removals == {(identity_slots_key(BOB), "b1"): 1, (ip_slots_key(BOB.ip), "b1"): 1}
    await holder.leases.release()


async def test_a_refusal_reports_room_full_and_removes_nothing_it_did_not_take(backend: Backend) -> None:
    policy = ConnectionPolicy(backend, LIMITS)
    holder = await policy.admit(ALICE, "r")
    assert isinstance(holder, Admitted)
    storage = HeldCalls(backend)
    verdict = await ConnectionPolicy(storage, ConnectionLimits(room_max_members=1)).admit(BOB, "r")
    assert isinstance(verdict, Denial)
    assert verdict.code == ErrorCode.ROOM_FULL
    assert storage.removals == {}
    await holder.leases.release()


def nth_call_to(method: str, key: str, n: int) -> Match:
    """The `n`-th call (from 0) of `method` on exactly `key`, and only that one."""
    count = -1

    def match(name: str, called_key: str, given: dict[str, Any]) -> bool:
        nonlocal count
        if name != method or called_key != key:
            return False
        count += 1
        return count == n

    return match


async def test_an_attempt_cancelled_while_asking_again_limit_by_limit_holds_nothing_once_storage_ran_it(
    backend: Backend,
) -> None:
    limits = ConnectionLimits(per_user=2, per_ip=1)
    holder = await ConnectionPolicy(backend, limits).admit(BOB)  # the IP's one slot, from ALICE's IP
    assert isinstance(holder, Admitted)
    storage = HeldCalls(backend)
    # ALICE's user slot admitted while the IP refused: given back, then asked again alone, and held there.
    gate = storage.hold(nth_call_to("set_add", identity_slots_key(ALICE), 1))
    policy = ConnectionPolicy(storage, limits)
    await cancelled_at(gate, storage, policy.admit(ALICE, connection_id="c1"))
    assert await policy.occupancy(ALICE) == Occupancy(identity=0, ip=1)  # only BOB's
    # Taken twice (at once, then alone), so removed twice; the refused IP add added nothing.
    assert storage.removals == {(identity_slots_key(ALICE), "c1"): 2}
    await holder.leases.release()


# -- leases -----------------------------------------------------------------------------------------------


SLOTS = (Slot("conn:a", "m"), Slot("conn:b", "m"), Slot("conn:c", "m"))


async def held_leases(backend: Backend) -> tuple[HeldCalls, Leases]:
    for slot in SLOTS:
        await backend.set_add(slot.key, slot.member, lease_ms=60_000)
    storage = HeldCalls(backend)
    return storage, Leases(storage, SLOTS, 60_000)


async def sizes(backend: Backend) -> list[int]:
    return [await backend.set_size(slot.key) for slot in SLOTS]


async def test_a_release_cancelled_half_way_still_removes_every_slot_and_only_then_says_released(
    backend: Backend,
) -> None:
    storage, leases = await held_leases(backend)
    gate = storage.hold(calls_to("set_remove", "conn:b"))
    first = asyncio.create_task(leases.release())
    await asyncio.wait_for(gate.started.wait(), timeout=10)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(first, timeout=10)
    assert not leases.released  # started, not done
    assert await leases.refresh() is False  # nothing is written once a release started
    second = asyncio.create_task(leases.release())
    await asyncio.sleep(0)
    assert not second.done()  # it waits for the same removal
    gate.go.set()
    await asyncio.wait_for(second, timeout=10)
    assert leases.released
    assert await sizes(backend) == [0, 0, 0]
    assert storage.removals == {(slot.key, slot.member): 1 for slot in SLOTS}
    await leases.release()
    assert storage.removals == {(slot.key, slot.member): 1 for slot in SLOTS}


async def test_every_caller_of_release_waits_for_the_one_removal(backend: Backend) -> None:
    storage, leases = await held_leases(backend)
    gate = storage.hold(calls_to("set_remove", "conn:c"))
    callers = [asyncio.create_task(leases.release()) for _ in range(3)]
    await asyncio.wait_for(gate.started.wait(), timeout=10)
    await asyncio.sleep(0)
    assert not any(caller.done() for caller in callers)
    gate.go.set()
    await asyncio.wait_for(asyncio.gather(*callers), timeout=10)
    assert await sizes(backend) == [0, 0, 0]
    assert storage.removals == {(slot.key, slot.member): 1 for slot in SLOTS}


async def test_a_refresh_cancelled_in_flight_finishes_before_the_release_and_cannot_revive_a_slot(
    backend: Backend,
) -> None:
    storage, leases = await held_leases(backend)
    gate = storage.hold(calls_to("set_add", "conn:b"))
    refresh = asyncio.create_task(leases.refresh())
    await asyncio.wait_for(gate.started.wait(), timeout=10)
    refresh.cancel()  # a heartbeat cancelled mid-refresh: storage still runs the add
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(refresh, timeout=10)
    release = asyncio.create_task(leases.release())
    await asyncio.sleep(0)
    assert not release.done()  # the refresh's writes come first
    gate.go.set()
    await asyncio.wait_for(release, timeout=10)
    await storage.settle()
    assert await sizes(backend) == [0, 0, 0]
    assert leases.released


class BrokenRemove:
    """Delegates to a backend, but removing from ``conn:a`` fails with a bug, not a storage failure."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def set_remove(self, key: str, member: str) -> int:
        if key == "conn:a":
            raise RuntimeError("a bug below the lease (test)")
        return await self.backend.set_remove(key, member)


async def test_release_never_raises_even_for_a_bug_below_it_and_still_removes_the_others(backend: Backend) -> None:
    for slot in SLOTS:
        await backend.set_add(slot.key, slot.member, lease_ms=60_000)
    leases = Leases(BrokenRemove(backend), SLOTS, 60_000)
    await leases.release()
    assert leases.released
    assert await sizes(backend) == [1, 0, 0]  # conn:a expires with its lease


# -- anywhere -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
async def test_cancellations_at_random_awaits_over_many_attempts_leave_nothing_held(
    backend: Backend, seed: int
) -> None:
    rng = random.Random(seed)
    limits = ConnectionLimits(per_user=2, per_ip=3, room_max_members=2)
    removals: Counter[tuple[str, str]] = Counter()
    for cycle in range(25):
        storage = HeldCalls(backend)
        # Calls per cycle: 3 adds, then 3 removals; a point past them is never reached.
        gate = storage.hold(nth_call(rng.randrange(8)))
        policy = ConnectionPolicy(storage, limits)

        async def connect_and_leave(policy: ConnectionPolicy = policy, cycle: int = cycle) -> None:
            verdict = await policy.admit(ALICE, "r", connection_id=f"c{cycle}")
            assert isinstance(verdict, Admitted), verdict
            await verdict.leases.release()

        task = asyncio.create_task(connect_and_leave())
        started = asyncio.create_task(gate.started.wait())
        await asyncio.wait([task, started], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if gate.started.is_set():
            task.cancel()
            if rng.random() < 0.5:  # and again, somewhere in the clean-up
                for _ in range(rng.randrange(4)):
                    await asyncio.sleep(0)
                task.cancel()
        gate.go.set()
        await asyncio.wait([task], timeout=30)
        assert task.done()
        assert task.cancelled() or task.exception() is None
        started.cancel()
        await storage.settle()
        removals.update(storage.removals)
        assert await policy.occupancy(ALICE, "r") == NOTHING_HELD, f"cycle {cycle}"
    assert removals, "slots were taken and given back"
    assert max(removals.values()) == 1, "no slot was removed twice"
