from __future__ import annotations

from django.conf import settings
from django.db import models


class Message(models.Model):
    """A chat message, kept for the room's rolling history."""

    room = models.CharField(max_length=64)
    name = models.CharField(max_length=32)
    text = models.TextField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["room", "-id"], name="chatroom_room_latest")]

    def __str__(self) -> str:
        return f"{self.name}: {self.text}"

    @classmethod
    def history(cls, room: str) -> list[Message]:
        """The room's last ``CHAT_HISTORY_SIZE`` messages, oldest first."""
        latest = cls.objects.filter(room=room).order_by("-id")[: settings.CHAT_HISTORY_SIZE]
        return list(reversed(latest))

    @classmethod
    def after(cls, room: str, last_id: int, limit: int) -> list[Message]:
        """At most ``limit`` of the room's messages stored after message ``last_id``, oldest first."""
        return list(cls.objects.filter(room=room, id__gt=last_id).order_by("id")[:limit])

    def as_event(self) -> dict:
        """The ``message`` event payload clients receive."""
        return {"id": self.id, "name": self.name, "text": self.text, "time": self.created.isoformat()}
