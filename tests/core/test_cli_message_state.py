"""`ratelimit inspect` and `reset` on the message limits beyond the identity's bucket: a type's bucket and the quota.

The state is made by the real `MessagePolicy` on the storage under test, then read
and cleared through `main`, as an operator would. On ``memory://`` the command would
see only a new, empty backend of its own, so there it is handed the test's backend.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ratelimit_core import Backend, ManualClock, MemoryBackend, backend_from_url, cli
from ratelimit_core.cli import EXIT_OK, EXIT_USAGE, RATE_ENV, main
from ratelimit_core.policies import (
    Allowed,
    ClientIdentity,
    Denial,
    ErrorCode,
    MessageLimits,
    MessagePolicy,
    MessageQuota,
    MessageVerdict,
    TypeRate,
)
from support.backends import backends

CLI_PAGE = Path(__file__).resolve().parents[2] / "docs" / "operations" / "cli.md"
CHAT = '{"type": "chat", "text": "hi"}'
WINDOW_MS = 600_000
"""Long enough that no window ends while a test runs on a loaded machine."""
CHAT_LIMITS = MessageLimits(types=(TypeRate("chat", 0.01, burst=2),), quota=MessageQuota(5, WINDOW_MS))
"""A chat token every 100 s: a bucket emptied by the test stays empty while it runs."""
CHAT_OPTIONS = ("--type", "chat", "--type-rate", "0.01", "--type-burst", "2", "--quota", "5")
TARGETS = {
    "user": (ClientIdentity(ip="10.0.0.9", user="42"), ("--user", "42")),
    "ip": (ClientIdentity(ip="10.0.0.9"), ("--ip", "10.0.0.9")),
}


class Storage:
    """The storage under test, as the test's policy and the command line each reach it."""

    def __init__(self, url: str, prefix: str, shared: MemoryBackend | None) -> None:
        self.url, self.prefix, self.shared = url, prefix, shared

    def send(self, limits: MessageLimits, identity: ClientIdentity, *frames: str) -> list[MessageVerdict]:
        """Each frame through one connection's gate, in order."""

        async def admit_all() -> list[MessageVerdict]:
            async with self._open() as backend:
                gate = MessagePolicy(backend, limits).gate(identity)
                return [await gate.admit(text=frame) for frame in frames]

        return asyncio.run(admit_all())

    def _open(self) -> Backend:
        return self.shared if self.shared is not None else backend_from_url(self.url, prefix=self.prefix)

    def run(self, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
        assert main(["--backend", self.url, "--prefix", self.prefix, *argv]) == EXIT_OK
        return capsys.readouterr().out

    def inspect(self, capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
        report: dict[str, Any] = json.loads(self.run(capsys, "inspect", *argv, "--json"))
        return report


@pytest.fixture
def storage(backend_name: str, backend_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch) -> Storage:
    monkeypatch.delenv(RATE_ENV, raising=False)  # no identity bucket unless a test asks for one
    if backend_name != "memory":
        return Storage(backend_url, key_prefix, None)
    shared = MemoryBackend(clock=ManualClock(), prefix=key_prefix)  # a still clock: every wait is exact

    def the_shared_backend(url: str, *, prefix: str) -> Backend:
        assert (url, prefix) == ("memory://", key_prefix)
        return shared  # its aclose() is a no-op: it outlives each command

    monkeypatch.setattr(cli, "backend_from_url", the_shared_backend)
    return Storage(backend_url, key_prefix, shared)


def _denial(verdict: MessageVerdict) -> Denial:
    assert isinstance(verdict, Denial), verdict
    return verdict


def _within(value: object, upper: int, *, exact: bool) -> bool:
    """`upper` on the still clock of memory; on a server, time passed: above 0 and at most `upper`."""
    assert isinstance(value, int)
    return value == upper if exact else 0 < value <= upper


SERVED = backends("memory", "redis", "valkey", "cluster")


@pytest.mark.parametrize("backend_name", SERVED)
@pytest.mark.parametrize("target", TARGETS)
def test_a_frame_the_type_bucket_refused_shows_as_no_tokens_left_and_counts_toward_the_quota(
    storage: Storage, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    identity, who = TARGETS[target]
    *passed, refused = storage.send(CHAT_LIMITS, identity, CHAT, CHAT, CHAT)
    assert all(isinstance(verdict, Allowed) for verdict in passed)
    denial = _denial(refused)
    assert (denial.code, denial.limit) == (ErrorCode.RATE_LIMIT_EXCEEDED, "chat")

    report = storage.inspect(capsys, *who, *CHAT_OPTIONS)
    exact = storage.shared is not None
    typed = report["message type"]
    assert (typed["type"], typed["tokens_left"], typed["burst"]) == ("chat", 0, 2)
    assert denial.retry_after_ms is not None
    assert _within(typed["retry_after_ms"], denial.retry_after_ms, exact=exact)
    assert _within(typed["full_after_ms"], 200_000, exact=exact)  # two tokens at one per 100 s
    quota = report["message quota"]
    assert (quota["used"], quota["limit"], quota["left"]) == (3, 5, 2)  # the refused frame counted too
    assert _within(quota["reset_after_ms"], WINDOW_MS, exact=exact)
    assert "messages" not in report  # no --rate: the identity's bucket is not shown

    again = storage.inspect(capsys, *who, *CHAT_OPTIONS)
    assert again["message quota"]["used"] == 3  # inspecting counts nothing
    assert again["message type"]["tokens_left"] == 0


@pytest.mark.parametrize("backend_name", SERVED)
def test_a_quota_used_up_shows_nothing_left_and_the_wait_the_refused_frame_was_given(
    storage: Storage, capsys: pytest.CaptureFixture[str]
) -> None:
    identity, who = TARGETS["user"]
    limits = MessageLimits(quota=MessageQuota(2, WINDOW_MS))
    *passed, over = storage.send(limits, identity, "a", "b", "c")
    assert all(isinstance(verdict, Allowed) for verdict in passed)
    denial = _denial(over)
    assert denial.code == ErrorCode.QUOTA_EXCEEDED
    assert denial.retry_after_ms is not None

    quota = storage.inspect(capsys, *who, "--quota", "2")["message quota"]
    assert (quota["used"], quota["limit"], quota["left"]) == (2, 2, 0)
    assert _within(quota["reset_after_ms"], denial.retry_after_ms, exact=storage.shared is not None)
    plain = storage.inspect(capsys, *who)["message quota"]  # without --quota: the count, no limit
    assert (plain["used"], plain["limit"], plain["left"]) == (2, None, None)


@pytest.mark.parametrize("backend_name", SERVED)
def test_reset_refills_the_type_bucket_and_clears_the_quota_and_its_window(
    storage: Storage, capsys: pytest.CaptureFixture[str]
) -> None:
    identity, who = TARGETS["user"]
    _denial(storage.send(CHAT_LIMITS, identity, CHAT, CHAT, CHAT)[-1])

    done = storage.run(capsys, "reset", *who, "--type", "chat")
    assert "message quota cleared" in done
    assert "'chat' message bucket refilled" in done
    report = storage.inspect(capsys, *who, *CHAT_OPTIONS)
    assert report["message type"] == {
        "type": "chat",
        "tokens_left": 2,
        "burst": 2,
        "retry_after_ms": 0,
        "full_after_ms": 0,
    }
    assert report["message quota"] == {"used": 0, "limit": 5, "left": 5, "reset_after_ms": None}

    # The policy sees the same: two chat frames pass again, and the quota's window starts anew.
    assert all(isinstance(v, Allowed) for v in storage.send(CHAT_LIMITS, identity, CHAT, CHAT))
    quota = storage.inspect(capsys, *who, *CHAT_OPTIONS)["message quota"]
    assert quota["used"] == 2
    assert _within(quota["reset_after_ms"], WINDOW_MS, exact=storage.shared is not None)


@pytest.mark.parametrize("backend_name", backends("memory"))
def test_reset_without_type_leaves_the_type_buckets_as_they_are(
    storage: Storage, capsys: pytest.CaptureFixture[str]
) -> None:
    identity, who = TARGETS["user"]
    storage.send(CHAT_LIMITS, identity, CHAT, CHAT)
    assert storage.run(capsys, "reset", *who).endswith("message bucket refilled, message quota cleared\n")
    report = storage.inspect(capsys, *who, *CHAT_OPTIONS)
    assert report["message type"]["tokens_left"] == 0
    assert report["message quota"]["used"] == 0


@pytest.mark.parametrize(("rate", "burst"), [("2.5", 3), ("0.01", 1), ("7", 7)])
def test_a_type_without_burst_shows_the_burst_the_limits_put_into_effect(
    rate: str, burst: int, capsys: pytest.CaptureFixture[str]
) -> None:
    typed = _report(["--user", "42", "--type", "t", "--type-rate", rate], capsys)["message type"]
    assert typed["burst"] == burst == TypeRate("t", float(rate)).bucket_burst
    assert typed["tokens_left"] == burst


def test_the_text_output_has_a_line_per_limit(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--backend", "memory://", "inspect", "--user", "42", "--type", "chat", "--type-rate", "1", "--quota", "9"]
    assert main(argv) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert "message type: type=chat, tokens_left=1, burst=1, retry_after_ms=0, full_after_ms=0" in lines
    assert "message quota: used=0, limit=9, left=9, reset_after_ms=None" in lines


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["inspect", "--user", "1", "--type-rate", "1"], "--type-rate needs --type NAME"),
        (["reset", "--user", "1", "--type-burst", "2"], "--type-burst needs --type NAME"),
        (["inspect", "--user", "1", "--type", "chat"], "--type chat needs --type-rate"),
        (["inspect", "--user", "1", "--type", "c", "--type-rate", "-1"], "argument --type-rate: must be a positive"),
        (["inspect", "--user", "1", "--type", "c", "--type-rate", "inf"], "argument --type-rate: must be a positive"),
        (["inspect", "--user", "1", "--type", "c", "--type-rate", "fast"], "argument --type-rate: must be a number"),
        (["inspect", "--user", "1", "--type", "", "--type-rate", "1"], "argument --type: must be a message type name"),
        (["inspect", "--user", "1", "--type", "c", "--type-rate", "1", "--type-burst", "0"], "argument --type-burst"),
        (["inspect", "--user", "1", "--type", "c", "--type-rate", "1e-9"], "--type-rate/--type-burst: message type"),
        (["inspect", "--user", "1", "--quota", "0"], "argument --quota: must be from 1 to"),
        (["inspect", "--user", "1", "--quota", "many"], "argument --quota: must be a whole number"),
        (["inspect", "--room", "r", "--quota", "5"], "--quota needs --user or --ip"),
        (["reset", "--room", "r", "--type", "chat"], "--type needs --user or --ip"),
    ],
)
def test_bad_message_options_are_a_usage_error_naming_the_option(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--backend", "memory://", *argv])
    assert exited.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_a_usage_error_ends_the_process_with_code_2_and_no_traceback() -> None:
    argv = [sys.executable, "-m", "ratelimit_core.cli", "inspect", "--user", "1", "--type-rate", "1"]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_USAGE
    assert done.stderr.splitlines()[-1] == (
        "ratelimit inspect: error: --type-rate needs --type NAME, the message type whose bucket it sizes"
    )
    assert "Traceback" not in done.stderr


def _documented_keys() -> dict[str, set[str]]:
    """The JSON entries and their keys as the CLI page's table lists them."""
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \|", CLI_PAGE.read_text(encoding="utf-8"), re.MULTILINE)
    return {entry: set(re.findall(r"`([^`]+)`", keys)) for entry, keys in rows}


def _report(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["--backend", "memory://", "inspect", *argv, "--json"]) == EXIT_OK
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return report


def test_every_json_entry_and_key_is_documented_on_the_cli_page(capsys: pytest.CaptureFixture[str]) -> None:
    shown: dict[str, set[str]] = {}
    for argv in (
        ["--user", "42", "--rate", "1", *CHAT_OPTIONS],
        ["--ip", "10.0.0.9", "--rate", "1", *CHAT_OPTIONS],
        ["--room", "lobby"],
    ):
        for entry, value in _report(argv, capsys).items():
            shown[entry] = set(value)
    assert shown == _documented_keys()
