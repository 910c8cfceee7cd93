"""pytest fixtures: a devorg org served over HTTPS, and simple-salesforce clients connected to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from simple_salesforce import Salesforce

from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline.salesforce.connection import TrustingSession

SHARED = Path(__file__).resolve().parents[2] / "shared"


def shared_reference(*parts: str) -> Path:
    """A file from ../shared/reference (the recorded real-org material); fails loudly if missing."""
    import os

    base = Path(os.environ.get("SF_PIPELINE_SHARED_DIR", SHARED))
    path = base.joinpath("reference", *parts)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the describe fidelity checks need ../shared/reference "
                                "(set SF_PIPELINE_SHARED_DIR to the shared folder)")
    return path


def tls_session(server: DevOrgServer) -> requests.Session:
    """A session trusting devorg's CA (and not overridden by REQUESTS_CA_BUNDLE, see TrustingSession)."""
    return TrustingSession(server.ca_bundle)


def login_domain(server: DevOrgServer) -> str:
    """simple-salesforce builds https://{domain}.salesforce.com/...: this routes it to devorg."""
    return f"{server.host}:{server.port}/login"


def connect(server: DevOrgServer, user: str = "admin") -> Salesforce:
    """Log in through the SOAP partner API with username, password and security token."""
    cred = server.org.user(user)
    return Salesforce(username=cred.username, password=cred.password, security_token=cred.security_token,
                      domain=login_domain(server), session=tls_session(server))


@pytest.fixture
def devorg(tmp_path: Path) -> Iterator[DevOrgServer]:
    with DevOrgServer(tmp_path / "devorg") as server:
        yield server


@pytest.fixture
def sf(devorg: DevOrgServer) -> Salesforce:
    return connect(devorg, "admin")
