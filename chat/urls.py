"""``/chat/`` routes (included from reconcile_project/urls.py): the chat platforms' request URLs."""

from django.urls import path

from chat import views

app_name = "chat"

urlpatterns = [
    path("discord/interactions", views.discord_interactions, name="discord-interactions"),
    path("slack/commands", views.slack_commands, name="slack-commands"),
]
