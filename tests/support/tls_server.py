"""`TLSServerProcess`: a redis-server that speaks only TLS, with a certificate from a test CA.

The CA and the certificate (for 127.0.0.1) come from trustme; a client that is not
given the CA's file cannot verify the certificate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import trustme

from support.servers import ServerProcess

__all__ = ["TLSServerProcess"]


@dataclass
class TLSServerProcess(ServerProcess):
    """TLS on `port` (the one `start` picks and waits for); the plain port is off."""

    ca: trustme.CA = field(default_factory=trustme.CA)

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0"

    @property
    def ca_file(self) -> str:
        """The PEM file of the CA that signed the server's certificate (what a client must trust)."""
        return str(Path(self._dir.name) / "ca.pem")

    def _command(self) -> list[str]:
        directory = Path(self._dir.name)
        certificate = self.ca.issue_cert("127.0.0.1")
        certificate.private_key_pem.write_to_path(str(directory / "server.key"))
        certificate.cert_chain_pems[0].write_to_path(str(directory / "server.pem"))
        self.ca.cert_pem.write_to_path(self.ca_file)
        # Later arguments win: the plain port set by ServerProcess is turned off.
        return [
            *super()._command(),
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(directory / "server.pem"),
            "--tls-key-file", str(directory / "server.key"),
            "--tls-ca-cert-file", self.ca_file,
            "--tls-auth-clients", "no",
        ]  # fmt: skip
