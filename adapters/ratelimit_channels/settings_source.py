"""Reading the ``WS_RATE_*`` values out of Django's settings, once per connection, cheaply.

The middleware reads about thirty settings when each connection starts, most of
them unset. Asking ``django.conf.settings`` for an unset one raises and catches
an `AttributeError` two or three times over (the lazy wrapper, then each
``override_settings`` layer), which cost more than the rest of a connection's
admission. `setting_value` gives what ``getattr(settings, name, default)``
gives, walking the same layers as dictionary lookups: the layers
``override_settings`` and ``settings.configure()`` make (`UserSettingsHolder`,
which hides deleted names), a settings module, and any other object through
plain ``getattr``.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Final

from django.conf import UserSettingsHolder
from django.utils.functional import empty

__all__ = ["django_settings", "setting_value"]

_MAX_LAYERS: Final = 64
"""Bound on the ``override_settings`` layers walked before falling back to plain ``getattr``."""


def django_settings() -> object | None:
    """The object Django's settings are read from, or None when Django is not configured."""
    from django.conf import settings

    if not (settings.configured or os.environ.get("DJANGO_SETTINGS_MODULE")):
        return None
    wrapped: object = settings._wrapped
    if wrapped is empty:
        settings._setup()
        wrapped = settings._wrapped
    # The lazy wrapper adds nothing to a WS_RATE_* value (it only special-cases Django's own).
    return wrapped


def setting_value(source: object | None, name: str, default: object) -> object:
    """``getattr(source, name, default)`` for an upper-case setting `name`, without raising on a missing one."""
    layer = source
    for _ in range(_MAX_LAYERS):
        if type(layer) is UserSettingsHolder:
            values = vars(layer)
            if name in values:
                return values[name]
            if name in layer._deleted:
                return default
            layer = layer.default_settings
        elif type(layer) is ModuleType and "__getattr__" not in vars(layer):
            return vars(layer).get(name, default)
        else:
            break
    return getattr(layer, name, default)
