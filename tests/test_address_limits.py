"""Per-address limits: sessions held and opened by one client address, and its messages a second.

The tests' connections all come from 127.0.0.1, a trusted proxy by default, so each names the
client it stands for in X-Forwarded-For, as HAProxy in front would.
"""

from __future__ import annotations

import time

import pytest
import requests

from socketio_django.addresses import ClientAddresses, address_key
from socketio_django.ratelimit import KeyedBuckets

from .helpers import GUNICORN, RUN_EXAMPLE, WAIT, ServerProcess, connect_from, get_from, wait_until

HANDSHAKE = "/socket.io/?EIO=4&transport=polling"


def forwarded(address: str) -> dict:
    return {"headers": {"X-Forwarded-For": address}}


def handshake(url: str, address: str) -> requests.Response:
    return requests.get(url + HANDSHAKE, headers={"X-Forwarded-For": address}, timeout=WAIT)


def test_one_address_holds_at_most_its_sessions_and_others_still_connect(fresh_server, clients, room):
    server = fresh_server(SOCKETIO_MAX_SESSIONS_PER_ADDRESS="3")
    held = [
        clients.join(server.url, room, f"mallory{number}", transport, **forwarded("203.0.113.7"))
        for number, transport in enumerate(["websocket", "polling", "upgrade"])
    ]
    # Two hundred more handshakes from that address: each refused at once, no session made.
    refused = [handshake(server.url, "203.0.113.7") for _ in range(200)]
    assert {response.status_code for response in refused} == {401}
    assert "sessions from this address" in refused[0].text
    extra = clients(
        server.url, "websocket", connect=False, auth={"room": room, "name": "m4"}, **forwarded("203.0.113.7")
    )
    assert extra.try_connect() is not None
    alice = clients.join(server.url, room, "alice", **forwarded("198.51.100.1"))
    assert alice.say("still here")["ok"] is True
    held[0].wait_for("message", lambda event: event["text"] == "still here")

    # A session that ends gives its place back.
    held[1].close()
    wait_until(lambda: handshake(server.url, "203.0.113.7").status_code == 200, what="a freed place")
    assert server.log().count("refused a new session from 203.0.113.7") >= 1
    assert "Traceback" not in server.log()


def test_forwarded_for_is_believed_only_from_trusted_proxies(fresh_server, clients, room):
    # 127.0.0.1 is not trusted here: whatever the header says, every client is 127.0.0.1.
    server = fresh_server(SOCKETIO_MAX_SESSIONS_PER_ADDRESS="2", SOCKETIO_TRUSTED_PROXIES="192.0.2.1")
    assert handshake(server.url, "198.51.100.1").status_code == 200
    assert handshake(server.url, "198.51.100.2").status_code == 200
    third = handshake(server.url, "198.51.100.3")
    assert third.status_code == 401 and "sessions from this address" in third.text
    assert "refused a new session from 127.0.0.1" in server.log()


def test_one_address_opens_a_bounded_number_of_sessions_a_second(fresh_server):
    server = fresh_server(SOCKETIO_SESSION_RATE_PER_ADDRESS="1", SOCKETIO_SESSION_BURST_PER_ADDRESS="5")
    started = time.monotonic()
    answers = [handshake(server.url, "203.0.113.9").status_code for _ in range(40)]
    elapsed = time.monotonic() - started
    accepted = answers.count(200)
    assert 5 <= accepted <= 5 + int(elapsed) + 1, (accepted, elapsed)
    assert answers.count(401) == 40 - accepted
    assert handshake(server.url, "203.0.113.10").status_code == 200
    assert "too many new sessions a second from this address" in server.log()


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_connections_of_one_address_share_its_message_rate(fresh_server, clients, room, transport):
    server = fresh_server(CHAT_ADDRESS_RATE_LIMIT_PER_SECOND="1", CHAT_ADDRESS_RATE_LIMIT_BURST="10")
    senders = [clients.join(server.url, room, f"flood{n}", transport, **forwarded("203.0.113.20")) for n in range(5)]
    started = time.monotonic()
    replies = [sender.say(f"{n}-{i}") for i in range(10) for n, sender in enumerate(senders)]
    elapsed = time.monotonic() - started
    stored = [reply for reply in replies if reply.get("ok")]
    refused = [reply for reply in replies if "error" in reply]
    # Twenty connections must not buy twenty budgets: the address's burst, plus what refilled meanwhile.
    assert 10 <= len(stored) <= 10 + int(elapsed) + 1, (len(stored), elapsed)
    assert len(stored) + len(refused) == 50
    assert refused[0]["error"].startswith("too many messages from your address")
    neighbour = clients.join(server.url, room, "neighbour", transport, **forwarded("198.51.100.20"))
    assert all(neighbour.say(f"n{i}")["ok"] for i in range(10))


def test_the_client_address_behind_proxies():
    addresses = ClientAddresses(["127.0.0.1", "10.0.0.0/8"])
    environ = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.5, 10.1.2.3"}
    # Right to left, the first address that is not a trusted proxy: what the client wrote before it is not believed.
    assert addresses.client_of(environ) == "203.0.113.5"
    assert addresses.client_of({"REMOTE_ADDR": "198.51.100.1", "HTTP_X_FORWARDED_FOR": "1.2.3.4"}) == "198.51.100.1"
    # What a trusted proxy wrote of its peer stands, address or not.
    assert (
        addresses.client_of({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "6.6.6.6, junk, 10.0.0.9"}) == "junk"
    )
    assert addresses.client_of({"REMOTE_ADDR": "127.0.0.1"}) == "127.0.0.1"
    # A dual-stack listener sees a local proxy as ::ffff:127.0.0.1; some proxies add ports or brackets.
    assert (
        addresses.client_of({"REMOTE_ADDR": "::ffff:127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.5"}) == "203.0.113.5"
    )
    assert (
        addresses.client_of({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.5:4444"}) == "203.0.113.5"
    )
    assert (
        addresses.client_of({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "[2001:db8::1]:443"}) == "2001:db8::1"
    )
    # A name that is no address is the client's own budget, not the proxy's shared one.
    assert addresses.client_of({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "unknown"}) == "unknown"
    # One IPv6 customer gets a /64: all of it is one address for the limits.
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::7") == "2001:db8:1:2::/64"
    assert address_key("::ffff:203.0.113.5") == "203.0.113.5"


@pytest.mark.parametrize("command", [RUN_EXAMPLE, GUNICORN], ids=["run_example", "gunicorn"])
def test_one_peer_holds_at_most_its_connections(tmp_path, command):
    env = {"SOCKETIO_MAX_CONNECTIONS_PER_ADDRESS": "20", "GUNICORN_BIND": "127.0.0.1:{port}"}
    server = ServerProcess(tmp_path, env=env, command=command).start()
    try:
        # 127.0.0.2 is not a trusted proxy: its connections count, sending nothing (as a slowloris).
        held = [connect_from(server, "127.0.0.2") for _ in range(20)]
        extra = [connect_from(server, "127.0.0.2") for _ in range(80)]
        for connection in extra:
            answer = connection.recv(1000)
            assert answer.startswith(b"HTTP/1.1 429 "), answer
            assert b"too many connections from this address" in answer
            assert connection.recv(1000) == b""  # and closed
        assert get_from(server, "127.0.0.3") == 200  # anyone else is served
        for connection in held:
            connection.close()
        wait_until(lambda: get_from(server, "127.0.0.2") == 200, what="the peer's places back")
        assert "refused a connection from 127.0.0.2: SOCKETIO_MAX_CONNECTIONS_PER_ADDRESS reached" in server.log()
        assert "Traceback" not in server.log()
    finally:
        server.stop()


def test_buckets_of_addresses_seen_long_ago_are_forgotten():
    buckets = KeyedBuckets(rate=10, burst=1, prune_above=100)
    assert all(buckets.take(f"203.0.113.{number}") for number in range(100))
    time.sleep(0.15)  # every one of them refills (a token each 0.1 s)
    assert buckets.take("198.51.100.1")  # the 101st address: the refilled ones are forgotten
    assert len(buckets) == 1
    assert not buckets.take("198.51.100.1")  # a recent one is still spent
