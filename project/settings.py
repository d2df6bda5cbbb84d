"""Django settings for the chat project.

Everything a deployment changes comes from environment variables with safe
defaults: SQLite beside the code, same-origin Socket.IO only, DEBUG off.
"""

import os
import warnings
from pathlib import Path

from django.core.management.utils import get_random_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent


def env_list(name: str, default: str = "") -> list[str]:
    """A comma-separated environment variable as a list."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_int(name: str, default: int) -> int:
    """An environment variable as a whole number, ``default`` when unset or empty."""
    return int(os.environ.get(name) or default)


def env_float(name: str, default: float) -> float:
    """An environment variable as a number, ``default`` when unset or empty."""
    return float(os.environ.get(name) or default)


DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
# Without DJANGO_SECRET_KEY, sessions last as long as the process: fine for a demo, not for production.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or get_random_secret_key()
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "socketio_django",
    "chatroom",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ],
        },
    },
]

if os.environ.get("DATABASE_URL"):
    # PostgreSQL (or any database dj-database-url knows): postgres://user:password@host:5432/name.
    # psycopg 3 waits with gevent when gevent patched the standard library before it was imported
    # (run_example.py, manage.py runsocketio and the Gunicorn workers do). CONN_HEALTH_CHECKS: a
    # connection kept open between views (socketio_django.dbconnections) that the server has
    # closed meanwhile (a restart) is replaced before use instead of failing a message.
    import dj_database_url

    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_health_checks=True)}
    # PostgreSQL: at most CHAT_DATABASE_POOL_SIZE connections per process (psycopg_pool, through Django),
    # so a burst of clients speaking at once queues for them (up to CHAT_DATABASE_POOL_TIMEOUT s) instead
    # of opening one each past PostgreSQL's max_connections. 0: no pool.
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_int("CHAT_DATABASE_POOL_SIZE", 10):
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": env_int("CHAT_DATABASE_POOL_SIZE", 10),
            "timeout": env_float("CHAT_DATABASE_POOL_TIMEOUT", 30),
        }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("CHAT_DATABASE_PATH", BASE_DIR / "db.sqlite3"),
            "OPTIONS": {
                # WAL: readers never wait for the writer, and a commit appends to one file
                # instead of creating and deleting a journal (with NORMAL, no fsync per commit).
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", BASE_DIR / "staticfiles"))
if os.environ.get("DJANGO_STATIC_MANIFEST") == "1":
    # Production (gunicorn.conf.py sets it and runs collectstatic): hashed names, gzip, cached forever.
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "project.storage.StaticStorage"},
    }
else:
    # run_example.py, runsocketio, tests: WhiteNoise serves straight from static/, no collectstatic.
    WHITENOISE_USE_FINDERS = True
    WHITENOISE_AUTOREFRESH = DEBUG
    # WhiteNoise warns when STATIC_ROOT is missing; here it is not needed.
    warnings.filterwarnings("ignore", message="No directory at")

# Socket.IO bridge (socketio_django.conf has the defaults).
SOCKETIO_ALLOWED_ORIGINS = env_list("SOCKETIO_ALLOWED_ORIGINS") or None
SOCKETIO_MAX_PAYLOAD = env_int("SOCKETIO_MAX_PAYLOAD", 64 * 1024)
SOCKETIO_MAX_BACKLOG = env_int("SOCKETIO_MAX_BACKLOG", 1000)
SOCKETIO_SHUTDOWN_TIMEOUT = env_float("SOCKETIO_SHUTDOWN_TIMEOUT", 10)
SOCKETIO_IDLE_AFTER = env_float("SOCKETIO_IDLE_AFTER", 1)
SOCKETIO_PING_INTERVAL = env_float("SOCKETIO_PING_INTERVAL", 25)
SOCKETIO_PING_TIMEOUT = env_float("SOCKETIO_PING_TIMEOUT", 20)
SOCKETIO_CONNECT_TIMEOUT = env_float("SOCKETIO_CONNECT_TIMEOUT", 45)
# Several processes or hosts: one Redis carries broadcasts and presence between them.
REDIS_URL = os.environ.get("REDIS_URL") or None
SOCKETIO_REDIS_URL = REDIS_URL
SOCKETIO_REDIS_HEALTH_INTERVAL = env_float("SOCKETIO_REDIS_HEALTH_INTERVAL", 5)
SOCKETIO_MAX_CLIENTS = int(os.environ["SOCKETIO_MAX_CLIENTS"]) if os.environ.get("SOCKETIO_MAX_CLIENTS") else None
# Per client address (X-Forwarded-For believed from SOCKETIO_TRUSTED_PROXIES only), per process; 0: no cap.
SOCKETIO_TRUSTED_PROXIES = env_list("SOCKETIO_TRUSTED_PROXIES", "127.0.0.1,::1")
SOCKETIO_MAX_SESSIONS_PER_ADDRESS = env_int("SOCKETIO_MAX_SESSIONS_PER_ADDRESS", 0)
SOCKETIO_SESSION_RATE_PER_ADDRESS = env_float("SOCKETIO_SESSION_RATE_PER_ADDRESS", 0)
SOCKETIO_SESSION_BURST_PER_ADDRESS = env_int("SOCKETIO_SESSION_BURST_PER_ADDRESS", 10)
SOCKETIO_MAX_CONNECTIONS_PER_ADDRESS = env_int("SOCKETIO_MAX_CONNECTIONS_PER_ADDRESS", 0)
# What a request may take before the view sees it (socketio_django/http_handler.py): seconds for its
# headers (an idle keep-alive connection waits for them too) and body, bytes of headers and body;
# seconds a response's write may wait for its client to read.
SOCKETIO_HEADERS_TIMEOUT = env_float("SOCKETIO_HEADERS_TIMEOUT", 10)
SOCKETIO_BODY_TIMEOUT = env_float("SOCKETIO_BODY_TIMEOUT", 30)
SOCKETIO_SEND_TIMEOUT = env_float("SOCKETIO_SEND_TIMEOUT", 30)
SOCKETIO_MAX_HEADERS_SIZE = env_int("SOCKETIO_MAX_HEADERS_SIZE", 16 * 1024)
SOCKETIO_MAX_BODY_SIZE = env_int("SOCKETIO_MAX_BODY_SIZE", 1024 * 1024)

# Chat app.
CHAT_HISTORY_SIZE = 15
# Most messages one reconnection replays (auth.last_id); past it the client gets the history instead.
CHAT_REPLAY_MAX = env_int("CHAT_REPLAY_MAX", 500)
CHAT_MAX_MESSAGE_LENGTH = env_int("CHAT_MAX_MESSAGE_LENGTH", 1000)
# Per connection: bursts of CHAT_RATE_LIMIT_BURST messages, refilled at CHAT_RATE_LIMIT_PER_SECOND (0: no limit).
CHAT_RATE_LIMIT_PER_SECOND = env_float("CHAT_RATE_LIMIT_PER_SECOND", 5)
CHAT_RATE_LIMIT_BURST = env_int("CHAT_RATE_LIMIT_BURST", 30)
# Per client address, on top (all its connections together, in this process; 0: no limit).
CHAT_ADDRESS_RATE_LIMIT_PER_SECOND = env_float("CHAT_ADDRESS_RATE_LIMIT_PER_SECOND", 0)
CHAT_ADDRESS_RATE_LIMIT_BURST = env_int("CHAT_ADDRESS_RATE_LIMIT_BURST", 60)
# With Redis, who is online is shared by every process; a process that stops renewing its
# entries for CHAT_PRESENCE_TTL seconds (it died) has its users taken off the lists.
CHAT_REDIS_URL = REDIS_URL
CHAT_PRESENCE_TTL = env_float("CHAT_PRESENCE_TTL", 15)
# Presence in big rooms (chatroom/announcer.py): joins and leaves go out once per window; rooms of
# more than CHAT_PRESENCE_NAMES_UP_TO people hear counts (every CHAT_PRESENCE_COUNT_EVERY s at most),
# not names; welcome and `members` name CHAT_MEMBERS_PAGE people at a time.
CHAT_PRESENCE_WINDOW = env_float("CHAT_PRESENCE_WINDOW", 0.25)
CHAT_PRESENCE_NAMES_UP_TO = env_int("CHAT_PRESENCE_NAMES_UP_TO", 100)
CHAT_PRESENCE_COUNT_EVERY = env_float("CHAT_PRESENCE_COUNT_EVERY", 5)
CHAT_MEMBERS_PAGE = env_int("CHAT_MEMBERS_PAGE", 100)
# Bearer token of POST /api/rooms/<room>/messages (chatroom/api.py); unset: that endpoint is off.
CHAT_API_TOKEN = os.environ.get("CHAT_API_TOKEN") or None

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {
        "client_errors_on_one_line": {"()": "socketio_django.logs.ClientErrorsOnOneLine"},
        "refusals_logged_by_the_bridge": {"()": "socketio_django.logs.RefusalsLoggedByTheBridge"},
        # A flood of refused clients: at most 10 warnings of one kind a minute, then a count.
        "rate_limit": {"()": "socketio_django.logs.RateLimit", "burst": 10, "interval": 60},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["client_errors_on_one_line", "refusals_logged_by_the_bridge", "rate_limit"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("CHAT_LOG_LEVEL", "INFO")},
    "loggers": {
        # python-socketio and python-engineio log every packet at INFO.
        "socketio": {"level": "WARNING"},
        "engineio": {"level": "WARNING"},
        # One line per HTTP request (every long-poll): off unless CHAT_ACCESS_LOG=1.
        "geventwebsocket.handler": {"level": "INFO" if os.environ.get("CHAT_ACCESS_LOG") == "1" else "WARNING"},
    },
}
