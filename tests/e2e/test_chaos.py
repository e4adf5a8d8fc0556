"""Chaos: Redis killed, frozen and restarted at random under two live app servers, and the slots still come out exact.

Two uvicorn processes serve the example on one real redis-server with the default
outage handling (``WS_RATE_ON_BACKEND_ERROR = "fallback"``). For `CHAOS_S` seconds,
`PLAYERS` clients join, chat and leave at random (`chaos_players`) while Redis is
killed (SIGKILL), frozen (SIGSTOP/SIGCONT) and restarted at random, always on its
own port (`redis_faults`). Everything random comes from one seed, printed at the
start and in every failure (``RATELIMIT_CHAOS_SEED=<seed>`` replays the same
schedule; the timing of real processes still varies).

Afterwards, with Redis up:

1. no client saw anything but the documented frames and close codes (`chaos_players`);
2. within `CONVERGED_WITHIN_S`, every slot set on Redis holds exactly the ids of the
   live connections: each user's set one id per open socket of that user, the IP's
   set the union of those (each id once), and each room's set, user by user, one id
   per open socket of that user in that room. (The connection ids are not shown to
   clients; every socket's id is in its user's set, so the sets are compared through
   the users' sets.) The lease is short, so a slot that a frozen Redis took late or
   a lost release left behind has expired by then, and a live socket's lost slot
   came back at its heartbeat;
3. once every socket is closed, every set is empty within `RELEASED_WITHIN_S`, half
   the lease: the releases emptied them, not the lease;
4. neither server logged an error other than the outage itself (the rule: `app_logs`).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Final

import pytest

from support.app_logs import headline, unexpected_errors
from support.app_servers import AppServer, AppServerPool
from support.chaos_players import ROOMS, WIRE_CONTRACT, Player, Roster
from support.redis_faults import RedisFaults
from support.redis_slots import RedisSlots
from support.servers import ServerProcess

pytestmark = pytest.mark.redis  # real processes sharing a real Redis

CHAOS_S: Final = 20.0
PLAYERS: Final = 16
LEASE_MS: Final = 6000
HEARTBEAT_MS: Final = 300
SETTINGS: Final = {
    **WIRE_CONTRACT,
    "WS_RATE_ON_BACKEND_ERROR": "fallback",
    # A frozen Redis costs a call this long before the fallback answers; a killed one refuses at once.
    "WS_RATE_BACKEND_TIMEOUT_MS": 500,
    "WS_RATE_FALLBACK_COOLDOWN_MS": 100,
    "WS_RATE_LEASE_MS": LEASE_MS,
    "WS_RATE_HEARTBEAT_MS": HEARTBEAT_MS,
}
CONVERGED_WITHIN_S: Final = 25.0
"""Outages last at most 2 s, so the probes back off to about that; then a lease (6 s) for leftovers, and a margin."""
RELEASED_WITHIN_S: Final = LEASE_MS / 2000
_PLAYERS_STOP_WITHIN_S: Final = 30.0
"""Bound on the players finishing their last action after the chaos (each wait of theirs is bounded)."""
_POLL_S: Final = 0.2
_SHOWN: Final = 15


@pytest.fixture
def seed() -> int:
    chosen = int(os.environ.get("RATELIMIT_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"chaos seed {chosen} (RATELIMIT_CHAOS_SEED={chosen} replays the schedule)")
    return chosen


@pytest.fixture
def processes(server: ServerProcess, app_pool: AppServerPool) -> tuple[AppServer, AppServer]:
    """The example served twice by uvicorn on the same Redis."""
    return app_pool.start("uvicorn", server.url, **SETTINGS), app_pool.start("uvicorn", server.url, **SETTINGS)


async def _slot_mismatches(slots: RedisSlots, roster: Roster) -> list[str]:
    """How the slot sets on Redis differ from the live connections (empty: exactly equal; see the module)."""
    users = sorted(roster.users)
    user_sets = dict(zip(users, await asyncio.gather(*(slots.of_user(user) for user in users)), strict=True))
    room_sets = dict(zip(ROOMS, await asyncio.gather(*(slots.of_room(room) for room in ROOMS)), strict=True))
    ip_set = await slots.of_ip()
    live = list(roster.live.values())
    per_user = Counter(seat.user for seat in live)
    per_user_room = Counter((seat.user, seat.room) for seat in live)
    problems = [
        f"user {user}: {len(ids)} slots, {per_user[user]} open sockets"
        for user, ids in user_sets.items()
        if len(ids) != per_user[user]
    ]
    counted = frozenset().union(*user_sets.values())
    if sum(len(ids) for ids in user_sets.values()) != len(counted):
        problems.append("a connection id is in the sets of two users")
    if ip_set != counted:
        problems.append(
            f"IP set: {len(ip_set)} ids for {len(live)} open sockets; {len(ip_set - counted)} in no user's set, "
            f"{len(counted - ip_set)} of the users' ids missing"
        )
    for room, ids in room_sets.items():
        if stray := ids - counted:
            problems.append(f"room {room}: {len(stray)} ids in no user's set")
        problems += [
            f"room {room}, user {user}: {len(ids & user_ids)} slots, {per_user_room[user, room]} open sockets"
            for user, user_ids in user_sets.items()
            if len(ids & user_ids) != per_user_room[user, room]
        ]
    return problems


async def _poll(check: Callable[[], Awaitable[list[str]]], within_s: float) -> tuple[list[str], float]:
    """Call `check` until it finds nothing or `within_s` passed: (what it found last, seconds taken)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        found = await check()
        if not found or loop.time() - start >= within_s:
            return found, loop.time() - start
        await asyncio.sleep(_POLL_S)


def _listed(items: list[str]) -> str:
    more = f"\n    ... and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return "".join(f"\n    {item}" for item in items[:_SHOWN]) + more


async def test_slots_on_redis_are_exactly_the_live_connections_after_redis_is_killed_frozen_and_restarted_at_random(
    seed: int, server: ServerProcess, processes: tuple[AppServer, AppServer]
) -> None:
    rng = random.Random(seed)
    roster = Roster()
    faults = RedisFaults(server, random.Random(rng.getrandbits(64)))
    loop = asyncio.get_running_loop()
    until = loop.time() + CHAOS_S
    players = [Player(f"p{number}", processes, roster, random.Random(rng.getrandbits(64))) for number in range(PLAYERS)]
    tasks = [asyncio.create_task(player.play(until), name=player.name) for player in players]
    failures: list[str] = []
    try:
        try:
            await faults.play(CHAOS_S)
        finally:
            await faults.heal()
        done, pending = await asyncio.wait(tasks, timeout=_PLAYERS_STOP_WITHIN_S)
        if pending:
            failures.append(f"{len(pending)} players still busy {_PLAYERS_STOP_WITHIN_S} s after the chaos")
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        failures += [f"player {task.get_name()} crashed: {task.exception()!r}" for task in done if task.exception()]
        await asyncio.gather(*(player.settle() for player in players))
        print(f"faults: {faults}\nseen: {dict(roster.seen)}; {len(roster.live)} sockets left open")
        if roster.violations:
            failures.append(
                f"clients saw {len(roster.violations)} things outside the contract:{_listed(roster.violations)}"
            )
        async with RedisSlots(server.url) as slots:

            async def mismatches() -> list[str]:
                return await _slot_mismatches(slots, roster)

            left, took = await _poll(mismatches, CONVERGED_WITHIN_S)
            print(f"slots matched the live connections after {took:.1f} s" if not left else "slots never matched")
            if left:
                failures.append(
                    f"after {CONVERGED_WITHIN_S} s, Redis's slots still differ from the live sockets:{_listed(left)}"
                )
            open_seats = list(roster.live.values())
            await asyncio.gather(*(seat.socket.close() for seat in open_seats))
            failures += [
                f"{seat.sid}: closed by the client, then saw close code {seat.socket.close_code}"
                for seat in open_seats
                if seat.socket.close_code != 1000
            ]
            roster.live.clear()
            left, took = await _poll(mismatches, RELEASED_WITHIN_S)
            print(f"slots empty {took:.1f} s after the close" if not left else "slots not empty")
            if left:
                failures.append(
                    f"{RELEASED_WITHIN_S} s after every socket was closed, Redis still held:{_listed(left)}"
                )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(seat.socket.close() for seat in roster.live.values()), return_exceptions=True)
    for process in processes:
        if errors := unexpected_errors(process.full_log()):
            headlines = [headline(error) for error in errors]
            failures.append(
                f"{process} logged {len(errors)} errors that are not the outage:{_listed(headlines)}\n"
                f"  the first in full:\n{errors[0]}"
            )
    assert roster.seen["welcome"] > 0, f"seed {seed}: no client was ever admitted; seen {dict(roster.seen)}"
    assert not failures, f"seed {seed}; faults: {faults}\n" + "\n".join(failures)
