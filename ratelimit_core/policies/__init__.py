"""Framework-free enforcement on top of any `Backend`: who a client is, whether a
connection is admitted, whether a message passes, and the wire codes of a denial.

Adapters (such as ``ratelimit_channels``) map their framework's events to these
calls and put the resulting `Denial` on the wire. The building blocks (key
builders, defaults, IP parsing, close reasons) stay importable from their modules:
`codes`, `connections`, `messages`, `message_types`, `quotas`, `leases`, `identity`, `failures`.
"""

from ..failure_modes import OnError
from .codes import CloseCode, ErrorCode
from .connections import ConnectionLimits, ConnectionPolicy, Occupancy
from .identity import ClientIdentity, TrustedProxies, client_ip
from .keeper import LeaseKeeper
from .leases import Leases
from .message_types import MessageTypeResolver, TypeRate, json_message_type
from .messages import MessageGate, MessageLimits, MessagePolicy
from .quotas import MessageQuota
from .verdicts import Admitted, Allowed, ConnectionVerdict, Denial, MessageVerdict

__all__ = [
    "Admitted",
    "Allowed",
    "ClientIdentity",
    "CloseCode",
    "ConnectionLimits",
    "ConnectionPolicy",
    "ConnectionVerdict",
    "Denial",
    "ErrorCode",
    "LeaseKeeper",
    "Leases",
    "MessageGate",
    "MessageLimits",
    "MessagePolicy",
    "MessageQuota",
    "MessageTypeResolver",
    "MessageVerdict",
    "Occupancy",
    "OnError",
    "TrustedProxies",
    "TypeRate",
    "client_ip",
    "json_message_type",
]
