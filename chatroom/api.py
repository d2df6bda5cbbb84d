"""``POST /api/rooms/<room>/messages``: publishing over HTTP, for other services.

Authenticated by a bearer token (``CHAT_API_TOKEN``), not by a session, so
CSRF does not apply; off while the token is unset. The message goes through
:func:`chatroom.publishing.publish`: the same checks, history and broadcast
as a user's.
"""

from __future__ import annotations

import json
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .publishing import DEFAULT_NAME, publish


def _error(status: int, reason: str, **headers: str) -> JsonResponse:
    return JsonResponse({"error": reason}, status=status, headers=headers)


@csrf_exempt
@require_POST
def post_message(request: HttpRequest, room: str) -> JsonResponse:
    """Store and broadcast ``{"text": ..., "name": ...}``; answers 201 ``{"id": ...}``."""
    token = settings.CHAT_API_TOKEN
    if not token:
        return _error(403, "the publishing API is off: set CHAT_API_TOKEN on the server to turn it on")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), token.encode()):
        return _error(
            401,
            "missing or wrong token: send 'Authorization: Bearer <CHAT_API_TOKEN>'",
            **{"WWW-Authenticate": 'Bearer realm="chat"'},
        )
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return _error(400, 'the body must be JSON: {"text": "...", "name": "..."}')
    if not isinstance(body, dict):
        return _error(400, 'the body must be a JSON object: {"text": "...", "name": "..."}')
    if "text" not in body:
        return _error(400, "text is missing")
    try:
        message = publish(room, body["text"], name=body.get("name", DEFAULT_NAME))
    except ValidationError as error:
        status = 503 if error.code == "not-stored" else 400
        return _error(status, error.messages[0])
    return JsonResponse({"id": message.id}, status=201)
