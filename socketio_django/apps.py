from django.apps import AppConfig


class SocketIODjangoConfig(AppConfig):
    name = "socketio_django"
    verbose_name = "Socket.IO for Django"
