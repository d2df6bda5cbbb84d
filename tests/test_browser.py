"""The chat page in a real Chromium (Debian's package, driven by Playwright): what people see and do."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from .browser import PHONE, RECONNECT_WAIT_MS, WAIT_MS, ChatPage, launch, take_screenshots
from .helpers import wait_until

READER_ZONE = "Asia/Kolkata"  # UTC+05:30: local times differ visibly from UTC


def writer_in(clients, server, room, messages):
    """A Python client in ``room`` that has written ``messages`` (their texts, oldest first)."""
    writer = clients(server.url, auth={"room": room, "name": "writer"})
    for text in messages:
        assert writer.say(text)["ok"] is True
    return writer


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the whole module; each person gets a context (cookies, storage) of their own."""
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def person(browser, server):
    """Open the chat as a new person: ``person(room, name=..., transport=..., base_url=..., **context options)``."""
    pages: list[ChatPage] = []

    def open_chat(room, name=None, transport=None, base_url=None, **context_options) -> ChatPage:
        options = {"locale": "en-GB", "timezone_id": READER_ZONE, **context_options}
        page = ChatPage(browser.new_context(**options), base_url or server.url)
        pages.append(page)
        return page.open(room, name, transport)

    yield open_chat
    problems = {page.page.url: page.problems for page in pages if page.problems}
    for page in pages:
        page.context.close()
    assert not problems, f"console errors or CSP violations: {problems}"


def test_two_people_chat_both_ways_over_websocket(person, room):
    alice = person(room, name="alice")
    bob = person(room, name="bob")
    for page in (alice, bob):
        expect(page.page.locator("body")).to_have_attribute("data-transport", "websocket", timeout=WAIT_MS)
    expect(alice.page.locator("#messages .announcement")).to_have_text(["bob joined"])
    expect(alice.page.locator("#online li")).to_have_text(["alice (you)", "bob"])
    expect(bob.page.locator("#online-count")).to_have_text("2")

    alice.say("hello bob")
    received = bob.expect_message("hello bob")
    expect(received.locator(".name")).to_have_text("alice")
    expect(received).not_to_have_class(re.compile(r"\bmine\b"))
    expect(alice.message("hello bob")).to_have_class(re.compile(r"\bmine\b"))

    bob.say("hi alice")
    alice.expect_message("hi alice")
    assert alice.texts() == bob.texts() == ["hello bob", "hi alice"]

    # Times are the reader's local time (the server sends UTC).
    stamp = received.locator("time")
    sent_at = datetime.fromisoformat(stamp.get_attribute("datetime").replace("Z", "+00:00"))
    expect(stamp).to_have_text(sent_at.astimezone(ZoneInfo(READER_ZONE)).strftime("%H:%M"))

    bob.page.close()
    expect(alice.page.locator("#messages .announcement").last).to_have_text("bob left")
    expect(alice.page.locator("#online li")).to_have_text(["alice (you)"])


def test_long_polling_when_websocket_is_blocked(person, room):
    alice = person(room, name="alice")
    bob = person(room, name="bob", transport="polling")
    alice.say("are you there?")
    bob.expect_message("are you there?")
    bob.say("yes, over long-polling")
    alice.expect_message("yes, over long-polling")
    assert bob.transport() == "polling"
    assert bob.websockets == []  # it never even tried a WebSocket
    expect(alice.page.locator("body")).to_have_attribute("data-transport", "websocket", timeout=WAIT_MS)
    assert len(alice.websockets) == 1


def test_reload_shows_the_last_15_messages_and_remembers_the_name(person, server, clients, room):
    writer_in(clients, server, room, [f"message {n}" for n in range(20)])

    alice = person(room)  # no name yet: a guest
    expect(alice.messages).to_have_count(15)
    assert alice.texts() == [f"message {n}" for n in range(5, 20)]
    alice.page.get_by_label("Your name").fill("alice")
    alice.page.get_by_label("Your name").press("Enter")
    expect(alice.page.locator("#online li.me")).to_have_text("alice (you)", timeout=WAIT_MS)
    alice.say("mine")

    alice.reload()
    expect(alice.page.get_by_label("Your name")).to_have_value("alice")
    expect(alice.messages).to_have_count(15)
    assert alice.texts() == [f"message {n}" for n in range(6, 20)] + ["mine"]
    expect(alice.page.locator("#messages li.mine")).to_have_count(1)
    expect(alice.message("mine")).to_have_class(re.compile(r"\bmine\b"))


PAYLOADS = [
    '<img src=x onerror="window.__pwned = 1">',
    "<script>window.__pwned = 2</script>",
    '<a href="javascript:window.__pwned = 3">click</a>',
]


def test_what_people_type_is_shown_as_text_and_never_runs(person, server, clients, room):
    evil_name = "<img src=x onerror=alert(1)>"
    sender = person(room, name=evil_name)
    reader = person(room, name="reader")
    for payload in PAYLOADS:
        sender.say(payload)
    outsider = clients(server.url, auth={"room": room, "name": "<b>bold</b>"})
    outsider.say("<svg onload=window.__pwned=4>")

    late = person(room, name="late")  # sees it all from history
    for page in (sender, reader, late):
        for payload in PAYLOADS:
            page.expect_message(payload)
        page.expect_message("<svg onload=window.__pwned=4>")
        expect(page.page.locator("#messages").locator("img, script, a, b, svg")).to_have_count(0)
        assert page.page.evaluate("window.__pwned") is None
    expect(reader.message(PAYLOADS[0]).locator(".name")).to_have_text(evil_name)
    expect(late.page.locator("#online li")).to_contain_text([evil_name, "late (you)", "reader"])


def test_the_page_has_a_strict_content_security_policy(server):
    response = requests.get(server.url + "/r/csp/", timeout=10)
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self';" in policy and "style-src 'self';" in policy
    assert "unsafe" not in policy
    assert "<script>" not in response.text.replace("<script type", "")  # no inline script
    assert " style=" not in response.text


@pytest.mark.parametrize(
    "text, error",
    [
        ("x" * 1001, "Not sent: message is too long: 1001 characters, the limit is 1000"),
        ("   ", "Not sent: message is empty"),
        ("", "Not sent: message is empty"),
    ],
)
def test_a_rejected_message_shows_the_servers_error(person, room, text, error):
    alice = person(room, name="alice")
    alice.send(text)
    expect(alice.error).to_have_text(error, timeout=WAIT_MS)
    expect(alice.messages).to_have_count(0)  # not part of the conversation
    expect(alice.input).to_have_value(text)  # given back to fix
    if len(text) > 1000:
        expect(alice.page.locator("#count")).to_have_text("1001/1000")

    alice.send("fixed")
    alice.expect_sent("fixed")
    expect(alice.error).to_be_hidden()


def test_reader_who_scrolled_up_is_not_dragged_down(person, server, clients, room):
    writer = writer_in(clients, server, room, [f"line {n}\n" * 3 for n in range(15)])
    alice = person(room, name="alice", viewport={"width": 800, "height": 420})
    log = alice.page.locator("#messages")
    expect(alice.messages).to_have_count(15)
    assert log.evaluate("list => list.scrollHeight > list.clientHeight + 100")
    assert log.evaluate("list => list.scrollHeight - list.scrollTop - list.clientHeight") < 48  # at the newest

    log.evaluate("list => { list.scrollTop = 0; }")
    writer.say("while you read")
    alice.expect_message("while you read")
    jump = alice.page.get_by_role("button", name="New messages")
    expect(jump).to_be_visible()
    assert log.evaluate("list => list.scrollTop") == 0

    jump.click()
    expect(jump).to_be_hidden()
    assert log.evaluate("list => list.scrollHeight - list.scrollTop - list.clientHeight") < 48
    writer.say("and one more")
    alice.expect_message("and one more")
    expect(jump).to_be_hidden()  # at the bottom, so it follows


def test_keyboard_only(person, room):
    alice = person(room, name="alice")
    page = alice.page
    order = []
    for _ in range(6):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id || document.activeElement.textContent"))
    assert order == ["Skip to the message box", "name", "Change", "messages", "text", "Send"]
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"  # visible focus

    page.keyboard.press("Shift+Tab")
    page.keyboard.type("typed, never clicked")
    page.keyboard.press("Enter")
    alice.expect_sent("typed, never clicked")
    expect(alice.input).to_be_focused()


def test_phone_sized_screen_keeps_the_input_usable(person, server, clients, room):
    writer = writer_in(clients, server, room, [f"a long message number {n} " * 4 for n in range(15)])
    phone = person(room, name="phone", **PHONE)
    expect(phone.messages).to_have_count(15)
    expect(phone.input).to_be_visible()
    expect(phone.input).to_be_in_viewport(ratio=1)
    expect(phone.page.get_by_role("button", name="Send")).to_be_in_viewport(ratio=1)
    assert phone.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scroll

    phone.input.tap()
    phone.page.keyboard.type("sent from a phone")
    phone.page.get_by_role("button", name="Send").tap()
    phone.expect_sent("sent from a phone")
    expect(phone.message("sent from a phone")).to_be_in_viewport()
    assert writer.wait_for("message")["text"] == "sent from a phone"


def test_server_restart_reconnects_and_loses_nothing_shown_as_sent(person, fresh_server, clients, room):
    server = fresh_server()
    alice = person(room, name="alice", base_url=server.url)
    bob = person(room, name="bob", base_url=server.url, **PHONE)
    alice.say("before the restart")
    bob.expect_message("before the restart")

    server.stop()
    for page in (alice, bob):
        page.expect_status("Reconnecting")
    alice.send("while the server was down")
    expect(alice.message("while the server was down")).to_have_attribute("data-state", "queued")
    expect(alice.message("while the server was down")).to_contain_text("Not sent yet")

    server.start()
    for page in (alice, bob):
        page.expect_status("Connected", timeout=RECONNECT_WAIT_MS)
    alice.expect_sent("while the server was down")
    bob.expect_message("while the server was down")
    bob.say("after the restart")
    alice.expect_message("after the restart")
    alice.say("and back")
    bob.expect_message("and back")

    shown_as_sent = {
        text
        for page in (alice, bob)
        for text in page.page.locator("#messages li.mine[data-state=sent] .text").all_text_contents()
    }
    assert shown_as_sent == {"before the restart", "while the server was down", "after the restart", "and back"}
    reader = clients(server.url, auth={"room": room, "name": "reader"})
    stored = [message["text"] for message in reader.wait_for("history")]
    assert sorted(stored) == sorted(shown_as_sent)  # each exactly once
    for page in (alice, bob):
        assert page.texts() == stored


def test_readme_screenshots_can_be_retaken(browser, server, room, tmp_path):
    """docs/screenshots.py keeps working (it writes docs/chat-desktop.png and docs/chat-phone.png)."""
    for path in take_screenshots(browser, server.url, tmp_path, room=room):
        assert path.read_bytes().startswith(b"\x89PNG")


def test_the_page_in_a_big_room_shows_the_count_and_more_names_on_request(fresh_server, person, room):
    from .test_big_rooms import BIG_ROOM, crowd

    server = fresh_server(**BIG_ROOM)  # past 20 people a room hears counts, not names; pages of 50
    people = crowd(server, room, 120)
    page = person(room, name="zz-reader", base_url=server.url).page
    expect(page.locator("#online-count")).to_have_text("121")
    expect(page.locator("#online li")).to_have_count(50)
    page.get_by_role("button", name="Show more (71 not listed)").click()
    expect(page.locator("#online li")).to_have_count(100)
    page.get_by_role("button", name="Show more (21 not listed)").click()
    expect(page.locator("#online li")).to_have_count(121)
    expect(page.locator("#more-online")).to_be_hidden()
    people[5].close()  # a big room's count follows, without names
    expect(page.locator("#online-count")).to_have_text("120")
    for other in people:
        other.close()


def test_the_page_chats_across_three_workers_polling_then_upgrading(instances, person, room):
    server = instances(workers=3)
    pages = [person(room, name=f"p{n}", base_url=server.url) for n in range(4)]
    for page in pages:  # polling first, then the upgrade, whichever worker each request lands on
        expect(page.page.locator("body")).to_have_attribute("data-transport", "websocket", timeout=WAIT_MS)
    for sender in pages:
        sender.send(f"hello from {pages.index(sender)}")
    for page in pages:
        expect(page.messages).to_have_count(4)
    expect(pages[0].page.locator("#online-count")).to_have_text("4")
    assert "Invalid session" not in server.log()


def test_after_a_restart_mid_send_the_page_shows_what_it_missed_once(person, fresh_server, clients, room):
    server = fresh_server()
    alice = person(room, name="alice", base_url=server.url)
    alice.say("before")
    alice.send("sent as the server stops")  # stored or not: the replay decides
    server.stop()
    alice.expect_status("Reconnecting")
    server.start()
    # Written before the page is back (its reconnection backs off): more than a history's 15.
    writer = clients.join(server.url, room, "writer")
    missed = [f"missed {n}" for n in range(20)]
    for text in missed:
        writer.say(text)
    alice.expect_status("Connected", timeout=RECONNECT_WAIT_MS)
    alice.expect_sent("sent as the server stops")
    writer.say("live")
    alice.expect_message("live")

    reader = clients(server.url, auth={"room": room, "name": "reader", "last_id": 0})
    stored = [message["text"] for message in reader.wait_for("replay")["messages"]]
    assert stored.count("sent as the server stops") == 1 and set(missed) <= set(stored)
    assert alice.texts() == stored  # everything, once, in order


def test_eventsource_in_chromium_follows_a_room(person, server, clients, room):
    page = person(room, name="reader").page
    writer = clients.join(server.url, room, "writer")
    first = writer.say("before the stream")["id"]
    # The page's own origin: EventSource needs no library, and the CSP allows its own origin.
    page.evaluate(
        """room => {
            window.streamed = [];
            const events = new EventSource(`/r/${room}/events`);
            events.onmessage = (event) => window.streamed.push([event.lastEventId, JSON.parse(event.data).text]);
        }""",
        room,
    )

    def streamed() -> list:
        return page.evaluate("() => window.streamed")  # (the page's CSP forbids wait_for_function's eval)

    wait_until(lambda: len(streamed()) >= 1, what="the history through EventSource")
    second = writer.say("live")["id"]
    wait_until(lambda: len(streamed()) >= 2, what="the live message through EventSource")
    assert streamed() == [[str(first), "before the stream"], [str(second), "live"]]
