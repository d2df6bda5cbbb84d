"""Publishing from outside a chat connection: chatroom.publish, manage.py chat_say, POST /api/rooms/<room>/messages."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from .helpers import ROOT, WAIT, RawSocket, ServerProcess
from .test_scale_out import raw_sockets_on_every_worker

TOKEN = "tests-only-api-token"


def chat_say(server: ServerProcess, *args: str) -> subprocess.CompletedProcess:
    """``manage.py chat_say`` in a process of its own, with the server's settings (database, Redis)."""
    return subprocess.run(
        [sys.executable, "manage.py", "chat_say", *args], cwd=ROOT, env=server.env, capture_output=True, text=True
    )


def publish_from_a_script(server: ServerProcess, room: str, text: str, name: str) -> int:
    """``chatroom.publish`` called by a plain Python script set up with the project's settings."""
    script = (
        "import sys, django; django.setup(); import chatroom; "
        "print(chatroom.publish(sys.argv[1], sys.argv[2], name=sys.argv[3]).id)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, room, text, name],
        cwd=ROOT,
        env={**server.env, "DJANGO_SETTINGS_MODULE": "project.settings"},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.split()[-1])


def welcomed(listeners: list[RawSocket]) -> list[RawSocket]:
    """``listeners`` once each has been welcomed: in its room, so it hears what is published from now on."""
    for listener in listeners:
        listener.next_events(1, "welcome")
    return listeners


def post(server: ServerProcess, room: str, body=None, token: str | None = TOKEN, **options) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{server.url}/api/rooms/{room}/messages", json=body, headers=headers, timeout=WAIT, **options)


def test_importing_chatroom_needs_no_django_setup():
    done = subprocess.run(
        [sys.executable, "-c", "import chatroom; print(callable(chatroom.__getattr__))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr


def test_chat_say_and_publish_reach_clients_of_every_worker_and_instance_over_websocket_and_polling(
    instances, clients, room
):
    first, second = instances(workers=3), instances(workers=1)
    listeners = welcomed(
        raw_sockets_on_every_worker(first, room, "raw-a") + raw_sockets_on_every_worker(second, room, "raw-b")
    )
    pollers = [clients.join(instance.url, room, f"poller-{n}", "polling") for n, instance in enumerate((first, second))]
    pollers += [clients.join(first.url, room, f"poller-{n}", "polling") for n in range(2, 6)]

    done = chat_say(first, room, "from the command", "--name", "ops")
    assert done.returncode == 0, done.stderr
    assert "REDIS_URL" not in done.stdout
    said = int(done.stdout.split()[2])
    published = publish_from_a_script(second, room, "from a script", "bot")

    expected = [
        {"id": said, "name": "ops", "text": "from the command"},
        {"id": published, "name": "bot", "text": "from a script"},
    ]
    for listener in listeners:
        received = listener.next_events(2, "message")
        assert [{key: message[key] for key in ("id", "name", "text")} for message in received] == expected
    for poller in pollers:
        assert [poller.wait_for("message")["id"] for _ in expected] == [said, published]
    # Stored as a user's message is: in the history of whoever comes next.
    latecomer = clients(first.url, auth={"room": room, "name": "latecomer"})
    assert [message["id"] for message in latecomer.wait_for("history")] == [said, published]
    for listener in listeners:
        listener.close()


def test_chat_say_without_redis_stores_the_message_and_says_live_clients_need_redis(server, clients, room):
    done = chat_say(server, room, "stored only")
    assert done.returncode == 0, done.stderr
    assert f"in room {room} as system" in done.stdout
    assert "live clients see it only with REDIS_URL" in done.stdout
    newcomer = clients(server.url, auth={"room": room, "name": "newcomer"})
    assert [(message["name"], message["text"]) for message in newcomer.wait_for("history")] == [
        ("system", "stored only")
    ]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["bad room!", "hi"], "invalid room"),
        (["{room}", "   "], "message is empty"),
        (["{room}", "x" * 1001], "message is too long"),
        (["{room}", "hi", "--name", "x" * 33], "invalid name"),
    ],
)
def test_chat_say_refuses_what_a_client_could_not_send(server, room, args, reason):
    done = chat_say(server, *(arg.format(room=room) for arg in args))
    assert done.returncode != 0
    assert reason in done.stderr


def test_the_endpoint_delivers_without_redis_over_websocket_and_polling(fresh_server, clients, room):
    server = fresh_server(CHAT_API_TOKEN=TOKEN)
    watchers = [clients.join(server.url, room, transport, transport) for transport in ("websocket", "polling")]
    answer = post(server, room, {"text": "deploy finished", "name": "ci"})
    assert answer.status_code == 201
    stored = answer.json()["id"]
    for watcher in watchers:
        message = watcher.wait_for("message")
        assert (message["id"], message["name"], message["text"]) == (stored, "ci", "deploy finished")
    # The name is optional.
    assert post(server, room, {"text": "no name"}).status_code == 201
    assert watchers[0].wait_for("message")["name"] == "system"


def test_the_endpoint_reaches_every_worker_through_redis(instances, room):
    server = instances(workers=3, CHAT_API_TOKEN=TOKEN)
    listeners = welcomed(raw_sockets_on_every_worker(server, room, "raw"))
    ids = [post(server, room, {"text": f"over http {n}"}).json()["id"] for n in range(5)]  # any worker answers
    for listener in listeners:
        assert [message["id"] for message in listener.next_events(len(ids), "message")] == ids
        listener.close()


def test_the_endpoint_answers_each_mistake_with_a_clear_4xx(fresh_server, clients, room):
    server = fresh_server(CHAT_API_TOKEN=TOKEN)
    watcher = clients.join(server.url, room, "watcher")
    url = f"{server.url}/api/rooms/{room}/messages"
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def error(response: requests.Response, status: int) -> str:
        assert response.status_code == status, response.text
        return response.json()["error"]

    assert "token" in error(post(server, room, {"text": "hi"}, token=None), 401)
    assert "token" in error(post(server, room, {"text": "hi"}, token="wrong"), 401)
    assert post(server, room, {"text": "hi"}, token=None).headers["WWW-Authenticate"].startswith("Bearer")
    assert "invalid room" in error(post(server, "bad%20room", {"text": "hi"}), 400)
    assert "invalid room" in error(post(server, "x" * 65, {"text": "hi"}), 400)
    assert "text is missing" in error(post(server, room, {"name": "ci"}), 400)
    assert "empty" in error(post(server, room, {"text": " "}), 400)
    assert "must be a string" in error(post(server, room, {"text": 5}), 400)
    assert "too long" in error(post(server, room, {"text": "x" * 1001}), 400)
    assert "invalid name" in error(post(server, room, {"text": "hi", "name": "x" * 33}), 400)
    assert "JSON" in error(requests.post(url, data="text=hi", headers=auth, timeout=WAIT), 400)
    assert "JSON object" in error(post(server, room, ["hi"]), 400)
    assert requests.get(url, headers=auth, timeout=WAIT).status_code == 405
    # Nothing of that was stored or sent.
    assert post(server, room, {"text": "the only one"}).status_code == 201
    assert watcher.wait_for("message")["text"] == "the only one"
    newcomer = clients(server.url, auth={"room": room, "name": "newcomer"})
    assert [message["text"] for message in newcomer.wait_for("history")] == ["the only one"]
    assert [message["text"] for message in watcher.received("message")] == ["the only one"]


def test_the_endpoint_is_off_without_a_token(server, room):
    answer = post(server, room, {"text": "hi"})
    assert answer.status_code == 403
    assert "CHAT_API_TOKEN" in answer.json()["error"]
