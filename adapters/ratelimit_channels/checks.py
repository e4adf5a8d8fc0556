"""Django system checks for the ``WS_RATE_*`` settings (``manage.py check``), registered by `apps`.

The values are judged by the middleware's own validation (`settings.setting_problems`),
so a check and the middleware never disagree; the checks report every problem at
once, where the middleware stops at start-up. Ids (documented in the README):

- ``ratelimit_channels.E001``: a setting's value is invalid.
- ``ratelimit_channels.E002``: two settings' values conflict.
- ``ratelimit_channels.E003``: an unknown ``WS_RATE_*`` setting (a typo, most likely).
- ``ratelimit_channels.W001``: the in-process memory backend outside DEBUG (limits per process).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any, Final

from django.apps import AppConfig
from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error
from django.core.checks import Warning as CheckWarning

from ratelimit_core import MemoryBackend
from ratelimit_core.urls import is_in_process

from .settings import SETTINGS, setting_problems

__all__ = ["INVALID_VALUE", "MEMORY_BACKEND", "SETTINGS_CONFLICT", "UNKNOWN_SETTING", "check_settings"]

INVALID_VALUE: Final = "ratelimit_channels.E001"
SETTINGS_CONFLICT: Final = "ratelimit_channels.E002"
UNKNOWN_SETTING: Final = "ratelimit_channels.E003"
MEMORY_BACKEND: Final = "ratelimit_channels.W001"

_PREFIXES: Final = ("WS_RATE_", "WS_MAX_")
"""The prefixes of this adapter's settings: a name under them that is not one is a typo."""


def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """Every problem of the ``WS_RATE_*`` settings (the app does not matter: they are global)."""
    messages: list[CheckMessage] = [
        Error(
            problem.message,
            hint=problem.hint,
            obj=problem.setting,
            id=SETTINGS_CONFLICT if problem.conflict else INVALID_VALUE,
        )
        for problem in setting_problems()
    ]
    messages += _unknown_names()
    messages += _memory_backend_outside_debug()
    return messages


def _unknown_names() -> list[CheckMessage]:
    known = [setting for setting, _ in SETTINGS.values()]
    messages: list[CheckMessage] = []
    for name in sorted(dir(django_settings)):
        if not name.startswith(_PREFIXES) or name in known:
            continue
        closest = difflib.get_close_matches(name, known, n=1)
        fix = f"Did you mean {closest[0]}? Rename it." if closest else f"Valid names: {', '.join(known)}."
        messages.append(
            Error(
                f"{name} is not a setting of ratelimit_channels, so its value {getattr(django_settings, name)!r:.80} "
                "is ignored.",
                hint=f"{fix} If it is your own setting, silence {UNKNOWN_SETTING} in SILENCED_SYSTEM_CHECKS.",
                obj=name,
                id=UNKNOWN_SETTING,
            )
        )
    return messages


def _memory_backend_outside_debug() -> list[CheckMessage]:
    enabled_setting, enabled_default = SETTINGS["enabled"]
    backend_setting, backend_default = SETTINGS["backend"]
    backend = getattr(django_settings, backend_setting, backend_default)
    in_process = isinstance(backend, MemoryBackend) or (isinstance(backend, str) and is_in_process(backend))
    if django_settings.DEBUG or not in_process or getattr(django_settings, enabled_setting, enabled_default) is False:
        return []
    return [
        CheckWarning(
            f"{backend_setting} is the in-process memory backend ({backend!r:.80}) while DEBUG is False: every "
            "server process keeps its own counts, so each limit applies per process, not per site.",
            hint=f"Set {backend_setting} to a shared store such as 'redis://host:6379/0'. If the site runs in "
            f"exactly one process, silence {MEMORY_BACKEND} in SILENCED_SYSTEM_CHECKS.",
            obj=backend_setting,
            id=MEMORY_BACKEND,
        )
    ]
