"""A Kafka-protocol broker that clients reach over TLS only: Tansu behind socat.

Tansu's command line cannot enable TLS (its `--cert` and `--key` options exclude each other,
and it serves TLS only with both), so the broker listens in plain TCP on a port of its own
and advertises the port of a TLS terminator in front of it: socat, with a self-signed
certificate for 127.0.0.1 made here. Every client that follows the metadata (consumers,
producers, admin) then speaks TLS, and one that verifies the certificate against another
authority fails as it would against a real cluster.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from stampline._orphans import die_with_parent
from stampline.broker import EmbeddedBroker, _free_port


def self_signed(folder: Path, name: str = "stampline test broker") -> tuple[Path, Path]:
    """A key and a self-signed certificate for 127.0.0.1 (PEM files): the certificate is
    its own authority, so it is also what a client gives as ``ssl.ca.location``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        # librdkafka checks the host name (ssl.endpoint.identification.algorithm=https)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / name.replace(" ", "-")
    cert_path, key_path = stem.with_suffix(".crt"), stem.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass(frozen=True)
class TlsBroker:
    bootstrap: str  # the TLS port: the only one the broker advertises
    ca: Path  # the certificate to trust
    # where the broker asks clients for a certificate: a key and certificate it accepts
    identity: tuple[Path, Path] | None = None

    @property
    def client(self) -> dict[str, Any]:
        """The client settings that reach it (a stampline config's ``client:`` section)."""
        settings = {"security.protocol": "ssl", "ssl.ca.location": str(self.ca)}
        if self.identity is not None:
            cert, key = self.identity
            settings |= {"ssl.certificate.location": str(cert), "ssl.key.location": str(key)}
        return settings


@contextmanager
def tls_broker(folder: Path, mutual: bool = False) -> Iterator[TlsBroker]:
    """A broker behind a TLS terminator, both stopped on exit. ``mutual``: the terminator
    also asks each client for a certificate and refuses one it does not trust (mTLS)."""
    socat = shutil.which("socat")
    assert socat, "socat is missing: ./dev test installs it (system-packages.txt)"
    cert, key = self_signed(folder)
    identity = self_signed(folder, "stampline client") if mutual else None
    verify = f"verify=1,cafile={identity[0]}" if identity else "verify=0"
    tls_port = _free_port()
    log = folder / "socat.log"
    with EmbeddedBroker(advertised_port=tls_port) as broker, log.open("wb") as err:
        terminator = subprocess.Popen(
            [
                socat,
                f"OPENSSL-LISTEN:{tls_port},bind=127.0.0.1,reuseaddr,fork,"
                f"cert={cert},key={key},{verify}",
                f"TCP:127.0.0.1:{broker.port}",
            ],
            stdin=subprocess.DEVNULL,
            stderr=err,
            preexec_fn=die_with_parent(),
        )
        try:
            _wait_tls(tls_port, cert, identity, terminator, log)
            yield TlsBroker(f"127.0.0.1:{tls_port}", cert, identity)
        finally:
            terminator.terminate()
            terminator.wait(5)


def _wait_tls(
    port: int,
    ca: Path,
    identity: tuple[Path, Path] | None,
    proc: subprocess.Popen[bytes],
    log: Path,
    timeout_s: float = 10,
) -> None:
    context = ssl.create_default_context(cafile=str(ca))
    if identity is not None:
        context.load_cert_chain(*identity)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1"),
            ):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait(5)
                why = log.read_text()
                raise RuntimeError(f"socat did not serve TLS on {port}: {why}") from None
            time.sleep(0.05)
