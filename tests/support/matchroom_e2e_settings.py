"""Django settings for the end-to-end tests: the example's, plus the test's overrides.

`app_servers.AppServer` passes the overrides as JSON in ``MATCHROOM_E2E_SETTINGS``
(``{"WS_RATE_LEASE_MS": 1500, ...}``), so each test states the limits it relies on
instead of depending on the example's demonstrative values.
"""

from __future__ import annotations

import json
import os

from matchroom.settings import *  # noqa: F403

# The example's per-type rates and quota would refuse frames of tests that do not expect them: off unless asked for.
WS_RATE_MSG_TYPES = None
WS_RATE_MSG_QUOTA = None
# Likewise the attempt rate, which would refuse the bursts of connections other tests open.
WS_RATE_CONNECT_RPS = None
WS_RATE_CONNECT_BURST = None
globals().update(json.loads(os.environ.get("MATCHROOM_E2E_SETTINGS", "{}")))
