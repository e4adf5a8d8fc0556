"""Framework-free enforcement on top of any `Backend`: who a client is, whether a
connection is admitted, whether a message passes, and the wire codes of a denial.

Adapters (such as ``ratelimit_channels``) map their framework's events to these
calls and put the resulting `Denial` on the wire.
"""

from .codes import (
    BACKEND_UNAVAILABLE,
    CLOSE_CONNECTION_REFUSED,
    CLOSE_PAYLOAD_TOO_LARGE,
    CLOSE_RATE_LIMITED,
    CLOSE_TRY_AGAIN_LATER,
    CONNECTION_LIMIT_EXCEEDED,
    ERROR_FRAME_TYPE,
    HTTP_SERVICE_UNAVAILABLE,
    HTTP_TOO_MANY_REQUESTS,
    MAX_CLOSE_REASON_BYTES,
    PAYLOAD_TOO_LARGE,
    RATE_LIMIT_EXCEEDED,
    ROOM_FULL,
    close_reason,
)
from .connections import (
    DEFAULT_CONN_RETRY_MS,
    ConnectionLimits,
    ConnectionPolicy,
    Occupancy,
    identity_slots_key,
    ip_slots_key,
    room_members_key,
)
from .failures import (
    DEFAULT_UNAVAILABLE_RETRY_MS,
    ON_ERROR_CHOICES,
    OnError,
    check_on_error,
    connection_unavailable,
    message_unavailable,
)
from .identity import NO_PROXIES, UNKNOWN_IP, ClientIdentity, TrustedProxies, client_ip, parse_ip
from .leases import DEFAULT_LEASE_MS, Leases, Slot
from .messages import DEFAULT_STRIKES, MessageGate, MessageLimits, MessagePolicy, message_bucket_key, payload_exceeds
from .verdicts import Admitted, Allowed, ConnectionVerdict, Denial, MessageVerdict

__all__ = [
    "BACKEND_UNAVAILABLE",
    "CLOSE_CONNECTION_REFUSED",
    "CLOSE_PAYLOAD_TOO_LARGE",
    "CLOSE_RATE_LIMITED",
    "CLOSE_TRY_AGAIN_LATER",
    "CONNECTION_LIMIT_EXCEEDED",
    "DEFAULT_CONN_RETRY_MS",
    "DEFAULT_LEASE_MS",
    "DEFAULT_STRIKES",
    "DEFAULT_UNAVAILABLE_RETRY_MS",
    "ERROR_FRAME_TYPE",
    "HTTP_SERVICE_UNAVAILABLE",
    "HTTP_TOO_MANY_REQUESTS",
    "MAX_CLOSE_REASON_BYTES",
    "NO_PROXIES",
    "ON_ERROR_CHOICES",
    "PAYLOAD_TOO_LARGE",
    "RATE_LIMIT_EXCEEDED",
    "ROOM_FULL",
    "UNKNOWN_IP",
    "Admitted",
    "Allowed",
    "ClientIdentity",
    "ConnectionLimits",
    "ConnectionPolicy",
    "ConnectionVerdict",
    "Denial",
    "Leases",
    "MessageGate",
    "MessageLimits",
    "MessagePolicy",
    "MessageVerdict",
    "Occupancy",
    "OnError",
    "Slot",
    "TrustedProxies",
    "check_on_error",
    "client_ip",
    "close_reason",
    "connection_unavailable",
    "identity_slots_key",
    "ip_slots_key",
    "message_bucket_key",
    "message_unavailable",
    "parse_ip",
    "payload_exceeds",
    "room_members_key",
]
