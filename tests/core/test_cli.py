"""The `ratelimit` command line: inspect, reset, ping, and errors without tracebacks."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys

import pytest

from ratelimit_core import RedisBackend
from ratelimit_core.cli import BURST_ENV, EXIT_BACKEND, EXIT_OK, EXIT_USAGE, RATE_ENV, main
from ratelimit_core.policies import MessageLimits
from ratelimit_core.policies.connections import identity_slots_key, ip_slots_key, room_members_key
from ratelimit_core.policies.identity import ClientIdentity
from ratelimit_core.policies.messages import message_bucket_key

PREFIX = "cli-test:"


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _seed(url: str) -> None:
    async with RedisBackend.from_url(url, prefix=PREFIX) as backend:
        await backend.clear()
        user = ClientIdentity(ip="10.0.0.1", user="42")
        for socket_id in ("a", "b"):
            await backend.set_add(identity_slots_key(user), socket_id, lease_ms=60_000)
            await backend.set_add(room_members_key("lobby"), socket_id, lease_ms=60_000)
        await backend.set_add(ip_slots_key("10.0.0.9"), "c", lease_ms=60_000)
        for _ in range(3):
            await backend.bucket_consume(message_bucket_key(user), rate=1, burst=5)


def _inspect(url: str, capsys: pytest.CaptureFixture[str], *target: str) -> dict[str, object]:
    args = ["--backend", url, "--prefix", PREFIX, "inspect", *target, "--rate", "1", "--burst", "5", "--json"]
    assert main(args) == EXIT_OK
    report: dict[str, object] = json.loads(capsys.readouterr().out)
    return report


@pytest.mark.redis
def test_inspect_shows_connections_members_and_tokens_and_reset_clears_them(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_seed(redis_url))

    user = _inspect(redis_url, capsys, "--user", "42")
    assert user["connections"] == {"held": 2, "members": ["a", "b"]}
    messages = user["messages"]
    assert isinstance(messages, dict)
    assert messages["tokens_left"] == 2
    assert messages["burst"] == 5
    assert 0 < messages["full_after_ms"] <= 3_000
    assert _inspect(redis_url, capsys, "--room", "lobby") == {"room members": {"held": 2, "members": ["a", "b"]}}
    anonymous = _inspect(redis_url, capsys, "--ip", "10.0.0.9")
    assert anonymous["connections from this IP"] == {"held": 1, "members": ["c"]}

    assert main(["--backend", redis_url, "--prefix", PREFIX, "reset", "--user", "42"]) == EXIT_OK
    assert "connections: 2 released" in capsys.readouterr().out
    user = _inspect(redis_url, capsys, "--user", "42")
    assert user["connections"] == {"held": 0, "members": []}
    assert user["messages"] == {"tokens_left": 5, "burst": 5, "retry_after_ms": 0, "full_after_ms": 0}


@pytest.mark.redis
def test_an_ipv6_address_names_the_slots_of_its_network_as_the_limits_group_it(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def hold() -> None:
        async with RedisBackend.from_url(redis_url, prefix=PREFIX) as backend:
            await backend.set_add(ip_slots_key("2001:db8:1:2::/64"), "v6", lease_ms=60_000)

    asyncio.run(hold())
    for address in ("2001:db8:1:2::99", "2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"):
        held = _inspect(redis_url, capsys, "--ip", address)["connections from this IP"]
        assert held == {"held": 1, "members": ["v6"]}, address
    elsewhere = _inspect(redis_url, capsys, "--ip", "2001:db8:1:3::1")["connections from this IP"]
    assert elsewhere == {"held": 0, "members": []}
    whole = _inspect(redis_url, capsys, "--ip", "2001:db8:1:2::99", "--ipv6-prefix", "128")
    assert whole["connections from this IP"] == {"held": 0, "members": []}


@pytest.mark.redis
def test_ping_reports_latency(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--backend", redis_url, "ping", "--count", "3"]) == EXIT_OK
    scheme = redis_url.partition("://")[0]  # rediss:// in the acl tox env
    assert capsys.readouterr().out.startswith(f"ok: {scheme}:// answered 3 pings, median ")


def test_a_dead_backend_is_exit_code_1_with_one_line_and_no_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--backend", f"redis://127.0.0.1:{_dead_port()}/0", "ping"]) == EXIT_BACKEND
    err = capsys.readouterr().err
    assert err.startswith("error: Redis did not answer")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backend", "nosuch://x", "ping"], "unsupported backend URL scheme"),
        (["inspect", "--ip", "not-an-ip"], "--ip must be an IP address"),
        (["inspect", "--ip", "2001:db8::1", "--ipv6-prefix", "0"], "--ipv6-prefix must be an int from 1 to 128"),
    ],
)
def test_bad_input_is_exit_code_2_naming_the_problem(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_the_console_script_prints_help_and_refuses_unknown_commands() -> None:
    command = [sys.executable, "-m", "ratelimit_core.cli"]
    shown = subprocess.run([*command, "--help"], check=False, capture_output=True, text=True)
    assert shown.returncode == 0
    for name in ("inspect", "reset", "ping", "bench"):
        assert name in shown.stdout
    refused = subprocess.run([*command, "explode"], check=False, capture_output=True, text=True)
    assert refused.returncode == EXIT_USAGE
    assert "invalid choice" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize(("rate", "burst"), [("2.5", 3), ("0.01", 1), ("7", 7)])
def test_inspect_without_burst_shows_the_burst_the_message_limits_put_into_effect(
    rate: str, burst: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(BURST_ENV, raising=False)
    monkeypatch.setenv(RATE_ENV, rate)
    assert main(["--backend", "memory://", "inspect", "--user", "42", "--json"]) == EXIT_OK
    messages = json.loads(capsys.readouterr().out)["messages"]
    assert messages["burst"] == burst == MessageLimits(rate=float(rate)).bucket_burst


def test_a_rate_the_message_limits_refuse_is_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--backend", "memory://", "inspect", "--user", "42", "--rate", "inf"]) == EXIT_USAGE
    assert capsys.readouterr().err.startswith("error: ")
