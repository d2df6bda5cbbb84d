from django.urls import path

from . import views

app_name = "chatroom"

urlpatterns = [
    path("", views.chat_page, name="lobby"),
    path("r/<slug:room>/", views.chat_page, name="room"),
]
