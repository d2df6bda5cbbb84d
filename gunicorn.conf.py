"""Gunicorn settings for production: ``gunicorn -c gunicorn.conf.py``.

gevent-websocket's worker serves Socket.IO (WebSocket and long-polling) and
the Django site on one port. Everything an operator tunes comes from the
environment, with safe defaults.

With ``REDIS_URL`` the workers are one chat: broadcasts and presence go
through Redis, and a request for a session another worker owns is handed to
that worker (``socketio_django.handover``), so no sticky load balancer is
needed; the default is then one worker per core. Without Redis the default
is one worker: each worker would keep its own rooms, and its clients would
hear only the people on the same worker.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

# Imports nothing of Django, Redis or prometheus-client: the master must not load them before forking.
from socketio_django.limits import listen_backlog, raise_open_files_limit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
# Hashed, compressed static files, served by WhiteNoise.
os.environ.setdefault("DJANGO_STATIC_MANIFEST", "1")

# Only for the master's deadline below; the workers read the Django setting.
SHUTDOWN_TIMEOUT = float(os.environ.get("SOCKETIO_SHUTDOWN_TIMEOUT", 10))

wsgi_app = "project.wsgi:application"
worker_class = "socketio_django.workers.SocketIOWorker"
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").split(",")
# TLS connections cannot be handed from worker to worker: terminate TLS in front of several workers.
_SHARED = bool(os.environ.get("REDIS_URL")) and not os.environ.get("GUNICORN_CERTFILE")
workers = int(os.environ.get("GUNICORN_WORKERS") or ((os.cpu_count() or 1) if _SHARED else 1))
# The accept queue: the kernel's largest (net.core.somaxconn), so that thousands of clients
# reconnecting at once (after a deploy) are queued, not refused.
backlog = listen_backlog()
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", 10000))
# The gevent worker heartbeats from its own greenlet, so long-lived sockets never
# trip this timeout; it only catches a worker whose event loop is stuck.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
# The master waits this long after SIGTERM before killing workers: our own drain plus a margin.
graceful_timeout = int(SHUTDOWN_TIMEOUT) + 5
# No `keepalive`: this worker's pywsgi keeps connections alive itself and ignores Gunicorn's setting;
# SOCKETIO_HEADERS_TIMEOUT closes an idle keep-alive connection (and bounds a request's headers).
# TLS straight from Gunicorn, when no proxy in front terminates it.
certfile = os.environ.get("GUNICORN_CERTFILE") or None
keyfile = os.environ.get("GUNICORN_KEYFILE") or None
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
# Gunicorn's control socket lives at one path per user: two deployments on a host would share it.
control_socket_disable = True


def on_starting(server):
    """Before any worker starts: apply migrations and collect static files, once; make the shared directories.

    In a child process: Django loaded in the master, before gevent patches the
    workers, would share one database connection between all greenlets.
    """
    # The workers inherit it: every client holds a socket.
    server.log.info("open files: at most %d per worker", raise_open_files_limit())
    manage = [sys.executable, str(Path(__file__).with_name("manage.py"))]
    subprocess.run([*manage, "migrate", "--no-input", "--verbosity", "0"], check=True)
    subprocess.run([*manage, "collectstatic", "--no-input", "--verbosity", "0"], check=True)
    if server.cfg.workers > 1 and not os.environ.get("REDIS_URL"):
        server.log.warning("%d workers without REDIS_URL: each hears only its own rooms", server.cfg.workers)
    # Workers inherit the environment: where they find each other's handover sockets, and where
    # prometheus-client's multiprocess mode keeps every worker's metrics for /metrics (also with
    # one worker: more may be added with SIGTTIN).
    os.environ["SOCKETIO_HANDOVER_DIR"] = tempfile.mkdtemp(prefix="socketio-handover-")
    _made.append(os.environ["SOCKETIO_HANDOVER_DIR"])
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # An operator's directory: what an earlier run left there would add to the live figures.
        for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
            stale.unlink()
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="socketio-metrics-")
        _made.append(os.environ["PROMETHEUS_MULTIPROC_DIR"])


# Directories on_starting made, removed on exit.
_made = []


def on_exit(server):
    for directory in _made:
        shutil.rmtree(directory, ignore_errors=True)


def child_exit(server, worker):
    """A worker's live gauges stop counting once it has gone (prometheus-client's multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    """On SIGTERM, drain Socket.IO first: turn new clients away, send the connected ones off."""
    import gevent

    from socketio_django.conf import setting

    def drain_then_exit():
        worker.log.info("SIGTERM: draining %d Socket.IO clients", len(worker.wsgi.server.handles))
        worker.wsgi.server.shutdown_gracefully(setting("SOCKETIO_SHUTDOWN_TIMEOUT"))
        worker.alive = False  # the worker then closes its listener and exits

    # Replaces the worker's own SIGTERM handler, which would stop at once (SIGINT and SIGQUIT still do).
    signal.signal(signal.SIGTERM, lambda signum, frame: gevent.spawn(drain_then_exit))
