"""Prometheus metrics of the chat."""

from prometheus_client import Counter

MESSAGES = Counter(
    "chat_messages_total", "Chat messages by outcome: stored, or the reason they were rejected", ["outcome"]
)
