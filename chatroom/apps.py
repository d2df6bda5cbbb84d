from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_save


class ChatroomConfig(AppConfig):
    name = "chatroom"
    verbose_name = "Chat room"

    def ready(self) -> None:
        from .models import NameKey

        # Every save of a user keeps the keys its name is compared under (guests may not take a look-alike).
        post_save.connect(NameKey.user_saved, sender=settings.AUTH_USER_MODEL, dispatch_uid="chatroom.name_keys")
