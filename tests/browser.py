"""Debian's Chromium driven by Playwright, and the chat page as a test sees it."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect

CHROMIUM = "/usr/bin/chromium"  # Debian's package: `playwright install` cannot download on this network
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium phones home at start-up and, on a closed network, its connections get refused.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# What Chromium logs as errors while the server restarts: a refused WebSocket, a refused poll.
RESTARTING = ("WebSocket connection", "ERR_CONNECTION_REFUSED")
WAIT_MS = 10_000  # any expected change on the page
RECONNECT_WAIT_MS = 30_000  # a restarted server, found again by the client's backoff
PHONE = {"viewport": {"width": 390, "height": 664}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


class ChatPage:
    """One person's chat tab: opens the page, sends messages, reads what it shows."""

    def __init__(self, context: BrowserContext, base_url: str) -> None:
        self.context = context
        self.base_url = base_url
        self.page: Page = context.new_page()
        self.problems: list[str] = []  # console errors and CSP violations
        self.websockets: list[str] = []  # every WebSocket the page opened
        self.page.on("websocket", lambda websocket: self.websockets.append(websocket.url))
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

    def _console(self, message) -> None:
        if message.type == "error" and not any(expected in message.text for expected in RESTARTING):
            self.problems.append(message.text)

    def open(self, room: str, name: str | None = None, transport: str | None = None) -> ChatPage:
        path = "/" if room == "lobby" else f"/r/{room}/"
        query = "&".join(f"{key}={value}" for key, value in (("name", name), ("transport", transport)) if value)
        self.page.goto(self.base_url + path + (f"?{query}" if query else ""))
        self.expect_status("Connected")
        return self

    def reload(self) -> ChatPage:
        self.page.reload()
        self.expect_status("Connected")
        return self

    # What the page shows.
    @property
    def status(self):
        return self.page.locator("#status")

    @property
    def input(self):
        return self.page.get_by_label("Message", exact=True)

    @property
    def messages(self):
        return self.page.locator("#messages li.message")

    @property
    def error(self):
        return self.page.locator("#error")

    def message(self, text: str):
        return self.messages.filter(has=self.page.locator(".text", has_text=re.compile(f"^{re.escape(text)}$")))

    def expect_status(self, text: str, timeout: float = WAIT_MS) -> None:
        expect(self.status).to_have_text(re.compile(f"^{text}", re.IGNORECASE), timeout=timeout)

    def transport(self) -> str | None:
        return self.page.locator("body").get_attribute("data-transport")

    def texts(self) -> list[str]:
        return self.messages.locator(".text").all_text_contents()

    # What the person does.
    def send(self, text: str) -> None:
        """Type ``text`` and press Enter."""
        self.input.fill(text)
        self.input.press("Enter")

    def say(self, text: str) -> None:
        """Send ``text`` and wait until the page shows it as sent."""
        self.send(text)
        self.expect_sent(text)

    def expect_sent(self, text: str) -> None:
        """The page shows (the last) ``text`` as sent: the server acknowledged storing it."""
        expect(self.message(text).last).to_have_attribute("data-state", "sent", timeout=WAIT_MS)

    def expect_message(self, text: str, timeout: float = WAIT_MS):
        item = self.message(text)
        expect(item).to_have_count(1, timeout=timeout)
        return item

    def screenshot(self, path: Path) -> None:
        self.page.screenshot(path=str(path))


def take_screenshots(browser: Browser, base_url: str, out_dir: Path, room: str = "lobby") -> list[Path]:
    """The chat in use, on a desktop and on a phone: ``chat-desktop.png`` and ``chat-phone.png`` in ``out_dir``."""
    from .helpers import Client

    people: list[Client] = []

    def join(name: str) -> Client:
        people.append(Client(base_url, auth={"room": room, "name": name}).connect())
        people[-1].wait_for("welcome")
        return people[-1]

    contexts = []

    def open_chat(name: str, **options) -> ChatPage:
        context = browser.new_context(locale="en-GB", timezone_id="Europe/Berlin", **options)
        contexts.append(context)
        return ChatPage(context, base_url).open(room, name=name)

    try:
        sam = join("sam")
        sam.say("Morning! The release branch is cut.")
        sam.say("Deploy starts at 15:00, I'll post here when it's live.")
        desktop = open_chat("alex", viewport={"width": 1100, "height": 640})
        desktop.say("Great, I'll keep an eye on the dashboards.")
        maria = join("maria")
        desktop.expect_message("Deploy starts at 15:00, I'll post here when it's live.")
        expect(desktop.page.locator("#online li")).to_have_count(3)
        maria.say("Could someone check the <script> escaping on the new page? <b>bold</b> should stay literal.")
        desktop.expect_message(
            "Could someone check the <script> escaping on the new page? <b>bold</b> should stay literal."
        )
        sam.say("Live! Thanks all.")
        desktop.expect_message("Live! Thanks all.")
        desktop.input.fill("Looks good from here")
        desktop.input.focus()
        phone = open_chat("priya", **PHONE)
        phone.input.fill("On my way")
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = [out_dir / "chat-desktop.png", out_dir / "chat-phone.png"]
        desktop.screenshot(paths[0])
        phone.screenshot(paths[1])
        return paths
    finally:
        for context in contexts:
            context.close()
        for person in people:
            person.close()
