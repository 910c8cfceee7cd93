"""Certificates: devorg's own CA and server certificate (trustme), and the connected app's JWT key.

Clients trust devorg through its CA bundle, exactly as they would trust a corporate proxy's CA.
The files live in the org's data directory so they survive restarts.
"""

from __future__ import annotations

import os
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .org import Org


def private_dir(directory: Path) -> Path:
    """Create (or tighten) a directory only its owner can enter: devorg's data, certificates and keys."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    return directory


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable only by its owner (created 0600, never world-readable in between)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)


def ensure_certificates(directory: Path) -> dict[str, Path]:
    """CA bundle, server certificate chain and key for 127.0.0.1/localhost (created once).

    The CA's private key is kept too (`ca-key.pem`, 0600) so the same CA can issue again; whoever can read
    it could make certificates every client of this devorg trusts, hence owner-only like the server key.
    """
    private_dir(directory)
    paths = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server-key.pem"}
    if not all(p.exists() for p in paths.values()):
        ca = trustme.CA(organization_name="devorg local CA")
        cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
        ca.cert_pem.write_to_path(str(paths["ca"]))
        write_private(directory / "ca-key.pem", ca.private_key_pem.bytes())
        write_private(paths["key"], cert.private_key_pem.bytes())
        with open(paths["cert"], "wb") as out:
            for blob in cert.cert_chain_pems:
                out.write(blob.bytes())
    for secret in (paths["key"], directory / "ca-key.pem"):
        if secret.exists():
            os.chmod(secret, 0o600)
    return paths


def _key_dir(org: Org) -> Path:
    if org.data_dir:
        return org.data_dir
    directory = Path(org.store.get_meta("tmp_dir") or "")
    if not org.store.get_meta("tmp_dir"):
        import tempfile

        directory = Path(tempfile.mkdtemp(prefix="devorg-"))
        org.store.set_meta("tmp_dir", str(directory))
    return directory


def jwt_private_key_path(org: Org) -> Path:
    """The connected app's private key (PEM): clients sign JWT bearer assertions with it."""
    path = _key_dir(org) / "jwt-private-key.pem"
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        write_private(
            path,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
    os.chmod(path, 0o600)
    return path


def jwt_public_key(org: Org):
    key = serialization.load_pem_private_key(jwt_private_key_path(org).read_bytes(), password=None)
    return key.public_key()
