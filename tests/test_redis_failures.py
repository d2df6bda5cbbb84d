"""What goes wrong between processes and Redis: a frozen or far Redis, tricky names, a lost update, a late reaper."""

from __future__ import annotations

import threading

import redis

from chatroom.presence_redis import RedisPresence

from .helpers import RawSocket, wait_until
from .services import DelayingProxy


def texts_until(listener: RawSocket, marker: str) -> list[str]:
    """The ``message`` texts ``listener`` gets, up to ``marker`` (everything sent before it has arrived)."""
    while marker not in (texts := [message["text"] for message in listener.events("message")]):
        listener.next_events(1, "message")
    return texts


def test_a_publish_that_times_out_is_not_delivered_twice(instances, redis_server, room):
    first, second = instances(workers=1), instances(workers=1)
    alice, carol = (RawSocket(first.url, {"room": room, "name": name}) for name in ("alice", "carol"))
    bob = RawSocket(second.url, {"room": room, "name": "bob"})
    for listener in (alice, bob, carol):
        listener.next_events(1, "welcome")
    alice.call("message", "warm-up")
    for listener in (bob, carol):
        texts_until(listener, "warm-up")
    redis_server.pause()  # the publish goes out, and waits past its 2 s timeout for an answer
    alice.call("message", "once")
    wait_until(lambda: "Redis did not take an emit" in first.log(), what="the publish to time out")
    redis_server.resume()  # Redis runs the publish it had: a retry (or a local delivery) would repeat it
    alice.call("message", "marker")
    for listener in (bob, carol):
        assert texts_until(listener, "marker") == ["warm-up", "once", "marker"]


def test_a_second_joiner_waits_for_the_room_s_subscription_too(instances, redis_server, room):
    proxy = DelayingProxy(redis_server.port, 0.3)  # the far process's Redis answers 0.3 s late
    try:
        near, far = instances(workers=1), instances(workers=1, REDIS_URL=proxy.url)
        sender = RawSocket(near.url, {"room": room, "name": "sender"})
        RawSocket(far.url, {"room": room + "-elsewhere", "name": "elsewhere"})  # the far process is connected
        acknowledged: list[int] = []
        stop = threading.Event()

        def send() -> None:
            while not stop.is_set():
                acknowledged.append(sender.call("message", f"m{len(acknowledged)}")["id"])

        thread = threading.Thread(target=send)
        thread.start()
        try:
            first = RawSocket(far.url, {"room": room, "name": "first"})  # subscribes, waits for Redis
            second = RawSocket(far.url, {"room": room, "name": "second"})  # while that is unconfirmed
            for joiner in (first, second):
                joiner.next_events(1, "welcome")
        finally:
            stop.set()
            thread.join()
        sender.call("message", "marker")
        for joiner in (first, second):
            texts_until(joiner, "marker")
            history = [message["id"] for message in joiner.events("history")[0]]
            live = {message["id"] for message in joiner.events("message")}
            lost = [id for id in acknowledged if id > max(history, default=0) and id not in live]
            assert lost == [], f"{joiner.auth['name']} lost messages sent after its history"
    finally:
        proxy.stop()


def test_a_namespace_named_like_a_room_channel_cuts_nobody_off(instances, room):
    first, second = instances(workers=1), instances(workers=1)
    alice = RawSocket(first.url, {"room": room, "name": "alice"})
    bob = RawSocket(second.url, {"room": room, "name": "bob"})
    bob.call("message", "before")
    assert texts_until(alice, "before") == ["before"]
    # Namespace "/:<room>": a channel named "socketio:/:<room>" would be room <room>'s of namespace "/".
    attacker = RawSocket(first.url, {}, namespace=f"/:{room}")
    assert '"message":"Not Found"' in attacker.ws.recv()  # refused, and leaves again
    attacker.close()
    wait_until(lambda: f"namespace=/:{room}" in first.log(), what="the refusal")
    bob.call("message", "after")
    assert texts_until(alice, "after") == ["before", "after"]


def presence_pair(redis_server) -> tuple[RedisPresence, RedisPresence]:
    """Two processes' presence on one Redis, beating only when the test says."""
    pair = RedisPresence(redis_server.url, ttl=1), RedisPresence(redis_server.url, ttl=1)
    for presence in pair:
        presence._beating = threading.current_thread()  # no heartbeat thread: the test calls beat()
        presence.beat()
    return pair


def test_a_leave_whose_join_never_reached_redis_takes_nobody_else_away(redis_server):
    a, b = presence_pair(redis_server)
    b.enter("lobby", "bob")  # bob's tab on process B
    real_add = a._add

    def unreachable(**_):
        raise redis.ConnectionError("Redis unreachable")

    a._add = unreachable
    a.enter("lobby", "bob")  # bob's second tab, on A, while Redis cannot be reached
    a._add = real_add
    a.leave("lobby", "bob")  # that tab closes once Redis is back
    assert b.is_online("lobby", "bob") and b.names("lobby") == ["bob"]


def test_a_process_that_comes_back_just_as_it_is_reaped_keeps_its_users(redis_server):
    late, reaper = presence_pair(redis_server)
    late.enter("lobby", "carol")
    redis_server_client = redis.Redis.from_url(redis_server.url)
    redis_server_client.delete("chat:alive:" + late.process)  # it stalled past its time to live
    real_exists = reaper.redis.exists

    def exists(key: str) -> int:
        answer = real_exists(key)
        if key.endswith(late.process):
            late.beat()  # it renews (and writes its users again) between the reaper's look and its cleanup
        return answer

    reaper.redis.exists = exists
    reaper.beat()
    assert reaper.is_online("lobby", "carol")
