"""The project's URLs, plus test-only socket views that misbehave on purpose."""

import gevent
from django.http import HttpRequest, HttpResponse
from django.urls import path

from project.urls import urlpatterns as project_urlpatterns


def crashing_socket(request: HttpRequest) -> HttpResponse:
    """Accepts, echoes, and raises when told to ``crash``."""
    socket = request.environ["socketio"]
    while (message := socket.recv()) is not None:
        if message.event == "crash":
            raise RuntimeError("crash requested by the test")
        message.reply("alive")
    return HttpResponse(status=204)


def broken_socket(request: HttpRequest) -> HttpResponse:
    """Raises before it accepts the connection."""
    raise RuntimeError("broken before accepting")


def refusing_socket(request: HttpRequest) -> HttpResponse:
    """Refuses every connection with a reason."""
    return HttpResponse("members only", status=403)


def gated_socket(request: HttpRequest) -> HttpResponse:
    """Takes ``auth.wait`` seconds to decide; refuses if ``auth.refuse``; else broadcasts what it hears."""
    socket = request.environ["socketio"]
    auth = socket.auth or {}
    gevent.sleep(auth.get("wait", 0))
    if auth.get("refuse"):
        return HttpResponse("members only", status=403)
    while (message := socket.recv()) is not None:
        socket.broadcast("secret", message.data)
        message.reply("ok")
    return HttpResponse(status=204)


urlpatterns = [
    path("socket.io/gate/", gated_socket),
    path("socket.io/crash/", crashing_socket),
    path("socket.io/broken/", broken_socket),
    path("socket.io/refuse/", refusing_socket),
    *project_urlpatterns,
]
