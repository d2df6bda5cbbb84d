"""Reference server for the benchmark: plain python-socketio in gevent mode, no Django.

    python bench/plain_server.py --port 9200 [--host 127.0.0.1]

gevent's pywsgi server with gevent-websocket's handler, as the project uses. A
client connects with auth {room, name} and joins that room; a ``message`` event
with a text is broadcast to everyone else in the room as {id, name, text, time},
and acknowledged with {ok: true, id} when asked. Namespace ``/echo`` behaves like
the project's echo view (project/echo.py): any event is sent back to its sender and
broadcast to everyone else in the namespace as ``seen`` {from: sid, event: name}.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import itertools  # noqa: E402
from importlib.metadata import version  # noqa: E402

import socketio  # noqa: E402
from gevent import pywsgi  # noqa: E402
from geventwebsocket.handler import WebSocketHandler  # noqa: E402

sio = socketio.Server(async_mode="gevent")
members: dict[str, tuple[str, str]] = {}
ids = itertools.count(1)


@sio.event
def connect(sid: str, environ: dict, auth: object) -> None:
    auth = auth if isinstance(auth, dict) else {}
    room, name = str(auth.get("room", "lobby")), str(auth.get("name", "guest"))
    members[sid] = (room, name)
    sio.enter_room(sid, room)


@sio.event
def message(sid: str, text: object) -> dict:
    room, name = members[sid]
    time = datetime.datetime.now(datetime.UTC).isoformat()
    event = {"id": next(ids), "name": name, "text": str(text), "time": time}
    sio.emit("message", event, to=room, skip_sid=sid)
    return {"ok": True, "id": event["id"]}


@sio.event
def disconnect(sid: str, reason: str) -> None:
    members.pop(sid, None)


@sio.on("connect", namespace="/echo")
def echo_connect(sid: str, environ: dict, auth: object) -> None:
    pass


@sio.on("*", namespace="/echo")
def echo_any(event: str, sid: str, *args: object) -> dict:
    sio.emit(event, args[0] if len(args) == 1 else list(args), to=sid, namespace="/echo")
    sio.emit("seen", {"from": sid, "event": event}, namespace="/echo", skip_sid=sid)
    return {"echoed": event}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    args = parser.parse_args()
    server = pywsgi.WSGIServer((args.host, args.port), socketio.WSGIApp(sio), handler_class=WebSocketHandler, log=None)
    server.start()
    url = f"http://{args.host}:{server.server_port}/"
    print(f"plain python-socketio {version('python-socketio')} listening on {url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
