"""The HTTP side: the demo page, and the limits it displays."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from ratelimit_channels import SETTINGS

__all__ = ["index", "limits"]

_PAGE: Final = Path(__file__).with_name("static") / "index.html"
_SHOWN: Final = (
    "conn_per_user",
    "conn_per_ip",
    "room_max_members",
    "connect_rps",
    "connect_burst",
    "msg_rps",
    "msg_burst",
    "msg_strikes",
    "msg_types",
    "msg_quota",
    "max_payload_bytes",
    "conn_retry_ms",
    "lease_ms",
)


def index(request: HttpRequest) -> HttpResponse:
    """The one static page (vanilla JavaScript, no build step)."""
    return HttpResponse(_PAGE.read_bytes(), content_type="text/html; charset=utf-8")


def limits(request: HttpRequest) -> JsonResponse:
    """The limits in force, by keyword name, and the backend's kind (never its URL, which may hold a password)."""
    shown: dict[str, object] = {}
    for field in _SHOWN:
        setting, default = SETTINGS[field]
        shown[field] = getattr(settings, setting, default)
    backend = getattr(settings, SETTINGS["backend"][0], SETTINGS["backend"][1])
    shown["backend"] = backend.partition("://")[0] if isinstance(backend, str) else type(backend).__name__
    return JsonResponse(shown)
