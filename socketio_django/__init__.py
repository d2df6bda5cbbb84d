"""Socket.IO for Django on gevent: every connection runs a plain, blocking view.

The view finds a :class:`SocketHandle` in ``request.environ["socketio"]``::

    def echo(request):
        socket = request.environ["socketio"]
        while (message := socket.recv()) is not None:
            socket.emit(message.event, *message.args)
        return HttpResponse()
"""

from .bridge import SocketIOApplication, ViewServer
from .handle import Message, SocketHandle
from .server import SocketIOServer

__all__ = ["Message", "SocketHandle", "SocketIOApplication", "SocketIOServer", "ViewServer"]
