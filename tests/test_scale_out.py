"""Many processes, one chat: Gunicorn workers on one port and a second instance, sharing one Redis."""

from __future__ import annotations

import os
import signal
import threading

import requests

from socketio_django.sessions import owner_of

from .helpers import Client, Instance, RawSocket, wait_until
from .test_operations import metric_values


def raw_sockets_on_every_worker(instance: Instance, room: str, prefix: str) -> list[RawSocket]:
    """Raw WebSocket listeners in ``room``, opened until every worker of ``instance`` has one."""
    listeners: list[RawSocket] = []
    tokens = set(instance.workers()) or {None}
    while {owner_of(listener.engine_id) for listener in listeners} < tokens and len(listeners) < 40:
        listeners.append(RawSocket(instance.url, {"room": room, "name": f"{prefix}{len(listeners)}"}))
    return listeners


def test_every_client_of_every_worker_and_instance_gets_every_message_in_one_order(instances, clients, room):
    first, second = instances(workers=3), instances(workers=1)
    listeners = raw_sockets_on_every_worker(first, room, "raw-a") + raw_sockets_on_every_worker(second, room, "raw-b")
    assert len({owner_of(listener.engine_id) for listener in listeners}) == 4  # three workers and one process
    senders = [
        clients.join(instance.url, room, f"{transport}-{n}", transport)
        for n, instance in enumerate((first, second))
        for transport in ("polling", "websocket", "upgrade")
    ]
    # Whoever joins finds everyone in its welcome, whichever process each of them is on.
    latecomer = clients.join(first.url, room, "latecomer", "polling")
    everyone = {listener.auth["name"] for listener in listeners} | {name_of(sender) for sender in senders}
    assert set(latecomer.received("welcome")[0]["online"]) == everyone | {"latecomer"}

    # All send at once, from every process: python-socketio's local-first delivery would show
    # the clients of different processes different orders.
    acknowledged: dict[str, list[int]] = {}

    def send(sender: Client) -> None:
        acknowledged[name_of(sender)] = [sender.say(f"{name_of(sender)} {n}")["id"] for n in range(10)]

    threads = [threading.Thread(target=send, args=(sender,)) for sender in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every_id = sorted(id for ids in acknowledged.values() for id in ids)

    orders = [[message["id"] for message in listener.next_events(len(every_id), "message")] for listener in listeners]
    assert sorted(orders[0]) == every_id
    assert all(order == orders[0] for order in orders), "clients of different processes saw different orders"
    for sender in senders:
        others = sorted(id for name, ids in acknowledged.items() if name != name_of(sender) for id in ids)
        assert sorted(sender.wait_for("message")["id"] for _ in others) == others
    for listener in listeners:
        listener.close()


def name_of(client: Client) -> str:
    return client.connect_options["auth"]["name"]


def test_fifty_polling_clients_on_three_workers_lose_nothing_and_never_see_invalid_session(instances, clients, room):
    server = instances(workers=3)
    pollers = [clients.join(server.url, room, f"poller-{n}", "polling") for n in range(50)]
    ids = [poller.say(f"from {n}")["id"] for n, poller in enumerate(pollers)]

    for n, poller in enumerate(pollers):
        others = sorted(ids[:n] + ids[n + 1 :])
        assert sorted(poller.wait_for("message")["id"] for _ in others) == others
    log = server.log()
    assert "Invalid session" not in log and '" 400 ' not in log
    # Some requests did land on a worker that did not own their session, and were handed over.
    assert metric_values(server)["socketio_handed_over_requests_total"] > 0


def test_metrics_add_up_every_worker(instances, clients, room):
    server = instances(workers=3)
    for n in range(12):
        clients.join(server.url, room, f"counted-{n}", "websocket")
    # Each scrape is a new connection, answered by whichever worker the kernel picks.
    scrapes = [metric_values(server) for _ in range(6)]
    assert {scrape["socketio_connected_clients"] for scrape in scrapes} == {12}
    assert {scrape["socketio_connections_total"] for scrape in scrapes} == {12}


def test_redis_restarted_mid_chat_the_processes_reconnect_and_messages_cross_again(
    instances, redis_server, clients, room
):
    first = instances(workers=None, CHAT_PRESENCE_TTL="3")  # with REDIS_URL: one worker per core
    assert len(first.workers()) == os.cpu_count()
    second = instances(workers=1, CHAT_PRESENCE_TTL="3")
    alice = clients.join(first.url, room, "alice")
    bob = clients.join(second.url, room, "bob", "polling")
    alice.say("before")
    assert bob.wait_for("message")["text"] == "before"

    redis_server.kill()
    health = requests.get(second.url + "/healthz", timeout=10)
    assert (health.status_code, health.json()["status"], health.json()["redis"]) == (200, "degraded", "error")
    # Messages are still stored and acknowledged while Redis is away.
    during = bob.say("during the outage")
    assert during["ok"] is True

    redis_server.start()  # empty: what presence wrote there is gone too
    # Every process that lost its subscriber (those with clients: an idle worker has none yet) says it is back.
    for instance in (first, second):
        wait_until(lambda instance=instance: resubscribed(instance), timeout=20, what="every process to resubscribe")
    assert requests.get(second.url + "/healthz", timeout=10).json()["redis"] == "ok"
    alice.say("after")
    assert bob.wait_for("message", lambda message: message["text"] == "after")
    bob.say("after, too")
    assert alice.wait_for("message", lambda message: message["text"] == "after, too")
    # Each process writes its own users back to the emptied Redis.
    wait_until(
        lambda: {"alice", "bob"} <= set(clients.join(first.url, room, "carol").received("welcome")[0]["online"]),
        what="presence written again",
    )
    reader = clients.join(second.url, room, "reader")
    assert "during the outage" in [message["text"] for message in reader.received("history")[0]]


def resubscribed(instance: Instance) -> bool:
    log = instance.log()
    return log.count("Redis subscriber reconnected") == log.count("Redis subscriber connection lost") > 0


def test_a_silent_redis_connection_is_noticed_and_replaced(instances, redis_server, clients, room):
    first = instances(workers=1, SOCKETIO_REDIS_HEALTH_INTERVAL="0.3")
    second = instances(workers=1, SOCKETIO_REDIS_HEALTH_INTERVAL="0.3")
    alice, bob = clients.join(first.url, room, "alice"), clients.join(second.url, room, "bob")

    redis_server.pause()  # its connections stay open; nothing answers
    for instance in (first, second):
        wait_until(lambda instance=instance: "no answer from Redis" in instance.log(), what="the silence noticed")
    redis_server.resume()
    for instance in (first, second):
        wait_until(lambda instance=instance: resubscribed(instance), what="a new subscriber connection")
    alice.say("still heard")
    assert bob.wait_for("message", lambda message: message["text"] == "still heard")


def test_a_killed_worker_s_clients_reconnect_and_its_users_leave_the_online_list(instances, clients, room):
    server = instances(workers=3, CHAT_PRESENCE_TTL="3")
    returning = clients.adopt(Client(server.url, "websocket", reconnect=True, auth={"room": room, "name": "returning"}))
    returning.connect().wait_for("welcome")
    victim = owner_of(returning.sio.eio.sid)
    # A user on the same worker whose client will not come back, and one on another worker.
    users = [RawSocket(server.url, {"room": room, "name": f"user-{n}"}) for n in range(30)]
    ghost = next(user for user in users if owner_of(user.engine_id) == victim)
    survivor = next(user for user in users if owner_of(user.engine_id) != victim)
    for user in users:
        if user not in (ghost, survivor):
            user.close()
    watcher = clients.join(server.url, room, "watcher")
    assert {"returning", ghost.auth["name"], survivor.auth["name"]} <= set(watcher.received("welcome")[0]["online"])

    os.kill(server.workers()[victim], signal.SIGKILL)
    returning.wait_for("disconnect")
    returning.wait_for("welcome", timeout=20)  # reconnected to a live worker (or the one Gunicorn starts)
    assert owner_of(returning.sio.eio.sid) != victim

    def online_now() -> set[str]:
        return set(clients.join(server.url, room, "looker").received("welcome")[0]["online"])

    wait_until(lambda: ghost.auth["name"] not in online_now(), timeout=15, what="the ghost to expire")
    assert {"returning", survivor.auth["name"]} <= online_now()
    assert "removed its" in server.log()
