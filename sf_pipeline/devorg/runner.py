"""Run devorg: as a blocking server (the CLI) or in a background thread (tests, the demo)."""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from .org import Org
from .server import DevOrgApp
from .tls import ensure_certificates, jwt_private_key_path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class DevOrgServer:
    """A devorg org served over HTTPS on a local port; use as a context manager.

    >>> with DevOrgServer(generate=100) as devorg:
    ...     sf = Salesforce(instance_url=devorg.instance_url, session_id=devorg.login("admin"), ...)
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        generate: int | None = None,
        seed: int = 42,
        custom_objects: str | Path | None = None,
        name: str = "devorg",
        daily_limit: int | None = None,
        log_level: str = "warning",
        extra_objects: int | None = None,
        files: int = 0,
        file_sizes: dict[int, float] | None = None,
        sandbox: bool | None = None,
    ):
        self._tmp = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="devorg-")
            data_dir = self._tmp.name
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        self.org = Org(
            self.data_dir,
            custom_objects=custom_objects,
            name=name,
            daily_limit=daily_limit,
            extra_objects=extra_objects,
            sandbox=sandbox,
        )
        if generate and self.org.store.count(self.org.schema.get("Opportunity"), include_deleted=True) == 0:
            from .generator import generate_org

            generate_org(self.org, generate, seed)
            if extra_objects or files:
                from .wide_generator import generate_wide

                generate_wide(self.org, generate if extra_objects else 0, files, seed, file_sizes)
        self.app = DevOrgApp(self.org)
        self.certs = ensure_certificates(self.data_dir / "tls")
        self.log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle
    def _config(self) -> uvicorn.Config:
        return uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            ssl_certfile=str(self.certs["cert"]),
            ssl_keyfile=str(self.certs["key"]),
            log_level=self.log_level,
            access_log=False,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=1,
            lifespan="off",
            # let over-long requests reach devorg, which refuses them as Salesforce does
            # (414/431, limits.py) instead of h11's own 16 KB cut-off
            h11_max_incomplete_event_size=1024 * 1024,
        )

    def start(self) -> DevOrgServer:
        self._server = uvicorn.Server(self._config())
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._server.run, name="devorg", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"devorg failed to start on {self.host}:{self.port}")
            time.sleep(0.02)
        return self

    def serve_forever(self) -> None:
        uvicorn.Server(self._config()).run()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True  # don't wait for clients' idle keep-alive connections
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._server = None
        self.org.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> DevOrgServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ----------------------------------------------------------------- how clients connect
    @property
    def instance_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def login_url(self) -> str:
        return self.instance_url

    @property
    def ca_bundle(self) -> str:
        return str(self.certs["ca"])

    def env(self, alias: str = "production", user: str = "admin") -> dict[str, str]:
        """The `SALESFORCE_<ALIAS>_*` variables sf-pipeline reads, for one user of this org."""
        cred = self.org.user(user)
        p = f"SALESFORCE_{alias.upper()}_"
        return {
            p + "INSTANCE_URL": self.instance_url,
            p + "LOGIN_URL": self.login_url,
            p + "USERNAME": cred.username,
            p + "PASSWORD": cred.password,
            p + "SECURITY_TOKEN": cred.security_token,
            p + "CLIENT_ID": self.org.client_id,
            p + "CLIENT_SECRET": self.org.client_secret,
            p + "CA_BUNDLE": self.ca_bundle,
            p + "PRIVATE_KEY_FILE": str(jwt_private_key_path(self.org)),
        }

    @property
    def control_token(self) -> str:
        """The token the control endpoints (`/_devorg/...`) require as `Authorization: Bearer <token>`."""
        return self.org.control_token

    def control_env(self, alias: str = "production") -> dict[str, str]:
        """The `DEVORG_<ALIAS>_CONTROL_*` variables the `sf-pipeline devorg` commands read."""
        p = f"DEVORG_{alias.upper()}_"
        return {p + "CONTROL_URL": f"{self.instance_url}/_devorg", p + "CONTROL_TOKEN": self.control_token}

    def control(self, action: str, body: dict | None = None, method: str = "POST") -> Any:
        """Call a control endpoint over HTTPS with the control token (what the CLI does)."""
        import requests

        with requests.Session() as session:
            session.trust_env = False  # REQUESTS_CA_BUNDLE must not override devorg's CA
            resp = session.request(
                method,
                f"{self.instance_url}/_devorg/{action}",
                json=body,
                verify=self.ca_bundle,
                timeout=600,
                headers={"Authorization": f"Bearer {self.control_token}"},
            )
        resp.raise_for_status()
        return resp.json()

    def export_lines(self, alias: str = "production") -> str:
        kind = "sandbox" if self.org.is_sandbox else "production org"
        lines = [
            f"# devorg '{self.org.name}' at {self.instance_url} (data: {self.data_dir}), a {kind}, "
            f"Organization Id {self.org.org_id}"
        ]
        lines += [f"export {k}={v}" for k, v in self.env(alias).items()]
        lines += [f"export {k}={v}" for k, v in self.control_env(alias).items()]
        lines.append("# other users (username / password / security token):")
        for c in self.org.credentials.values():
            lines.append(f"export DEVORG_{alias.upper()}_{c.key.upper()}_USERNAME={c.username}")
            lines.append(f"export DEVORG_{alias.upper()}_{c.key.upper()}_PASSWORD={c.password}")
            lines.append(f"export DEVORG_{alias.upper()}_{c.key.upper()}_SECURITY_TOKEN={c.security_token}")
        return "\n".join(lines)

    def login(self, user: str = "admin") -> str:
        """A session id for a user, without an HTTP round trip (for tests that start from a session)."""
        return self.org.new_session(self.org.user(user).user_id).token
