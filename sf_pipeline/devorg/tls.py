"""Certificates: devorg's own CA and server certificate (trustme), and the connected app's JWT key.

Clients trust devorg through its CA bundle, exactly as they would trust a corporate proxy's CA.
The files live in the org's data directory so they survive restarts.
"""

from __future__ import annotations

from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .org import Org


def ensure_certificates(directory: Path) -> dict[str, Path]:
    """CA bundle, server certificate chain and key for 127.0.0.1/localhost (created once)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server-key.pem"}
    if not all(p.exists() for p in paths.values()):
        ca = trustme.CA(organization_name="devorg local CA")
        cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
        ca.cert_pem.write_to_path(str(paths["ca"]))
        cert.private_key_pem.write_to_path(str(paths["key"]))
        with open(paths["cert"], "wb") as out:
            for blob in cert.cert_chain_pems:
                out.write(blob.bytes())
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
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return path


def jwt_public_key(org: Org):
    key = serialization.load_pem_private_key(jwt_private_key_path(org).read_bytes(), password=None)
    return key.public_key()
