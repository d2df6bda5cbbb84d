"""Node.js: the official socket.io-client 4.x chats through the real server; the page's outbox unit tests."""

from __future__ import annotations

import json
import subprocess

import pytest

from .helpers import ROOT

NODE_DIR = ROOT / "tests" / "node"


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_node_socketio_client_chats(server, clients, room, transport):
    assert (NODE_DIR / "node_modules" / "socket.io-client").is_dir(), "run: npm ci --prefix tests/node"
    done = subprocess.run(
        ["node", "interop.mjs", server.url, transport, room], cwd=NODE_DIR, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)

    assert seen["transport"] == transport
    alice, bob = seen["alice"], seen["bob"]
    assert alice["order"] == ["history", "welcome"]
    assert alice["history"] == []
    assert alice["welcome"] == {"name": "alice", "room": room, "online": ["alice"], "count": 1}
    assert alice["ack"] == {"ok": True, "id": alice["ack"]["id"]}

    assert bob["welcome"] == {"name": "bob", "room": room, "online": ["alice", "bob"], "count": 2}
    assert [(m["id"], m["name"], m["text"]) for m in bob["history"]] == [
        (alice["ack"]["id"], "alice", f"hello over {transport}")
    ]
    assert seen["joinNote"] == {"kind": "join", "name": "bob", "text": "bob joined", "online": True}
    assert bob["ack"]["ok"] is True and bob["ack"]["id"] > alice["ack"]["id"]
    assert seen["aliceReceived"]["id"] == bob["ack"]["id"]
    assert (seen["aliceReceived"]["name"], seen["aliceReceived"]["text"]) == ("bob", "hi alice")
    assert seen["aliceReceived"]["time"].endswith("+00:00")
    assert bob["rejected"] == {"error": "message is empty"}
    assert seen["leaveNote"] == {"kind": "leave", "name": "bob", "text": "bob left", "online": False}

    assert seen["replay"] == {"after": alice["ack"]["id"], "messages": [seen["aliceReceived"]], "complete": True}

    # What the Node clients sent is what a Python client finds in the room's history.
    reader = clients(server.url, auth={"room": room, "name": "reader"})
    assert [m["text"] for m in reader.wait_for("history")] == [f"hello over {transport}", "hi alice"]


def test_page_outbox_unit_tests():
    """static/js/outbox.js (queueing, acks, timeouts, no duplicates after reconnecting) under node --test."""
    done = subprocess.run(
        ["node", "--test", "outbox.test.mjs"], cwd=NODE_DIR, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# fail 0" in done.stdout
