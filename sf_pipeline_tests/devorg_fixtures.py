"""pytest fixtures: a devorg org served over HTTPS, and simple-salesforce clients connected to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from simple_salesforce import Salesforce

from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline.salesforce.connection import TrustingSession

CHECKOUT = Path(__file__).resolve().parents[1]


def _shared_dirs() -> list[Path]:
    """Where ../shared may be: SF_PIPELINE_SHARED_DIR, beside this checkout, or beside the local repository
    this checkout was cloned from (a CI clone in a temporary folder)."""
    import os
    import subprocess

    if os.environ.get("SF_PIPELINE_SHARED_DIR"):
        return [Path(os.environ["SF_PIPELINE_SHARED_DIR"])]
    dirs = [CHECKOUT.parent / "shared"]
    origin = subprocess.run(
        ["git", "-C", str(CHECKOUT), "config", "--get", "remote.origin.url"], capture_output=True, text=True
    ).stdout.strip()
    if origin and Path(origin).is_dir():
        dirs.append(Path(origin).resolve().parent / "shared")
    return dirs


def shared_reference(*parts: str) -> Path:
    """A file from ../shared/reference (the recorded real-org material); fails loudly if missing."""
    tried = [base.joinpath("reference", *parts) for base in _shared_dirs()]
    for path in tried:
        if path.exists():
            return path
    raise FileNotFoundError(
        f"{' and '.join(map(str, tried))} missing: the describe fidelity checks need "
        "../shared/reference (set SF_PIPELINE_SHARED_DIR to the shared folder)"
    )


def tls_session(server: DevOrgServer) -> requests.Session:
    """A session trusting devorg's CA (and not overridden by REQUESTS_CA_BUNDLE, see TrustingSession)."""
    return TrustingSession(server.ca_bundle)


def login_domain(server: DevOrgServer) -> str:
    """simple-salesforce builds https://{domain}.salesforce.com/...: this routes it to devorg."""
    return f"{server.host}:{server.port}/login"


def connect(server: DevOrgServer, user: str = "admin") -> Salesforce:
    """Log in through the SOAP partner API with username, password and security token."""
    cred = server.org.user(user)
    return Salesforce(
        username=cred.username,
        password=cred.password,
        security_token=cred.security_token,
        domain=login_domain(server),
        session=tls_session(server),
    )


@pytest.fixture
def devorg(tmp_path: Path) -> Iterator[DevOrgServer]:
    with DevOrgServer(tmp_path / "devorg") as server:
        yield server


@pytest.fixture
def sf(devorg: DevOrgServer) -> Salesforce:
    return connect(devorg, "admin")
