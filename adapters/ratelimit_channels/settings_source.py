"""Reading the ``WS_RATE_*`` values out of Django's settings, once per connection, cheaply.

The middleware reads about thirty settings when each connection starts, most of
them unset. Asking ``django.conf.settings`` for an unset one raises and catches
an `AttributeError` two or three times over (the lazy wrapper, then each
``override_settings`` layer), which cost more than the rest of a connection's
admission. `SettingLayers.value` gives what ``getattr(settings, name, default)``
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

__all__ = ["SettingLayers", "django_settings", "setting_value"]

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
    return SettingLayers(source).value(name, default)


class SettingLayers:
    """The layers of one settings object, resolved once to read many settings from them.

    Each ``override_settings`` layer (and ``settings.configure()``) is a
    `UserSettingsHolder`: its own values, the names it deleted, then the layer
    below. The last layer is a module without a module ``__getattr__`` (read from
    its namespace) or any other object (read with ``getattr``).
    """

    __slots__ = ("_bottom", "_bottom_values", "_layers")

    def __init__(self, source: object | None) -> None:
        self._layers: list[tuple[dict[str, object], frozenset[str] | set[str]]] = []
        layer = source
        for _ in range(_MAX_LAYERS):
            if type(layer) is not UserSettingsHolder:
                break
            self._layers.append((vars(layer), layer._deleted))
            layer = layer.default_settings
        self._bottom = layer
        self._bottom_values: dict[str, object] | None = None
        if type(layer) is ModuleType and "__getattr__" not in vars(layer):
            self._bottom_values = vars(layer)

    def value(self, name: str, default: object) -> object:
        """What ``getattr(settings, name, default)`` gives for an upper-case `name`."""
        for values, deleted in self._layers:
            if name in values:
                return values[name]
            if name in deleted:
                return default
        if self._bottom_values is not None:
            return self._bottom_values.get(name, default)
        return getattr(self._bottom, name, default)
