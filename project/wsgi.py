"""WSGI entry point: the Django site with Socket.IO, for gevent-websocket's Gunicorn worker."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from socketio_django.conf import get_socketio_application

application = get_socketio_application()
