"""The example's page in a real headless browser: what a person sees when the limits act.

Debian's ``/usr/bin/chromium`` (installed by ``scripts/test``), driven by Playwright
with the system browser (no browser download, ever), opens the demo page of the
example served by uvicorn on the memory backend. The assertions are on what the page
displays; each test leaves a full-page screenshot in ``test-artifacts/``, passed or
failed. Runs in one tox environment only (memory): the browser adds nothing per backend.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Final

import pytest

from ratelimit_core.policies import CloseCode, ErrorCode
from support.app_servers import AppServer, AppServerPool
from support.backends import missing_server

try:
    from playwright.async_api import Locator, Page, async_playwright, expect

    _PLAYWRIGHT_MISSING: str | None = None
except ImportError as exc:  # reported by the `page` fixture: a skip locally, a failure under CI=true
    _PLAYWRIGHT_MISSING = str(exc)

pytestmark = pytest.mark.memory

CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMIUM_FLAGS: Final = (
    "--headless",
    "--no-sandbox",  # as root there is no user namespace for Chromium's sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium calls home at start; on a closed network that is a stream of refused connections.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
ARTIFACTS: Final = Path(__file__).resolve().parents[2] / "test-artifacts"
_WAIT_MS: Final = 5000
"""Bound on every wait for the page (an element, a text): a hang fails the test instead of stalling it."""
_LAUNCH_MS: Final = 20000

LIMITS = {
    "WS_RATE_CONN_PER_USER": 2,
    "WS_RATE_CONN_PER_IP": 50,  # every socket here comes from 127.0.0.1
    "WS_RATE_ROOM_MAX_MEMBERS": 10,
    "WS_RATE_MSG_RPS": 0.5,  # one token per 2 s: none comes back while the page sends its burst
    "WS_RATE_MSG_BURST": 5,
    "WS_RATE_MSG_STRIKES": 100,  # a burst of 20 is refused 15 times and the socket stays open
    "WS_MAX_PAYLOAD_BYTES": 1024,
    "WS_RATE_CONN_RETRY_MS": 5000,
    # An "emote" token comes back after 50 s: the second one below is refused however slow the machine is.
    "WS_RATE_MSG_TYPES": {"chat": {"rps": 1, "burst": 3}, "emote": {"rps": 0.02, "burst": 1}},
    "WS_RATE_MSG_QUOTA": [100, 60],
    # One attempt per 1000 s after a burst of 6: the storm of 10 below meets both connection limits.
    "WS_RATE_CONNECT_RPS": 0.001,
    "WS_RATE_CONNECT_BURST": 6,
}
_BURST = 20  # what the page's "Send burst of 20" button sends
_STORM = 10  # what the page's "Connect storm" button opens


@pytest.fixture
def browser_available() -> None:
    if not CHROMIUM.exists():
        missing_server(f"no {CHROMIUM} (Debian's chromium; scripts/test installs it)")
    if _PLAYWRIGHT_MISSING is not None:
        missing_server(f"playwright is not installed ({_PLAYWRIGHT_MISSING}); it is in the 'test' extra")


@pytest.fixture
def example(browser_available: None) -> Iterator[AppServer]:
    pool = AppServerPool()
    try:
        yield pool.start("uvicorn", "memory://", **LIMITS)
    finally:
        pool.close()


@pytest.fixture
async def page(example: AppServer, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """The demo page, loaded, in headless Chromium with a fresh profile; screenshot saved at teardown."""
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile",
            executable_path=CHROMIUM,
            headless=True,
            args=list(CHROMIUM_FLAGS),
            timeout=_LAUNCH_MS,
            viewport={"width": 1280, "height": 900},
        )
        page = context.pages[0] if context.pages else await context.new_page()
        page.set_default_timeout(_WAIT_MS)
        try:
            await page.goto(f"{example.origin}/")
            # The page has loaded its limits: the backend's kind is shown.
            await expect(page.locator("#backend")).to_have_text("memory", timeout=_WAIT_MS)
            yield page
        finally:
            await _screenshot(page, request.node.name)
            await context.close()


async def _screenshot(page: Page, name: str) -> None:
    """The whole page as ``test-artifacts/browser-<name>.png`` (git-ignored), for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / f"browser-{name}.png", full_page=True)


def _card(page: Page, number: int) -> Locator:
    """The page's card of its `number`-th socket (1-based, in the order they were opened)."""
    return page.locator("#sockets .socket").nth(number - 1)


async def _open_socket(page: Page, number: int) -> None:
    """Click "Open socket" and wait until the `number`-th socket is open and welcomed."""
    await page.click("#open")
    card = _card(page, number)
    await expect(card.locator(".state")).to_have_text("open", timeout=_WAIT_MS)
    await expect(card.locator(".last")).to_have_text(re.compile(r"^welcome to arena as user:alice\b"), timeout=_WAIT_MS)


async def test_a_socket_past_the_users_limit_shows_the_error_frame_and_close_4008(page: Page) -> None:
    await page.fill("#user", "alice")
    await page.fill("#room", "arena")
    await _open_socket(page, 1)
    await _open_socket(page, 2)

    await page.click("#open")

    third = _card(page, 3)
    await expect(third.locator(".state")).to_have_text(
        re.compile(rf"^closed: code {CloseCode.CONNECTION_REFUSED} "), timeout=_WAIT_MS
    )
    await expect(third.locator(".last")).to_have_text(
        re.compile(rf"^error {ErrorCode.CONNECTION_LIMIT_EXCEEDED} retry_after_ms=5000 \("), timeout=_WAIT_MS
    )
    await expect(third.locator(".counts")).to_have_text("sent 0, received 1")
    await expect(page.locator("#log")).to_contain_text(f"#3 closed code={CloseCode.CONNECTION_REFUSED}")
    # The two admitted sockets are untouched by the refusal.
    for number in (1, 2):
        await expect(_card(page, number).locator(".state")).to_have_text("open")


async def test_a_burst_past_the_bucket_shows_rate_limit_exceeded_with_a_retry_time_that_holds(page: Page) -> None:
    await page.fill("#user", "alice")
    await page.fill("#room", "arena")
    await _open_socket(page, 1)

    await page.click("#burst")

    card = _card(page, 1)
    burst, refused = LIMITS["WS_RATE_MSG_BURST"], _BURST - LIMITS["WS_RATE_MSG_BURST"]
    # Every frame answered: the welcome, the burst's chat echoed back by the room, one refusal per frame over it.
    await expect(card.locator(".counts")).to_have_text(f"sent {_BURST}, received {1 + burst + refused}")
    await expect(page.locator("#log .chat")).to_have_count(burst)
    await expect(page.locator("#log .error")).to_have_count(refused)
    await expect(page.locator("#log .error", has_text=f"error {ErrorCode.RATE_LIMIT_EXCEEDED} ")).to_have_count(refused)
    # The log, not the card's last frame: the room's chat echoes may arrive after the refusals.
    last_refusal = await page.locator("#log .error").last.inner_text()
    shown = re.search(rf"#1 <- error {ErrorCode.RATE_LIMIT_EXCEEDED} retry_after_ms=(\d+) \(", last_refusal)
    assert shown is not None, last_refusal
    retry_after_ms = int(shown[1])
    assert 0 < retry_after_ms <= 1000 / LIMITS["WS_RATE_MSG_RPS"]
    # Refused frames do not close the socket (strikes are far off).
    await expect(card.locator(".state")).to_have_text("open")
    await _screenshot(page, "burst-refused")

    # After the retry time the page shows, a message passes again.
    await page.wait_for_timeout(retry_after_ms + 100)
    await page.fill("#text", "after the wait")
    await page.click("#send")
    await expect(card.locator(".last")).to_have_text("chat alice: after the wait", timeout=_WAIT_MS)
    await expect(page.locator("#log .error")).to_have_count(refused)


async def test_a_message_type_has_its_own_rate_shown_and_its_refusal_names_the_type(page: Page) -> None:
    await expect(page.locator("#limits")).to_contain_text('"emote":{"rps":0.02,"burst":1}')
    await expect(page.locator("#limits")).to_contain_text("[100,60]")
    await page.fill("#user", "alice")
    await page.fill("#room", "arena")
    await _open_socket(page, 1)
    await page.select_option("#msgtype", "emote")
    await expect(page.locator("#type-rate")).to_have_text("0.02/s, burst 1, on top of the per-user rate")
    await page.fill("#text", "waves")
    await page.click("#send")
    card = _card(page, 1)
    await expect(card.locator(".last")).to_have_text("chat [emote] alice: waves", timeout=_WAIT_MS)
    await page.click("#send")
    refusal = page.locator("#log .error")
    await expect(refusal).to_have_count(1)
    await expect(refusal).to_contain_text(f"#1 <- error {ErrorCode.RATE_LIMIT_EXCEEDED} retry_after_ms=")
    await expect(refusal).to_contain_text("limit=emote")
    # The emote bucket is empty, the per-user one is not: an untyped message passes.
    await page.select_option("#msgtype", "")
    await page.fill("#text", "plain")
    await page.click("#send")
    await expect(card.locator(".last")).to_have_text("chat alice: plain", timeout=_WAIT_MS)
    await _screenshot(page, "message-type-refused")


async def test_a_connect_storm_shows_how_many_each_connection_limit_refused(page: Page) -> None:
    await page.fill("#user", "alice")
    await page.fill("#room", "arena")
    await page.click("#storm")

    result = page.locator("#storm-result")
    await expect(result).to_contain_text(f"storm of {_STORM}, answered {_STORM}: ", timeout=_WAIT_MS)
    shown = (await result.inner_text()).partition(": ")[2]
    counts = {name: int(count) for name, count in re.findall(r"(\w+) (\d+)", shown)}
    tokens = LIMITS["WS_RATE_CONNECT_BURST"]
    # Exact: the bucket refuses every attempt past its burst. The attempts with a token share 2 slots, so at most
    # 2 are admitted (fewer only if an attempt refused by the rate held a slot for its round trip meanwhile).
    assert counts[ErrorCode.CONNECTION_RATE_EXCEEDED] == _STORM - tokens
    assert counts.get("admitted", 0) + counts[ErrorCode.CONNECTION_LIMIT_EXCEEDED] == tokens
    assert 1 <= counts.get("admitted", 0) <= LIMITS["WS_RATE_CONN_PER_USER"]
    await expect(page.locator("#sockets .socket.closed")).to_have_count(_STORM - counts["admitted"])
    await expect(page.locator("#sockets .socket.open")).to_have_count(counts["admitted"])
    await _screenshot(page, "connect-storm")


async def test_shadow_mode_admits_and_delivers_everything_and_shows_what_would_have_been_refused(page: Page) -> None:
    await page.fill("#user", "bob")
    await page.fill("#room", "arena")
    await page.check("#shadow")
    for _ in range(3):
        await page.click("#open")
    third = _card(page, 3)
    await expect(page.locator("#sockets .socket.open")).to_have_count(3)
    await expect(third.locator(".last")).to_have_text(
        re.compile(
            rf"^welcome to arena as user:bob .*; shadow: would have refused {ErrorCode.CONNECTION_LIMIT_EXCEEDED}$"
        ),
        timeout=_WAIT_MS,
    )

    await third.locator("[data-act=burst]").click()
    # All 20 delivered: the room (the three sockets) gets each chat; nothing refused, nothing closed.
    await expect(page.locator("#log .chat")).to_have_count(3 * _BURST, timeout=_WAIT_MS)
    refused = _BURST - LIMITS["WS_RATE_MSG_BURST"]
    would = page.locator("#log .shadow", has_text=f"shadow: would have refused {ErrorCode.RATE_LIMIT_EXCEEDED} ")
    await expect(would).to_have_count(refused)
    await expect(page.locator("#log .error")).to_have_count(0)
    await expect(page.locator("#sockets .socket.open")).to_have_count(3)

    # A storm in shadow mode: every socket admitted, the page shows what the limits would have refused.
    await page.click("#storm")
    result = page.locator("#storm-result")
    await expect(result).to_contain_text(
        f"storm of {_STORM} in shadow mode, answered {_STORM}, all admitted; would have been: ", timeout=_WAIT_MS
    )
    await expect(result).to_contain_text(ErrorCode.CONNECTION_RATE_EXCEEDED)
    await expect(page.locator("#sockets .socket.open")).to_have_count(3 + _STORM)
    await _screenshot(page, "shadow-mode")
