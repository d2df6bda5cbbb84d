"""What the chat accepts from clients: names, rooms and message texts."""

from __future__ import annotations

import re
import secrets
import unicodedata
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from .models import NameKey
from .names import name_keys

DEFAULT_ROOM = "lobby"
ROOM_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_NAME_LENGTH = 32
# The only invisible characters a name may hold: they join emoji sequences and the letters of Persian or
# Indic words. Other format characters (bidi controls above all) can make a name show as another.
JOINERS = frozenset("\u200c\u200d")


def clean_room(value: Any) -> str:
    """A room name: 1-64 letters, digits, ``-`` or ``_``; ``lobby`` when not given."""
    if value in (None, ""):
        return DEFAULT_ROOM
    if not isinstance(value, str) or not ROOM_PATTERN.fullmatch(value):
        raise ValidationError("invalid room: use 1-64 letters, digits, '-' or '_'")
    return value


def clean_name(value: Any) -> str:
    """A display name: 1-32 printable characters, NFKC-normalized; a generated guest name when not given.

    Printable characters and joiners, with something visible among them
    (not only accents or joiners).
    """
    if value in (None, ""):
        return f"guest-{secrets.token_hex(3)}"
    if not isinstance(value, str):
        raise ValidationError("invalid name: it must be a string")
    name = unicodedata.normalize("NFKC", value).strip()
    printable = all(char.isprintable() or char in JOINERS for char in name)
    if not name or len(name) > MAX_NAME_LENGTH or not printable or not name_keys(name):
        raise ValidationError(f"invalid name: use 1-{MAX_NAME_LENGTH} printable characters")
    return name


def clean_text(value: Any) -> str:
    """A message text: a non-blank string of at most ``CHAT_MAX_MESSAGE_LENGTH`` characters."""
    if not isinstance(value, str):
        raise ValidationError("message must be a string", code="not-a-string")
    if not value.strip():
        raise ValidationError("message is empty", code="empty")
    limit = settings.CHAT_MAX_MESSAGE_LENGTH
    if len(value) > limit:
        raise ValidationError(f"message is too long: {len(value)} characters, the limit is {limit}", code="too-long")
    return value


def clean_guest_name(value: Any) -> str:
    """:func:`clean_name`, refusing a name that reads like a registered user's (they log in to use it).

    Guests may share names with each other, as they always could: a guest's
    name is a label, not an account.
    """
    name = clean_name(value)
    if NameKey.reads_like_a_user(name):
        raise ValidationError("name taken: it belongs to a registered user, who must log in to use it")
    return name


def clean_last_id(value: Any) -> int | None:
    """The id of the last message a reconnecting client saw (a non-negative integer), or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ValidationError("invalid last_id: use the id of the last message seen")
    return value
