"""`TLSServerProcess`: a redis-server that speaks only TLS, with a certificate from a test CA.

The CA and the certificates (the server's for 127.0.0.1, and a client's) come from
trustme; a client that is not given the CA's file cannot verify the server. With
``client_auth=True`` the server asks every client for a certificate signed by that
CA (``tls-auth-clients yes``) and drops a client without one.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import trustme

from support.servers import CLUSTER_NODE_ARGS, ClusterProcess, ServerProcess

__all__ = ["TLSClusterProcess", "TLSServerProcess", "client_certificate", "tls_arguments"]


def tls_arguments(directory: Path, ca: trustme.CA, *, client_auth: bool) -> list[str]:
    """redis-server arguments for TLS only (the plain port off), with files written into `directory`.

    The TLS port is the one ``--port`` named: pass these after the plain arguments.
    """
    server = ca.issue_cert("127.0.0.1")
    server.private_key_pem.write_to_path(str(directory / "server.key"))
    server.cert_chain_pems[0].write_to_path(str(directory / "server.pem"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    return [
        "--tls-cert-file", str(directory / "server.pem"),
        "--tls-key-file", str(directory / "server.key"),
        "--tls-ca-cert-file", str(directory / "ca.pem"),
        "--tls-auth-clients", "yes" if client_auth else "no",
    ]  # fmt: skip


def client_certificate(directory: Path, ca: trustme.CA) -> tuple[str, str]:
    """A client certificate signed by `ca`, written into `directory`: (certificate file, key file)."""
    client = ca.issue_cert("ratelimit-client")
    certfile, keyfile = directory / "client.pem", directory / "client.key"
    if not certfile.exists():
        client.cert_chain_pems[0].write_to_path(str(certfile))
        client.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile)


@dataclass
class TLSServerProcess(ServerProcess):
    """TLS on `port` (the one `start` picks and waits for); the plain port is off."""

    ca: trustme.CA = field(default_factory=trustme.CA)
    client_auth: bool = False
    """Require a client certificate signed by `ca` (``tls-auth-clients yes``)."""

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0"

    @property
    def ca_file(self) -> str:
        """The PEM file of the CA that signed the server's certificate (what a client must trust)."""
        return str(Path(self._dir.name) / "ca.pem")

    def client_files(self) -> tuple[str, str]:
        """A client certificate this server accepts: (certificate file, key file)."""
        return client_certificate(Path(self._dir.name), self.ca)

    def verified_url(self, *, client_certificate: bool = True) -> str:
        """`url` with the query options that trust the CA and, by default, present a client certificate."""
        options = {"ssl_ca_certs": self.ca_file}
        if client_certificate:
            options["ssl_certfile"], options["ssl_keyfile"] = self.client_files()
        return f"{self.url}?{urlencode(options)}"

    def _command(self) -> list[str]:
        tls = tls_arguments(Path(self._dir.name), self.ca, client_auth=self.client_auth)
        # Later arguments win: the plain port set by ServerProcess is turned off.
        return [*super()._command(), "--port", "0", "--tls-port", str(self.port), *tls]


@dataclass
class TLSClusterProcess(ClusterProcess):
    """A three-master Redis Cluster speaking only TLS, clients and cluster bus alike, client certificates required."""

    ca: trustme.CA = field(default_factory=trustme.CA)
    _client_dir: tempfile.TemporaryDirectory[str] = field(default_factory=tempfile.TemporaryDirectory)

    @property
    def url(self) -> str:
        """A ``rediss+cluster://`` URL naming every node, with the options to verify and be verified."""
        certfile, keyfile = self.client_files()
        query = urlencode({"ssl_ca_certs": self.ca_file, "ssl_certfile": certfile, "ssl_keyfile": keyfile})
        return "rediss+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes) + f"?{query}"

    @property
    def ca_file(self) -> str:
        path = Path(self._client_dir.name) / "ca.pem"
        if not path.exists():
            self.ca.cert_pem.write_to_path(str(path))
        return str(path)

    def client_files(self) -> tuple[str, str]:
        return client_certificate(Path(self._client_dir.name), self.ca)

    def _node(self, port: int) -> ServerProcess:
        return TLSServerProcess(
            self.binary,
            extra_args=(*CLUSTER_NODE_ARGS, "--tls-cluster", "yes"),
            port=port,
            ca=self.ca,
            client_auth=True,
        )

    def _cli_options(self) -> list[str]:
        certfile, keyfile = self.client_files()
        return ["--tls", "--cacert", self.ca_file, "--cert", certfile, "--key", keyfile]

    def close(self) -> None:
        super().close()
        self._client_dir.cleanup()
