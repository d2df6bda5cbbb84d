"""URLs: the chat pages, and the Socket.IO namespaces' views.

Socket.IO namespace ``/`` runs the view at ``/socket.io/``; namespace
``/echo`` runs the one at ``/socket.io/echo/``.
"""

from django.urls import include, path

from chatroom.views import chat_socket
from project.echo import echo_socket
from socketio_django.views import healthz, metrics

urlpatterns = [
    path("socket.io/", chat_socket, name="chat-socket"),
    path("socket.io/echo/", echo_socket, name="echo-socket"),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("", include("chatroom.urls")),
]
