"""A second socket view, with no chat in it: it sends every event back."""

from django.http import HttpRequest, HttpResponse


def echo_socket(request: HttpRequest) -> HttpResponse:
    """Echo each event to its sender, answer its callback, and tell the others."""
    socket = request.environ["socketio"]
    while (message := socket.recv()) is not None:
        socket.emit(message.event, *message.args)
        message.reply({"echoed": message.event, "user": request.user.get_username() or None})
        socket.broadcast("seen", {"from": socket.id, "event": message.event})
    return HttpResponse(status=204)
