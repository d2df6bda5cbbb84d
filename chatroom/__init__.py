"""The chat app. ``chatroom.publish(room, text, name="system")`` stores and broadcasts a message (see
:mod:`chatroom.publishing`); it is imported on first use, so importing ``chatroom`` needs no Django set up."""

from __future__ import annotations

from typing import Any

__all__ = ["publish"]


def __getattr__(name: str) -> Any:
    if name == "publish":
        from .publishing import publish

        return publish
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
