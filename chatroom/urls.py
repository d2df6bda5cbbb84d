from django.urls import path

from . import api, sse, views

app_name = "chatroom"

urlpatterns = [
    path("", views.chat_page, name="lobby"),
    path("r/<slug:room>/", views.chat_page, name="room"),
    path("r/<str:room>/events", sse.events, name="events"),
    path("api/rooms/<str:room>/messages", api.post_message, name="post-message"),
]
