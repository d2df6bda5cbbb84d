"""The chat on PostgreSQL (``DATABASE_URL``): history, acks, broadcasts, several workers, slow queries, connections."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from .helpers import WAIT, RawSocket, wait_until

# A socket view that runs ``SELECT pg_sleep(seconds)`` for each event and answers with psycopg's wait
# function: written into the test's directory, on top of tests/urls.py (the chat stays at /socket.io/).
SLOW_URLS = """
import psycopg.waiting
from django.db import connection
from django.http import HttpResponse
from django.urls import path

from tests.urls import urlpatterns as test_urlpatterns


def slow_socket(request):
    socket = request.environ["socketio"]
    while (message := socket.recv()) is not None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(%s)", [float(message.data)])
        message.reply(psycopg.waiting.wait.__name__)
    return HttpResponse(status=204)


urlpatterns = [path("socket.io/slow/", slow_socket), *test_urlpatterns]
"""


@pytest.fixture
def database_url(postgres) -> str:
    """A new, empty PostgreSQL database for this test."""
    return postgres.create_database()


@pytest.fixture
def slow_server(fresh_server, database_url, tmp_path):
    """A chat server on PostgreSQL with a ``/slow`` namespace whose events each run a slow query."""

    def start(**env: str):
        (tmp_path / "slow_urls.py").write_text(SLOW_URLS)
        (tmp_path / "slow_settings.py").write_text("from tests.settings import *  # noqa\nROOT_URLCONF = 'slow_urls'\n")
        return fresh_server(
            DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="slow_settings", PYTHONPATH=str(tmp_path), **env
        )

    return start


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_messages_history_and_broadcasts_are_stored_in_postgres(
    fresh_server, postgres, database_url, clients, room, transport
):
    server = fresh_server(DATABASE_URL=database_url)
    assert requests.get(server.url + "/healthz", timeout=WAIT).json()["database"] == "ok"
    alice = clients.join(server.url, room, "alice", transport)
    bob = clients.join(server.url, room, "bob", transport)

    acks = [alice.say(f"hello {n}") for n in range(20)]
    # The ack comes after the commit: another connection already sees the row.
    stored = postgres.execute(
        "SELECT id, name, text FROM chatroom_message ORDER BY id", database=database_url.rsplit("/", 1)[1]
    )
    assert stored == [(ack["id"], "alice", f"hello {n}") for n, ack in enumerate(acks)]
    assert [bob.wait_for("message")["id"] for _ in acks] == [ack["id"] for ack in acks]

    server.stop()
    server.start()  # migrations find nothing to do; the history is still there
    history = clients.join(server.url, room, "reader", transport).wait_for("history")
    assert [message["text"] for message in history] == [f"hello {n}" for n in range(5, 20)]


def test_gunicorn_workers_share_one_postgres(instances, clients, database_url, room):
    server = instances(workers=3, DATABASE_URL=database_url)
    senders = [
        clients.join(server.url, room, f"{transport}-{n}", transport)
        for n in range(3)
        for transport in ("websocket", "polling")
    ]
    ids = [sender.say(f"from sender {n}")["id"] for n, sender in enumerate(senders)]
    for n, sender in enumerate(senders):
        assert sorted(sender.wait_for("message")["id"] for _ in range(len(ids) - 1)) == sorted(ids[:n] + ids[n + 1 :])
    history = clients.join(server.url, room, "latecomer", "polling").wait_for("history")
    assert [message["id"] for message in history] == sorted(ids)
    assert requests.get(server.url + "/healthz", timeout=WAIT).json()["database"] == "ok"


# Long enough that the chat (three rounds 0.3 s apart, 50 clients' threads in this process, on 2
# shared cores) ends well within it.
SLOW_QUERY = 4.0


def chat_during_a_slow_query(server, clients, postgres, room, seconds: float = SLOW_QUERY) -> dict:
    """50 clients chat (3 messages each, 0.3 s apart) while another client's view waits on ``pg_sleep``.

    Each in a room of its own: in one room, each message's 50 deliveries (a thread each in
    python-socketio's client) loaded this test's process more than the server, and set the acks' pace.
    """
    chatters = [clients.join(server.url, f"{room}-{n}", f"chatter-{n}") for n in range(50)]
    sleeper = clients(server.url, namespace="/slow")
    result: dict = {"latencies": []}

    def sleep() -> None:
        started = time.monotonic()
        result["wait"] = sleeper.call("sleep", seconds, timeout=WAIT)
        result["slow query answered"] = time.monotonic()
        result["slow query took"] = time.monotonic() - started

    def chat(chatter, n: int) -> None:
        time.sleep(n * 0.006)  # staggered, as people are
        for n in range(3):
            time.sleep(0.3)
            sent = time.monotonic()
            assert chatter.say(f"during the slow query {n}")["ok"]
            result["latencies"].append(time.monotonic() - sent)

    threading.Thread(target=sleep).start()
    wait_until(
        lambda: postgres.execute(
            "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%%' AND state = 'active'"
        ),
        what="the slow query running",
    )
    threads = [threading.Thread(target=chat, args=(chatter, n)) for n, chatter in enumerate(chatters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result["chat done"] = time.monotonic()
    wait_until(lambda: "wait" in result, what="the slow query's answer")
    return result


def test_a_slow_query_does_not_stall_the_other_clients(slow_server, clients, postgres, room):
    result = chat_during_a_slow_query(slow_server(), clients, postgres, room)
    latencies = sorted(result["latencies"])
    print(
        f"acks during pg_sleep({SLOW_QUERY:g}): median {latencies[len(latencies) // 2]:.3f} s,",
        f"max {latencies[-1]:.3f} s;",
        f"slow query {result['slow query took']:.2f} s, wait={result['wait']}",
    )
    assert result["wait"] == "wait_poll"  # psycopg saw gevent's patches and waits with its poll()
    assert len(latencies) == 150
    assert result["chat done"] < result["slow query answered"]  # all 150 acks came while the query ran
    assert latencies[-1] < SLOW_QUERY / 3  # a worker blocked by the query would hold some for seconds


def test_the_measurement_catches_a_driver_that_blocks_the_worker(slow_server, clients, postgres, room):
    # psycopg's C wait function (its choice without gevent) blocks the whole process while it waits.
    result = chat_during_a_slow_query(slow_server(PSYCOPG_WAIT_FUNC="wait_c"), clients, postgres, room)
    print(f"with wait_c: max ack {max(result['latencies']):.3f} s")
    assert result["wait"] == "wait_c"
    assert max(result["latencies"]) > SLOW_QUERY / 3


def connections_once_idle(postgres, database_url: str) -> int:
    """The chat's PostgreSQL connections once its views have given theirs back (its pool: 10 at most)."""
    wait_until(lambda: postgres.connections_to(database_url) <= 10, what="connections given back")
    return postgres.connections_to(database_url)


def test_clients_joining_and_speaking_at_once_queue_for_the_pools_connections(
    fresh_server, postgres, database_url, room
):
    server = fresh_server(DATABASE_URL=database_url, CHAT_DATABASE_POOL_SIZE="10")
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], postgres.connections_to(database_url))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    sockets = [RawSocket(server.url, {"room": room, "name": f"idle-{n}"}) for n in range(300)]
    for socket in sockets:
        socket.next_events(1, "welcome")
    peak_joining, peak[0] = peak[0], 0
    idle_after_joining = connections_once_idle(postgres, database_url)
    # Everyone speaks once, all at once; then they are idle again.
    acks = [socket.event_packet("message", "one each") for socket in sockets]
    for socket, (packet, _) in zip(sockets, acks, strict=True):
        socket.send(packet)
    assert all(socket.reply_to(ack_id)["ok"] for socket, (_, ack_id) in zip(sockets, acks, strict=True))
    idle_after_talking = connections_once_idle(postgres, database_url)
    stop.set()
    sampler.join()
    # 300 messages at once took one connection each (past PostgreSQL's default max_connections, 100):
    # now they queue for the pool's, and every one is stored.
    assert peak_joining <= 10 and peak[0] <= 10, (peak_joining, peak[0])
    print(
        f"300 clients: peak {peak_joining} connections joining, {peak[0]} talking;",
        f"{idle_after_joining} once idle after joining, {idle_after_talking} after talking",
    )
    for socket in sockets:
        socket.close()


def test_connections_postgres_closed_are_replaced_before_a_message_needs_them(
    fresh_server, postgres, database_url, clients, room
):
    server = fresh_server(DATABASE_URL=database_url)
    talkers = [clients.join(server.url, room, f"talker-{n}") for n in range(5)]
    for talker in talkers:
        talker.say("before")
    wait_until(lambda: postgres.connections_to(database_url) <= 8, what="connections given back")
    time.sleep(1.5)  # every view idle: their connections are in the free list
    assert postgres.terminate_connections_to(database_url) > 0  # as a restart of PostgreSQL would
    for talker in talkers:
        assert talker.say("after")["ok"]
    assert requests.get(server.url + "/healthz", timeout=WAIT).json()["database"] == "ok"
