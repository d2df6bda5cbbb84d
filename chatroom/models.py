from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connections, models

from .names import name_keys


def sql_names(model: type[models.Model], *fields: str) -> tuple[str, ...]:
    """``model``'s table and then its ``fields``' columns, quoted for raw SQL in its database."""
    ops = connections[model.objects.db].ops
    return ops.quote_name(model._meta.db_table), *(ops.quote_name(model._meta.get_field(f).column) for f in fields)


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
        # Every join runs it: the ORM built and compiled it anew each time (260-320 us, 16% of a join's CPU); raw
        # SQL, 130-175 us (SQLite, 5,000 calls).
        table, room_column, id_column = sql_names(cls, "room", "id")
        latest = f"SELECT * FROM {table} WHERE {room_column} = %s ORDER BY {id_column} DESC LIMIT %s"
        return list(cls.objects.raw(latest, [room, settings.CHAT_HISTORY_SIZE]))[::-1]  # reversed() would index it

    @classmethod
    def after(cls, room: str, last_id: int, limit: int) -> list[Message]:
        """At most ``limit`` of the room's messages stored after message ``last_id``, oldest first."""
        return list(cls.objects.filter(room=room, id__gt=last_id).order_by("id")[:limit])

    def as_event(self) -> dict:
        """The ``message`` event payload clients receive."""
        return {"id": self.id, "name": self.name, "text": self.text, "time": self.created.isoformat()}


class NameKey(models.Model):
    """One key (:func:`chatroom.names.name_keys`) of a registered user's name, so a guest's is checked by one query.

    Kept in sync by :meth:`user_saved` whenever a user is saved (created or
    renamed); migration 0002 keyed the users that existed before. Renames by
    ``QuerySet.update()`` send no signal and leave the old keys.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="name_keys")
    key = models.TextField()

    class Meta:
        indexes = [models.Index(fields=["key"], name="chatroom_namekey_key")]
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="chatroom_namekey_unique")]

    def __str__(self) -> str:
        return f"{self.user_id}: {self.key}"

    @classmethod
    def reads_like_a_user(cls, name: str) -> bool:
        """Whether ``name`` reads like the name of a registered user."""
        # Every guest's join runs it: through the ORM 135-175 us (14% of a join's CPU), raw SQL 17-20 us.
        keys = list(name_keys(name))
        if not keys:
            return False  # nothing visible left of it: no user's name reads like it
        table, column = sql_names(cls, "key")
        with connections[cls.objects.db].cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {table} WHERE {column} IN ({', '.join(['%s'] * len(keys))}) LIMIT 1", keys)
            return cursor.fetchone() is not None

    @classmethod
    def sync(cls, user: Any) -> None:
        """Store the keys of ``user``'s name, dropping those of a former name."""
        wanted = name_keys(user.get_username())
        stored = set(cls.objects.filter(user=user).values_list("key", flat=True))
        if stored - wanted:
            cls.objects.filter(user=user, key__in=stored - wanted).delete()
        # Two saves of one user at once may both add a key: the second adds nothing.
        cls.objects.bulk_create([cls(user=user, key=key) for key in wanted - stored], ignore_conflicts=True)

    @classmethod
    def user_saved(
        cls, sender: type, instance: Any, update_fields: frozenset[str] | None = None, **kwargs: Any
    ) -> None:
        """``post_save`` of the user model: a save that may have changed the name re-keys it (a login does not)."""
        if update_fields is None or instance.USERNAME_FIELD in update_fields:
            cls.sync(instance)
