"""``manage.py chat_say ROOM TEXT [--name N]``: say something in a room, as if a user had."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from chatroom.publishing import DEFAULT_NAME, publish, reaches_live_clients


class Command(BaseCommand):
    help = (
        "Store a message in a room and broadcast it to the room's connected clients "
        "(through Redis: needs REDIS_URL, otherwise they see it when they next connect)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("room", help="the room (1-64 letters, digits, '-' or '_')")
        parser.add_argument("text", help="the message")
        parser.add_argument("--name", default=DEFAULT_NAME, help=f"the name it is sent under (default: {DEFAULT_NAME})")

    def handle(self, *args, room: str, text: str, name: str, **options) -> None:
        try:
            message = publish(room, text, name=name)
        except ValidationError as error:
            raise CommandError(error.messages[0]) from None
        self.stdout.write(f"Stored message {message.id} in room {message.room} as {message.name}.")
        if not reaches_live_clients():
            self.stdout.write(
                "REDIS_URL is not set: live clients see it only with REDIS_URL (shared with the servers); "
                "others get it in their history when they next connect."
            )
