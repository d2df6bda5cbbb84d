"""A strict Content-Security-Policy for the chat page.

The page runs only its own scripts and styles (no inline code, no other
origins) and connects only back to its own host, over HTTP long-polling or
WebSocket; so even text that slipped through as HTML could run nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    # 'self' covers ws:/wss: to the same host in CSP 3; the explicit entries are for older browsers.
    "connect-src 'self' ws://{host} wss://{host}; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def content_security_policy(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Send ``POLICY`` with every response of ``view``.

    The host comes from ``request.get_host()``, which ``ALLOWED_HOSTS`` has
    already validated (only letters, digits, ``.-:[]``), so it cannot smuggle
    in other directives.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response.headers["Content-Security-Policy"] = POLICY.format(host=request.get_host())
        return response

    return wrapper
