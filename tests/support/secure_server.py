"""`SecureServerProcess`: a redis-server as security teams run it, for the ``acl`` tox environment.

Two switches, each an environment variable read by the suite's session servers
(tests/conftest.py), so either can be run alone:

- ``RATELIMIT_TEST_REDIS_TLS=1``: TLS only (the plain port off), the server's
  certificate from a test CA, verified by the clients, and a client certificate
  required (``tls-auth-clients yes``).
- ``RATELIMIT_TEST_REDIS_ACL=1``: the default user off; the driver connects as
  `LIMITER_USER`, whose rights are exactly `acl_rule` (for the empty prefix, since
  the suite's tests use many prefixes); fixtures that need more (flushing the
  script cache, reading keys raw) connect as `ADMIN_USER` through `admin_url`.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import trustme

from ratelimit_core.redis import acl_rule
from support.servers import ServerProcess
from support.tls_server import client_certificate, tls_arguments

__all__ = [
    "ADMIN_USER",
    "LIMITER_USER",
    "SECURE_ACL",
    "SECURE_TLS",
    "SecureServerProcess",
    "admin_url",
    "url_as",
]

LIMITER_USER = "ratelimit"
ADMIN_USER = "suite-admin"


def _switch(name: str) -> bool:
    return os.environ.get(f"RATELIMIT_TEST_REDIS_{name}", "").lower() in ("1", "true", "yes")


SECURE_TLS = _switch("TLS")
"""RATELIMIT_TEST_REDIS_TLS: the session redis-server speaks only TLS and requires client certificates."""
SECURE_ACL = _switch("ACL")
"""RATELIMIT_TEST_REDIS_ACL: the session redis-server's default user is off; the driver runs as `LIMITER_USER`."""


@dataclass
class SecureServerProcess(ServerProcess):
    """A redis-server with TLS (client certificates required) and/or an ACL with the default user off."""

    tls: bool = False
    acl: bool = False
    ca: trustme.CA = field(default_factory=trustme.CA)
    limiter_password: str = field(default_factory=lambda: secrets.token_hex(16))
    admin_password: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def url(self) -> str:
        """The URL the code under test uses: the least-privilege user, TLS with a client certificate."""
        return self.url_as(LIMITER_USER if self.acl else None, self.limiter_password)

    @property
    def admin_url(self) -> str:
        """A URL with every right, for fixtures only."""
        return self.url_as(ADMIN_USER if self.acl else None, self.admin_password)

    @property
    def ca_file(self) -> str:
        return str(Path(self._dir.name) / "ca.pem")

    def client_files(self) -> tuple[str, str]:
        """A client certificate this server accepts: (certificate file, key file)."""
        return client_certificate(Path(self._dir.name), self.ca)

    def url_as(self, user: str | None, password: str, *, port: int | None = None) -> str:
        """The URL that logs in as `user` (None: no credentials) with this server's TLS options, on `port`
        (a proxy's) or the server's."""
        address = f"127.0.0.1:{port or self.port}/0"
        if user is not None:
            address = f"{user}:{password}@{address}"
        if not self.tls:
            return f"redis://{address}"
        certfile, keyfile = self.client_files()
        query = urlencode({"ssl_ca_certs": self.ca_file, "ssl_certfile": certfile, "ssl_keyfile": keyfile})
        return f"rediss://{address}?{query}"

    def _command(self) -> list[str]:
        directory = Path(self._dir.name)
        command = super()._command()
        if self.acl:
            users = directory / "users.acl"
            users.write_text(
                "user default off\n"
                f"user {LIMITER_USER} on >{self.limiter_password} {acl_rule('')}\n"
                f"user {ADMIN_USER} on >{self.admin_password} ~* &* +@all\n",
                encoding="utf-8",
            )
            command += ["--aclfile", str(users)]
        if self.tls:
            # Later arguments win: the plain port set by ServerProcess is turned off.
            tls = tls_arguments(directory, self.ca, client_auth=True)
            command += ["--port", "0", "--tls-port", str(self.port), *tls]
        return command


def admin_url(server: ServerProcess) -> str:
    """A URL of `server` with every right (its plain URL, unless it is a `SecureServerProcess`)."""
    return server.admin_url if isinstance(server, SecureServerProcess) else server.url


def url_as(server: ServerProcess, user: str, password: str, *, port: int | None = None) -> str:
    """A URL of `server` (or of a proxy in front of it, on `port`) that logs in as `user`."""
    if isinstance(server, SecureServerProcess):
        return server.url_as(user, password, port=port)
    return f"redis://{user}:{password}@127.0.0.1:{port or server.port}/0"
