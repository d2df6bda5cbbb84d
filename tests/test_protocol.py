"""Engine.IO v4 and Socket.IO v5 as their specifications say, over raw HTTP and raw WebSocket.

Written from the ``engine.io-protocol`` and ``socket.io-protocol`` documents
(and the test suites beside them), with their heartbeat: pings every 300 ms,
200 ms to answer. Socket.IO packets go to the ``/echo`` namespace, whose view
sends every event back and answers its acknowledgement.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from urllib.parse import urlsplit

import pytest
import requests
import websocket

from .helpers import WAIT, ServerProcess, wait_until

PING_INTERVAL = 0.3
PING_TIMEOUT = 0.2
MAX_PAYLOAD = 64 * 1024  # SOCKETIO_MAX_PAYLOAD's default
SPEC_ENV = {"SOCKETIO_PING_INTERVAL": str(PING_INTERVAL), "SOCKETIO_PING_TIMEOUT": str(PING_TIMEOUT)}
ENGINE = "/socket.io/?EIO=4"


@pytest.fixture(scope="module")
def spec_server(tmp_path_factory):
    """One server with the specification test suites' heartbeat, shared by this module's tests."""
    process = ServerProcess(tmp_path_factory.mktemp("protocol"), env=SPEC_ENV).start()
    yield process
    process.stop()


# -- raw clients ---------------------------------------------------------


def open_polling(server: ServerProcess) -> tuple[str, float]:
    """A long-polling handshake: the session id, and when its answer came (time.monotonic)."""
    response = requests.get(f"{server.url}{ENGINE}&transport=polling", timeout=WAIT)
    assert response.status_code == 200, response.text
    assert response.text.startswith("0"), response.text
    return json.loads(response.text[1:])["sid"], time.monotonic()


def session_url(server: ServerProcess, sid: str) -> str:
    return f"{server.url}{ENGINE}&transport=polling&sid={sid}"


def ws_connect(server: ServerProcess, query: str = "&transport=websocket", **options) -> websocket.WebSocket:
    return websocket.create_connection(server.url.replace("http://", "ws://") + ENGINE + query, timeout=WAIT, **options)


def open_websocket(server: ServerProcess) -> tuple[websocket.WebSocket, dict]:
    """A WebSocket-only session and its open packet's payload."""
    ws = ws_connect(server)
    opened = ws.recv()
    assert opened.startswith("0{"), opened
    return ws, json.loads(opened[1:])


def next_packet(ws: websocket.WebSocket) -> str | bytes:
    """The next frame that is not a ping (pings are answered), within WAIT."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        frame = ws.recv()
        if frame == "2":
            ws.send("3")
            continue
        return frame
    raise AssertionError(f"only pings for {WAIT}s")


def connect_echo(ws: websocket.WebSocket, auth: str = "") -> str:
    """Connect to the /echo namespace; its Socket.IO session id."""
    ws.send("40/echo," + auth)
    answer = next_packet(ws)
    assert answer.startswith("40/echo,{"), answer
    return json.loads(answer[len("40/echo,") :])["sid"]


def closed_by_server(ws: websocket.WebSocket, answer_pings: bool = True) -> list:
    """Every frame until the server closes the connection (within WAIT)."""
    frames = []
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            frame = ws.recv()
            if frame == "2" and answer_pings:
                ws.send("3")
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return frames
        if not frame:
            return frames
        frames.append(frame)
    raise AssertionError(f"still open after {WAIT}s; received {frames[-5:]}")


class PendingPoll:
    """A long-polling GET sent now and answered later, on a connection of its own."""

    def __init__(self, server: ServerProcess, sid: str) -> None:
        self.server = server
        self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
        self.connection.request("GET", urlsplit(session_url(server, sid))._replace(scheme="", netloc="").geturl())

    def wait_until_read(self) -> None:
        """Until the server has read the whole request (nothing left in its socket's receive queue)."""
        local_port = self.connection.sock.getsockname()[1]

        def read() -> bool:
            listing = subprocess.run(
                ["ss", "-tnH", "state", "established", f"( sport = :{self.server.port} and dport = :{local_port} )"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            return bool(listing) and listing[0] == "0"  # Recv-Q

        wait_until(read, what="the server to read the poll")

    def answer(self) -> tuple[int, str]:
        response = self.connection.getresponse()
        body = response.read().decode()
        self.connection.close()
        return response.status, body


# -- handshake -----------------------------------------------------------


def test_polling_handshake_announces_the_session_and_the_heartbeat_in_milliseconds(spec_server):
    response = requests.get(f"{spec_server.url}{ENGINE}&transport=polling", timeout=WAIT)
    assert response.status_code == 200
    opened = json.loads(response.text[1:])
    assert response.text[0] == "0"
    assert set(opened) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    assert isinstance(opened["sid"], str)
    assert opened["upgrades"] == ["websocket"]
    # Rule 1: a sub-second interval is announced as it is, not truncated to whole seconds (0).
    assert opened["pingInterval"] == 300
    assert opened["pingTimeout"] == 200
    assert opened["maxPayload"] == MAX_PAYLOAD


def test_websocket_handshake_announces_no_upgrades_and_the_heartbeat_in_milliseconds(spec_server):
    ws, opened = open_websocket(spec_server)
    ws.close()
    assert set(opened) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    assert opened["upgrades"] == []
    assert (opened["pingInterval"], opened["pingTimeout"], opened["maxPayload"]) == (300, 200, MAX_PAYLOAD)


@pytest.mark.parametrize("query", ["", "&transport=abc"], ids=["no transport", "unknown transport"])
def test_handshake_without_a_valid_transport_is_refused(spec_server, query):
    # Rule 2: "transport" is mandatory; python-engineio took a missing one for "polling".
    assert requests.get(f"{spec_server.url}{ENGINE}{query}", timeout=WAIT).status_code == 400


@pytest.mark.parametrize("query", ["?transport=polling", "?EIO=abc&transport=polling", "?EIO=3&transport=polling"])
def test_handshake_without_protocol_version_4_is_refused(spec_server, query):
    assert requests.get(f"{spec_server.url}/socket.io/{query}", timeout=WAIT).status_code == 400


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_handshake_with_another_method_than_get_is_refused_with_400(spec_server, method):
    # Rule 2: 400, not python-engineio's 405.
    response = requests.request(method, f"{spec_server.url}{ENGINE}&transport=polling", timeout=WAIT)
    assert response.status_code == 400


@pytest.mark.parametrize("query", ["?transport=websocket", "?EIO=abc&transport=websocket", "?EIO=4"])
def test_websocket_handshake_without_valid_parameters_is_closed(spec_server, query):
    url = spec_server.url.replace("http://", "ws://") + "/socket.io/" + query
    try:
        ws = websocket.create_connection(url, timeout=WAIT)
    except websocket.WebSocketBadStatusException as refused:
        assert refused.status_code == 400
    else:  # gevent-websocket answers the WebSocket handshake before the application sees it
        assert closed_by_server(ws) == []


def test_unknown_session_is_refused(spec_server):
    url = session_url(spec_server, "nosuchsession")
    assert requests.get(url, timeout=WAIT).status_code == 400
    assert requests.post(url, data="3", timeout=WAIT).status_code == 400


# -- messages over long-polling ------------------------------------------


def test_post_is_answered_ok_and_packets_come_back_in_one_payload(spec_server):
    sid, _ = open_polling(spec_server)
    url = session_url(spec_server, sid)
    posted = requests.post(url, data="40/echo,", timeout=WAIT)
    assert (posted.status_code, posted.text) == (200, "ok")
    assert requests.get(url, timeout=WAIT).text.startswith("40/echo,{")
    body = '42/echo,["one"]\x1e42/echo,["two"]\x1e42/echo,["three"]'
    assert requests.post(url, data=body, timeout=WAIT).text == "ok"
    received: list[str] = []
    while len([p for p in received if p.startswith("42")]) < 3:
        received += requests.get(url, timeout=WAIT).text.split("\x1e")
    events = [p for p in received if p.startswith("42")]
    assert events == ['42/echo,["one"]', '42/echo,["two"]', '42/echo,["three"]']


def test_binary_attachments_over_polling_are_base64_with_a_b_prefix(spec_server):
    sid, _ = open_polling(spec_server)
    url = session_url(spec_server, sid)
    requests.post(url, data="40/echo,", timeout=WAIT)
    assert requests.get(url, timeout=WAIT).text.startswith("40/echo,{")
    event = '451-/echo,["bytes",{"_placeholder":true,"num":0}]'
    assert requests.post(url, data=event + "\x1ebAQIDBA==", timeout=WAIT).text == "ok"
    received: list[str] = []
    while "bAQIDBA==" not in received:
        received += [p for p in requests.get(url, timeout=WAIT).text.split("\x1e") if p != "2"]
    assert received[received.index("bAQIDBA==") - 1] == event


def test_a_second_pending_poll_is_refused_and_closes_the_session(spec_server):
    sid, _ = open_polling(spec_server)
    requests.post(session_url(spec_server, sid), data="40/echo,", timeout=WAIT)
    requests.get(session_url(spec_server, sid), timeout=WAIT)  # the CONNECT
    first = PendingPoll(spec_server, sid)
    first.wait_until_read()
    assert requests.get(session_url(spec_server, sid), timeout=WAIT).status_code == 400
    status, body = first.answer()
    assert (status, body) == (200, "1")
    assert requests.get(session_url(spec_server, sid), timeout=WAIT).status_code == 400


# -- heartbeat -----------------------------------------------------------


def test_polling_heartbeat_pings_and_takes_pongs(spec_server):
    sid, _ = open_polling(spec_server)
    url = session_url(spec_server, sid)
    for _ in range(3):
        poll = requests.get(url, timeout=WAIT)
        assert (poll.status_code, poll.text) == (200, "2")
        assert requests.post(url, data="3", timeout=WAIT).status_code == 200


def test_polling_session_that_missed_its_pong_is_closed_and_its_poll_refused(spec_server):
    sid, opened_at = open_polling(spec_server)
    # Rule 3: the ping went out at 300 ms and its pong was due by 500 ms. The client polls
    # only then (as the specification's test suite does): the server must have given up on it,
    # not hand it the ping; python-engineio looked only every pingTimeout, and served the "2".
    time.sleep(max(0.0, opened_at + PING_INTERVAL + PING_TIMEOUT - time.monotonic()))
    poll = requests.get(session_url(spec_server, sid), timeout=WAIT)
    assert poll.status_code == 400, poll.text


def test_polling_session_that_misses_its_pong_is_closed_on_time(spec_server):
    """A pending poll gets the server's CLOSE once the pong is late, whatever else the server does."""
    sid, _ = open_polling(spec_server)
    url = session_url(spec_server, sid)
    assert requests.get(url, timeout=WAIT).text == "2"  # the ping, not answered
    started = time.monotonic()
    poll = requests.get(url, timeout=WAIT)
    assert (poll.status_code, poll.text) == (200, "1")
    assert time.monotonic() - started < PING_TIMEOUT + 1
    assert requests.get(url, timeout=WAIT).status_code == 400


def test_websocket_heartbeat_pings_and_takes_pongs(spec_server):
    ws, _ = open_websocket(spec_server)
    started = time.monotonic()
    for _ in range(3):
        assert ws.recv() == "2"
        ws.send("3")
    # Three pings, one interval apart (the session lives on: each pong was on time).
    assert time.monotonic() - started >= 3 * PING_INTERVAL - 0.05
    connect_echo(ws)
    ws.close()


def test_websocket_that_does_not_answer_pings_is_closed(spec_server):
    ws, _ = open_websocket(spec_server)
    started = time.monotonic()
    frames = closed_by_server(ws, answer_pings=False)
    assert frames[0] == "2"
    assert time.monotonic() - started < PING_INTERVAL + PING_TIMEOUT + 1


# -- close ---------------------------------------------------------------


def test_client_close_answers_the_pending_poll_with_a_noop_and_ends_the_session(spec_server):
    sid, _ = open_polling(spec_server)
    url = session_url(spec_server, sid)
    pending = PendingPoll(spec_server, sid)
    pending.wait_until_read()
    assert requests.post(url, data="1", timeout=WAIT).status_code == 200
    # Rule 4: the pending poll ends with a NOOP ("6"), not an empty body.
    assert pending.answer() == (200, "6")
    assert requests.get(url, timeout=WAIT).status_code == 400


def test_client_close_over_websocket_closes_the_connection(spec_server):
    ws, _ = open_websocket(spec_server)
    connect_echo(ws)
    ws.send("1")
    closed_by_server(ws)


# -- upgrade -------------------------------------------------------------


def test_upgrade_from_polling_to_websocket(spec_server):
    sid, _ = open_polling(spec_server)
    url = session_url(spec_server, sid)
    requests.post(url, data="40/echo,", timeout=WAIT)
    assert requests.get(url, timeout=WAIT).text.startswith("40/echo,{")
    pending = PendingPoll(spec_server, sid)
    pending.wait_until_read()
    ws = ws_connect(spec_server, f"&transport=websocket&sid={sid}")
    ws.send("2probe")
    assert ws.recv() == "3probe"
    # The pending poll is ended cleanly, so the client can pause polling.
    status, body = pending.answer()
    assert status == 200 and body.split("\x1e")[-1] == "6", body
    ws.send("5")
    ws.send('42/echo,["after upgrade"]')
    assert next_packet(ws) == '42/echo,["after upgrade"]'
    assert requests.get(url, timeout=WAIT).status_code == 400
    ws.close()


def test_packets_sent_during_the_upgrade_arrive_over_the_websocket(spec_server):
    sid, _ = open_polling(spec_server)
    url = session_url(spec_server, sid)
    requests.post(url, data="40/echo,", timeout=WAIT)
    assert requests.get(url, timeout=WAIT).text.startswith("40/echo,{")
    ws = ws_connect(spec_server, f"&transport=websocket&sid={sid}")
    ws.send("2probe")
    assert ws.recv() == "3probe"
    requests.post(url, data='42/echo,["during upgrade"]', timeout=WAIT)  # polling still sends until "5"
    ws.send("5")
    assert next_packet(ws) == '42/echo,["during upgrade"]'
    ws.close()


def test_poll_after_a_completed_upgrade_is_refused(spec_server):
    # Rule 5, the specification's "ignores HTTP requests with same sid after upgrade": the
    # WebSocket's "2probe" and "5" reach the server before the poll, so the poll must find
    # the session upgraded. Several sessions, since handling them in the wrong order is a race.
    for attempt in range(10):
        sid, _ = open_polling(spec_server)
        ws = ws_connect(spec_server, f"&transport=websocket&sid={sid}")
        ws.send("2probe")
        ws.send("5")
        poll = requests.get(session_url(spec_server, sid), timeout=WAIT)
        assert poll.status_code == 400, (attempt, poll.status_code, poll.text)
        assert next_packet(ws) == "3probe"
        connect_echo(ws)
        ws.close()


def test_second_websocket_after_the_upgrade_is_closed(spec_server):
    sid, _ = open_polling(spec_server)
    ws = ws_connect(spec_server, f"&transport=websocket&sid={sid}")
    ws.send("2probe")
    assert ws.recv() == "3probe"
    ws.send("5")
    connect_echo(ws)
    try:
        second = ws_connect(spec_server, f"&transport=websocket&sid={sid}")
    except websocket.WebSocketBadStatusException as refused:
        assert refused.status_code == 400
    else:
        closed_by_server(second)
    ws.send('42/echo,["still here"]')
    assert next_packet(ws) == '42/echo,["still here"]'
    ws.close()


def test_second_websocket_during_the_upgrade_is_closed(spec_server):
    sid, _ = open_polling(spec_server)
    ws = ws_connect(spec_server, f"&transport=websocket&sid={sid}")
    ws.send("2probe")
    assert ws.recv() == "3probe"
    second = ws_connect(spec_server, f"&transport=websocket&sid={sid}")
    assert closed_by_server(second) == []
    ws.send("5")  # the first one completes the upgrade
    connect_echo(ws)
    ws.close()


# -- Socket.IO: connect, disconnect, events, acknowledgements, binary ------


def test_connect_to_the_main_namespace_gets_a_session_id(spec_server):
    ws, _ = open_websocket(spec_server)
    ws.send("40")
    answer = next_packet(ws)
    assert answer.startswith("40{"), answer
    assert set(json.loads(answer[2:])) == {"sid"}
    ws.close()


@pytest.mark.parametrize("auth", ["", '{"token":"abc"}'], ids=["no payload", "payload"])
def test_connect_to_a_custom_namespace_gets_a_session_id(spec_server, auth):
    ws, opened = open_websocket(spec_server)
    ws.send("40/echo," + auth)
    answer = next_packet(ws)
    assert answer.startswith("40/echo,{"), answer
    handshake = json.loads(answer[len("40/echo,") :])
    assert set(handshake) == {"sid"} and handshake["sid"] != opened["sid"]
    ws.close()


def test_connect_to_an_unknown_namespace_is_refused_with_a_message(spec_server):
    ws, _ = open_websocket(spec_server)
    ws.send("40/random,")
    answer = next_packet(ws)
    assert answer.startswith("44/random,{"), answer
    assert isinstance(json.loads(answer[len("44/random,") :])["message"], str)
    connect_echo(ws)  # the session itself stays usable
    ws.close()


@pytest.mark.parametrize("frame", ["4abc", "40/echo,{oops", '42/echo,["too early"]'])
def test_session_that_does_not_connect_first_is_closed(spec_server, frame):
    ws, _ = open_websocket(spec_server)
    ws.send(frame)
    assert not [f for f in closed_by_server(ws) if f.startswith("4")]


def test_session_that_never_connects_to_a_namespace_is_closed_after_the_connect_timeout(fresh_server, tmp_path):
    # Rule 6: SOCKETIO_CONNECT_TIMEOUT is a Django setting (45 s by default, as Node's connectTimeout).
    (tmp_path / "protocol_settings.py").write_text(
        "from project.settings import *  # noqa\nSOCKETIO_CONNECT_TIMEOUT = 1\n"
    )
    server = fresh_server(DJANGO_SETTINGS_MODULE="protocol_settings", PYTHONPATH=str(tmp_path))
    idle, _ = open_websocket(server)
    connected, _ = open_websocket(server)
    connect_echo(connected)
    sid, started = open_polling(server)

    # The pending poll ends with the server's CLOSE when the time is up (pings come only after 25 s).
    assert requests.get(session_url(server, sid), timeout=WAIT).text == "1"
    assert 1 - 0.1 < time.monotonic() - started < WAIT
    assert requests.get(session_url(server, sid), timeout=WAIT).status_code == 400
    assert closed_by_server(idle) == ["1"]
    # A session connected to a namespace stays (and keeps answering).
    connected.send('42/echo,["still connected"]')
    assert next_packet(connected) == '42/echo,["still connected"]'
    connected.close()


def test_disconnect_from_a_namespace_keeps_the_session(spec_server):
    ws, _ = open_websocket(spec_server)
    first = connect_echo(ws)
    ws.send("41/echo,")
    ws.send('42/echo,["to a namespace left"]')  # not echoed: the namespace is left
    assert connect_echo(ws) != first  # the session is still open, and takes a new connection
    ws.send('42/echo,["back"]')
    assert next_packet(ws) == '42/echo,["back"]'
    ws.close()


def test_events_come_back_as_sent(spec_server):
    ws, _ = open_websocket(spec_server)
    connect_echo(ws)
    ws.send('42/echo,["message",1,"2",{"3":[true]}]')
    assert next_packet(ws) == '42/echo,["message",1,"2",{"3":[true]}]'
    ws.close()


def test_event_with_an_id_is_acknowledged_with_that_id(spec_server):
    ws, _ = open_websocket(spec_server)
    connect_echo(ws)
    ws.send('42/echo,456["message-with-ack",1,"2",{"3":[false]}]')
    assert next_packet(ws) == '42/echo,["message-with-ack",1,"2",{"3":[false]}]'
    assert next_packet(ws) == '43/echo,456[{"echoed":"message-with-ack","user":null}]'
    ws.close()


def test_binary_event_with_attachments_and_an_ack(spec_server):
    ws, _ = open_websocket(spec_server)
    connect_echo(ws)
    ws.send('452-/echo,789["bytes",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
    ws.send_binary(bytes([1, 2, 3]))
    ws.send_binary(bytes([4, 5, 6]))
    assert next_packet(ws) == '452-/echo,["bytes",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
    assert next_packet(ws) == bytes([1, 2, 3])
    assert next_packet(ws) == bytes([4, 5, 6])
    assert next_packet(ws) == '43/echo,789[{"echoed":"bytes","user":null}]'
    ws.close()


@pytest.mark.parametrize("frame", ["4abc", "42/echo,{}", '42/echo,abc["message",1]', "42/echo,[]"])
def test_malformed_socketio_packet_closes_the_connection(spec_server, frame):
    ws, _ = open_websocket(spec_server)
    connect_echo(ws)
    ws.send(frame)
    closed_by_server(ws)


def test_connected_websocket_survives_many_heartbeats(spec_server):
    """Pings keep coming at the interval, and the session stays as long as it answers them."""
    ws, _ = open_websocket(spec_server)
    connect_echo(ws)
    pings = 0
    started = time.monotonic()
    while pings < 5:
        frame = ws.recv()
        assert frame == "2", frame
        pings += 1
        ws.send("3")
    assert time.monotonic() - started < 5 * (PING_INTERVAL + PING_TIMEOUT)
    ws.send('42/echo,["alive"]')
    assert next_packet(ws) == '42/echo,["alive"]'
    ws.close()
