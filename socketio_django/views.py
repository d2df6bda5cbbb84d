"""Operational views: health for load balancers, metrics for Prometheus."""

from __future__ import annotations

import logging
import os

from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from .bridge import SERVER_ENVIRON_KEY

logger = logging.getLogger("socketio_django")


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """200 while serving with a reachable, migrated database; 503 while shutting down or without one."""
    server = request.environ.get(SERVER_ENVIRON_KEY)
    try:
        database = _database_state()
    except Exception:  # any driver's failure means "not reachable"; details go to the log only
        logger.exception("health check: the database is not reachable")
        database = "error"
    draining = bool(server and server.draining)
    healthy = database == "ok" and not draining
    body = {
        "status": "ok" if healthy else ("draining" if draining else "unhealthy"),
        "database": database,
        "clients": len(server.handles) if server else None,
    }
    manager = getattr(server, "manager", None)
    if hasattr(manager, "redis_reachable"):
        # Without Redis each process still serves its own clients: "degraded", not out of rotation
        # (every instance shares the same Redis, so taking them out would stop the whole chat).
        body["redis"] = "ok" if manager.redis_reachable() else "error"
        if healthy and body["redis"] != "ok":
            body["status"] = "degraded"
    return JsonResponse(body, status=200 if healthy else 503)


_migrated = False


def _database_state() -> str:
    """``ok``, or ``unmigrated`` while migrations wait (checked until they have all been applied once)."""
    global _migrated
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    if not _migrated:
        executor = MigrationExecutor(connection)
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            return "unmigrated"
        _migrated = True
    return "ok"


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format: this process's metrics, or every worker's added up (multiprocess mode)."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
