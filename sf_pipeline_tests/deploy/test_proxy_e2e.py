"""The UI is not open: the reverse proxy of deploy/docker-compose.yaml, with its own configuration file
(deploy/nginx/default.conf.template) rendered the way the nginx image renders it, run by Debian's nginx
(scripts/ensure-nginx.sh) in front of a real dagster-webserver and a real `dagster-webserver --read-only` on
the instance of deploy/dagster.yaml.

No password: 401 on the UI and on GraphQL. An admin's password: the full webserver. A viewer's password: only
the read-only webserver, where Dagster refuses to launch a run.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from sf_pipeline.devorg.runner import free_port
from sf_pipeline_tests.deploy.conftest import DEPLOY, REPO

NGINX = os.environ.get("SF_PIPELINE_NGINX", "/usr/sbin/nginx")
TEMPLATE = DEPLOY / "nginx" / "default.conf.template"
ADMIN = ("alice", "admin-Passw0rd!")
VIEWER = ("bob", "viewer-Passw0rd!")
LAUNCH_RUN = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on UnauthorizedError { message }
  ... on PythonError { message } ... on RunConfigValidationInvalid { errors { message } } } }"""
LAUNCH_PIPELINE = """mutation($params: ExecutionParams!) { launchPipelineExecution(executionParams: $params) {
  __typename ... on UnauthorizedError { message } ... on PythonError { message } } }"""


def render_template(text: str, env: dict[str, str], pattern: str) -> str:
    """What the nginx image's 20-envsubst-on-templates.sh does: `envsubst` over the defined variables whose
    names match NGINX_ENVSUBST_FILTER, and nothing else (nginx's own `$host`, `$remote_user` stay)."""
    names = sorted((n for n in env if re.search(pattern, n)), key=len, reverse=True)
    for name in names:
        text = text.replace("${" + name + "}", env[name])
        text = re.sub(r"\$" + name + r"(?![A-Za-z0-9_])", lambda _m, v=env[name]: v, text)
    return text


def htpasswd(path: Path, user: str, password: str) -> None:
    """An htpasswd line made as deploy/README.md says: `openssl passwd -6` (SHA-512 crypt)."""
    hashed = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"], input=password, capture_output=True, text=True, check=True
    ).stdout.strip()
    path.write_text(f"{user}:{hashed}\n")
    path.chmod(0o644)


class Proxy:
    """nginx with deploy/nginx/default.conf.template, wrapped in a minimal main configuration (the image's
    nginx.conf includes conf.d/*.conf inside `http {}`, as the wrapper does here)."""

    def __init__(self, root: Path, admin_upstream: str, viewer_upstream: str):
        self.root = root
        self.admin_port, self.viewer_port = free_port(), free_port()
        compose = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())["services"]["proxy"]
        self.env = {
            **compose["environment"],
            # what differs on this machine: addresses and file paths
            "SF_PIPELINE_PROXY_ADMIN_LISTEN": f"127.0.0.1:{self.admin_port}",
            "SF_PIPELINE_PROXY_VIEWER_LISTEN": f"127.0.0.1:{self.viewer_port}",
            "SF_PIPELINE_ADMIN_WEBSERVER": admin_upstream,
            "SF_PIPELINE_READONLY_WEBSERVER": viewer_upstream,
            "SF_PIPELINE_ADMINS_HTPASSWD": str(root / "admins.htpasswd"),
            "SF_PIPELINE_VIEWERS_HTPASSWD": str(root / "viewers.htpasswd"),
            "SF_PIPELINE_PROXY_ACCESS_LOG": str(root / "access.log"),
        }
        assert set(self.env) == set(compose["environment"]), "compose sets variables the test does not"
        self.process: subprocess.Popen | None = None

    def write_config(self) -> Path:
        conf_d = self.root / "conf.d"
        conf_d.mkdir(parents=True, exist_ok=True)
        rendered = render_template(TEMPLATE.read_text(), self.env, self.env["NGINX_ENVSUBST_FILTER"])
        assert not re.search(r"\$\{?SF_PIPELINE_", rendered), "a template variable is not set by compose"
        (conf_d / "default.conf").write_text(rendered)
        temp = self.root / "temp"
        temp.mkdir(exist_ok=True)
        main = self.root / "nginx.conf"
        # running as root, nginx's workers would be `nobody`, who cannot enter pytest's private folders
        user = "user root;\n" if os.geteuid() == 0 else ""
        main.write_text(
            f"{user}daemon off;\nworker_processes 1;\npid {self.root}/nginx.pid;\nerror_log {self.root}/error.log info;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            + "".join(
                f"    {kind}_temp_path {temp}/{kind};\n"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            )
            + f"    include {conf_d}/*.conf;\n}}\n"
        )
        return main

    def start(self) -> None:
        main = self.write_config()
        check = subprocess.run(
            [NGINX, "-t", "-c", str(main), "-p", str(self.root), "-e", str(self.root / "error.log")],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, f"nginx refuses the configuration:\n{check.stderr}"
        self.process = subprocess.Popen(
            [NGINX, "-c", str(main), "-p", str(self.root), "-e", str(self.root / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"nginx exited:\n{self.log('error.log')}"
            try:
                requests.get(self.admin_url, timeout=2)
                return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise AssertionError(f"nginx did not answer:\n{self.log('error.log')}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log(self, name: str) -> str:
        path = self.root / name
        return path.read_text(errors="replace") if path.exists() else "(none)"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def viewer_url(self) -> str:
        return f"http://127.0.0.1:{self.viewer_port}"


@pytest.fixture(scope="module")
def nginx_installed() -> None:
    """Debian's nginx, installed by the project's own script when it is missing (as make test does)."""
    done = subprocess.run([str(REPO / "scripts" / "ensure-nginx.sh")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def proxied_webservers(nginx_installed, deployed_pipeline_factory, dagster_processes, tmp_path) -> Iterator[tuple]:
    """A code server, the admins' and the viewers' webservers, and the proxy in front of both."""
    deployed_pipeline_factory(["Account"])
    procs = dagster_processes()
    procs.start_code_server()
    # the two webservers load the code location from the code server at the same time
    viewers = procs.start_in_background(lambda: procs.start_webserver(read_only=True))
    procs.start_webserver()
    viewers.result()
    root = tmp_path / "proxy"
    root.mkdir()
    htpasswd(root / "admins.htpasswd", *ADMIN)
    htpasswd(root / "viewers.htpasswd", *VIEWER)
    proxy = Proxy(root, f"127.0.0.1:{procs.web_port}", f"127.0.0.1:{procs.readonly_port}")
    proxy.start()
    try:
        yield proxy, procs
    finally:
        proxy.stop()
        print(f"\n===== proxy error log =====\n{proxy.log('error.log')[-4000:]}")


def _graphql(url: str, query: str, auth: tuple[str, str] | None, variables: dict | None = None) -> requests.Response:
    return requests.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, auth=auth, timeout=60)


def _launch_params() -> dict:
    return {
        "params": {
            "selector": {
                "repositoryLocationName": "sf_pipeline",
                "repositoryName": "__repository__",
                "jobName": "backup",
            },
            "runConfigData": {},
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "2026-11-20-00:00"}]},
        }
    }


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_the_ui_and_graphql_refuse_anyone_without_a_password_and_viewers_cannot_launch(proxied_webservers):
    proxy, procs = proxied_webservers
    version = "{ version }"

    # No credentials, wrong ones, or a viewer's on the admins' side: 401, on the UI and on GraphQL
    for url in (proxy.admin_url, proxy.viewer_url):
        page = requests.get(url + "/", timeout=30)
        assert page.status_code == 401 and page.headers["WWW-Authenticate"].startswith("Basic")
        assert "Dagster" not in page.text
        assert _graphql(url, version, None).status_code == 401
        assert requests.get(url + "/graphql", timeout=30).status_code == 401
        assert _graphql(url, version, (ADMIN[0], "wrong")).status_code == 401
    assert _graphql(proxy.admin_url, version, VIEWER).status_code == 401
    assert _graphql(proxy.admin_url, LAUNCH_RUN, None, _launch_params()).status_code == 401

    # An admin gets the full webserver: the UI, GraphQL, and launching a run (queued: no daemon here)
    page = requests.get(proxy.admin_url + "/", auth=ADMIN, timeout=60)
    assert page.status_code == 200 and re.search(r"<title[^>]*>Dagster</title>", page.text)
    answer = _graphql(proxy.admin_url, version, ADMIN)
    assert answer.status_code == 200 and answer.json()["data"]["version"]
    launched = _graphql(proxy.admin_url, LAUNCH_RUN, ADMIN, _launch_params())
    assert launched.status_code == 200
    assert launched.json()["data"]["launchRun"]["__typename"] == "LaunchRunSuccess", launched.json()

    # A viewer reads through the read-only webserver, and Dagster refuses every launch there
    page = requests.get(proxy.viewer_url + "/", auth=VIEWER, timeout=60)
    assert page.status_code == 200 and re.search(r"<title[^>]*>Dagster</title>", page.text)
    runs = _graphql(proxy.viewer_url, "{ runsOrError { ... on Runs { results { runId } } } }", VIEWER)
    assert runs.status_code == 200
    assert [r["runId"] for r in runs.json()["data"]["runsOrError"]["results"]] == [
        launched.json()["data"]["launchRun"]["run"]["runId"]
    ]
    for query, field in ((LAUNCH_RUN, "launchRun"), (LAUNCH_PIPELINE, "launchPipelineExecution")):
        refused = _graphql(proxy.viewer_url, query, VIEWER, _launch_params())
        assert refused.status_code == 200, refused.text
        result = refused.json()["data"][field]
        assert result["__typename"] == "UnauthorizedError", result
    assert len(procs.graphql("{ runsOrError { ... on Runs { results { runId } } } }")["runsOrError"]["results"]) == 1

    # The proxy logs who did what: the user of every authenticated request, `-` for the refused ones
    log = proxy.log("access.log")
    assert re.search(r'user=alice .*"POST /graphql HTTP/1.1" 200', log)
    assert re.search(r'user=bob .*"POST /graphql HTTP/1.1" 200', log)
    assert re.search(r'user=- .*"GET / HTTP/1.1" 401', log)
    assert ADMIN[1] not in log and VIEWER[1] not in log
