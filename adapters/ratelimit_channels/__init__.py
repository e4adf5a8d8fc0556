"""Django Channels adapter: WebSocket rate limits enforced by an ASGI middleware."""
