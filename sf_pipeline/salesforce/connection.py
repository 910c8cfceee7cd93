"""Org credentials come only from `SALESFORCE_<ALIAS>_*` environment variables, never from config."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, fields
from urllib.parse import urlparse

import requests
from simple_salesforce import Salesforce

from .errors import MissingCredentials, OrgUnreachable

DEFAULT_API_VERSION = "59.0"
VARIABLES = (
    "INSTANCE_URL",
    "LOGIN_URL",
    "USERNAME",
    "PASSWORD",
    "SECURITY_TOKEN",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "ACCESS_TOKEN",
    "CA_BUNDLE",
    "PRIVATE_KEY_FILE",
)
SECRET = {"password", "security_token", "client_secret", "access_token"}


@dataclass(frozen=True, repr=False)
class OrgCredentials:
    alias: str
    instance_url: str | None = None
    login_url: str | None = None
    username: str | None = None
    password: str | None = None
    security_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    access_token: str | None = None
    ca_bundle: str | None = None
    private_key_file: str | None = None

    @classmethod
    def from_env(cls, alias: str, environ: dict[str, str] | None = None) -> OrgCredentials:
        env = os.environ if environ is None else environ
        prefix = f"SALESFORCE_{alias.upper()}_"
        values = {name.lower(): env.get(prefix + name) or None for name in VARIABLES}
        return cls(alias=alias, **values)

    def __repr__(self) -> str:  # never print secrets
        shown = ", ".join(
            f"{f.name}={'***' if f.name in SECRET and getattr(self, f.name) else getattr(self, f.name)!r}"
            for f in fields(self)
        )
        return f"OrgCredentials({shown})"

    @property
    def flow(self) -> str:
        if self.access_token and self.instance_url:
            return "access token"
        if self.username and self.client_id and self.private_key_file:
            return "JWT bearer"
        if self.username and self.password and self.client_id and self.client_secret:
            return "OAuth password"
        if self.username and self.password:
            return "SOAP password"
        if self.client_id and self.client_secret:
            return "OAuth client credentials"
        prefix = f"SALESFORCE_{self.alias.upper()}_"
        raise MissingCredentials(
            f"no credentials for org alias '{self.alias}': set {prefix}USERNAME and {prefix}PASSWORD "
            f"(+ {prefix}SECURITY_TOKEN), or {prefix}CLIENT_ID and {prefix}CLIENT_SECRET, or "
            f"{prefix}ACCESS_TOKEN with {prefix}INSTANCE_URL"
        )

    def login_domain(self) -> str:
        """simple-salesforce's `domain`: `login`/`test` for real orgs, a host:port route for others."""
        url = self.login_url or "https://login.salesforce.com"
        parsed = urlparse(url if "://" in url else "https://" + url)
        host = parsed.netloc
        if host.endswith(".salesforce.com"):
            return host[: -len(".salesforce.com")]
        # simple-salesforce builds https://{domain}.salesforce.com/...; a path segment keeps the host intact
        # (login endpoints answer under any path prefix).
        return f"{host}{parsed.path.rstrip('/')}/login"


@dataclass(frozen=True)
class HttpTimeouts:
    """Seconds to open a connection to the org, and to wait between bytes of its answer.

    requests waits forever without a timeout: a server that never answers would hold the run and its API slot.
    """

    connect: float = 10.0
    read: float = 120.0


class TrustingSession(requests.Session):
    """A requests session for one org: its CA bundle, and timeouts on every request.

    requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override `Session.verify` for every request
    (psf/requests#3829), so an org's own CA bundle would be ignored on machines that set them; proxies from the
    environment still apply. Every request through the session (simple-salesforce's login and REST calls, the
    pipeline's Bulk and SOAP calls) gets the connect and read timeouts unless it sets its own.
    """

    def __init__(self, ca_bundle: str | None = None, timeouts: HttpTimeouts | None = None):
        super().__init__()
        if ca_bundle:
            self.verify = ca_bundle
        self.timeouts = timeouts or HttpTimeouts()

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = (self.timeouts.connect, self.timeouts.read)
        return super().request(method, url, *args, **kwargs)

    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[override]
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if isinstance(self.verify, str) and verify in (True, None):
            settings["verify"] = self.verify
        return settings


def connect(
    creds: OrgCredentials,
    version: str = DEFAULT_API_VERSION,
    timeouts: HttpTimeouts | None = None,
    *,
    attempts: int = 4,
    backoff: float = 0.5,
) -> Salesforce:
    """An authenticated simple-salesforce client for the alias, trusting its CA bundle if given, every call
    bounded by `timeouts` (HttpTimeouts() defaults when not given). A login that times out or loses its
    connection is tried again (`attempts` in all, `backoff` seconds doubling between them)."""
    for attempt in range(1, attempts + 1):
        try:
            return _login(creds, version, TrustingSession(creds.ca_bundle, timeouts))
        except (requests.ConnectionError, requests.Timeout) as exc:
            if attempt == attempts:
                raise OrgUnreachable(
                    f"could not log in to org '{creds.alias}' after {attempts} attempts: {exc}"
                ) from exc
            time.sleep(backoff * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def _login(creds: OrgCredentials, version: str, session: TrustingSession) -> Salesforce:
    flow = creds.flow
    common = {"session": session, "version": version}
    if flow == "access token":
        return Salesforce(instance_url=creds.instance_url, session_id=creds.access_token, **common)
    domain = creds.login_domain()
    if flow == "JWT bearer":
        return Salesforce(
            username=creds.username,
            consumer_key=creds.client_id,
            privatekey_file=creds.private_key_file,
            domain=domain,
            **common,
        )
    if flow == "OAuth password":
        return Salesforce(
            username=creds.username,
            password=(creds.password or "") + (creds.security_token or ""),
            consumer_key=creds.client_id,
            consumer_secret=creds.client_secret,
            domain=domain,
            **common,
        )
    if flow == "SOAP password":
        return Salesforce(
            username=creds.username,
            password=creds.password,
            security_token=creds.security_token or "",
            domain=domain,
            **common,
        )
    return Salesforce(consumer_key=creds.client_id, consumer_secret=creds.client_secret, domain=domain, **common)
