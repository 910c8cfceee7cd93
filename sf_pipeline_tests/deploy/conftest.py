"""Fixtures of the deployment tests: an instance from deploy/dagster.yaml, and Dagster's processes for real.

`deployed_instance` copies deploy/dagster.yaml unchanged into a DAGSTER_HOME and points its DAGSTER_PG_*
variables at the test's own database. `DagsterProcesses` starts what production runs (a code server, the
webserver, the daemon) as subprocesses of .venv, each in its own process group, with deploy/workspace.yaml;
their logs are printed when a test fails and the groups are killed at teardown.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import psutil
import pytest
import requests

from sf_pipeline.devorg.runner import free_port
from sf_pipeline_tests.pipeline_fixtures import Pipeline

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
VENV_BIN = Path(sys.executable).parent


def dagster_pg_env(db_url: str) -> dict[str, str]:
    """The DAGSTER_PG_* variables deploy/dagster.yaml reads, for a postgresql:// URL."""
    parts = urlsplit(db_url)
    return {
        "DAGSTER_PG_HOST": parts.hostname or "127.0.0.1",
        "DAGSTER_PG_PORT": str(parts.port or 5432),
        "DAGSTER_PG_USER": parts.username or "postgres",
        "DAGSTER_PG_PASSWORD": parts.password or "",
        "DAGSTER_PG_DB": parts.path.lstrip("/"),
    }


def deploy_home(path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DAGSTER_HOME holding deploy/dagster.yaml as shipped, its variables set for this process."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEPLOY / "dagster.yaml", path / "dagster.yaml")
    for key, value in dagster_pg_env(db_url).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DAGSTER_HOME", str(path))
    return path


@pytest.fixture
def deployed_instance(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    """A DagsterInstance started from deploy/dagster.yaml on the test's database."""
    home = deploy_home(tmp_path / "dagster_home", pg_url, monkeypatch)
    instance = dg.DagsterInstance.from_config(str(home))
    yield instance
    _forget_defs_state_storage()
    instance.dispose()


@pytest.fixture
def deployed_pipeline_factory(pipeline_factory, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch):
    """`pipeline_factory` (devorg, settings, dbt project, credentials in the environment), but with the
    Dagster instance of deploy/dagster.yaml."""
    instances: list[dg.DagsterInstance] = []

    def make(objects: list[Any] | None = None, **backup: Any) -> Pipeline:
        pipeline = pipeline_factory(objects, **backup)
        home = deploy_home(tmp_path / "deploy_home", pg_url, monkeypatch)
        pipeline.instance = dg.DagsterInstance.from_config(str(home))
        instances.append(pipeline.instance)
        return pipeline

    yield make
    for instance in instances:
        instance.dispose()


def _forget_defs_state_storage() -> None:
    # Dagster leaves the instance's defs-state storage in a context variable after a run; a later test's
    # definitions would otherwise reach this test's (dropped) database through it.
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Keep each phase's report on the test item, so fixtures can tell at teardown whether it failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


class DagsterProcesses:
    """dagster code-server, dagster-webserver and dagster-daemon, started like deploy/docker-compose.yaml."""

    def __init__(self, workdir: Path, env: dict[str, str]):
        self.workdir = workdir
        self.env = env
        self.code_port = free_port()
        self.web_port = free_port()
        self.readonly_port = free_port()
        self.env.update({"SF_PIPELINE_CODE_HOST": "127.0.0.1", "SF_PIPELINE_CODE_PORT": str(self.code_port)})
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        # `stop` may come while a background start (`start_in_background`) is under way: no process starts after it
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = self.workdir / f"{name}.log"
        with self._lock:
            if self._stopped:
                raise AssertionError(f"{name} not started: the processes were stopped")
            self.logs[name] = log
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    args,
                    cwd=self.workdir,
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            self.procs[name] = proc
        return proc

    def start_in_background(self, *steps: Callable[[], Any]) -> Future:
        """Run `steps` (say `start_code_server`, `start_webserver`) one after the other in a thread, while the test
        sets its scene in this process; the future's `result()` waits for them (and raises what they raised).

        Starting a code server and a webserver is mostly their interpreters importing Dagster and loading the code
        location, seconds of work that need nothing from the scene but the environment given to the processes.
        """
        pool = ThreadPoolExecutor(1, thread_name_prefix="dagster-processes")
        future = pool.submit(lambda: [step() for step in steps])
        pool.shutdown(wait=False)
        return future

    def start_code_server(self) -> None:
        self._start(
            "code-server",
            [
                str(VENV_BIN / "dagster"),
                "code-server",
                "start",
                "-m",
                "sf_pipeline.definitions",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.code_port),
                "--location-name",
                "sf_pipeline",
            ],
        )
        self._wait("code server", self._code_server_serving, "code-server")

    def _code_server_serving(self) -> bool:
        """What `dagster api grpc-health-check --port` asks (gRPC's health service, for the service "DagsterApi"),
        asked from this process: the command is a new interpreter importing Dagster, seconds of CPU per poll."""
        import grpc
        from grpc_health.v1 import health_pb2
        from grpc_health.v1.health_pb2_grpc import HealthStub

        with grpc.insecure_channel(f"127.0.0.1:{self.code_port}") as channel:
            try:
                answer = HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="DagsterApi"), timeout=10)
            except grpc.RpcError:  # not listening yet
                return False
        return answer.status == health_pb2.HealthCheckResponse.SERVING

    @property
    def readonly_url(self) -> str:
        return f"http://127.0.0.1:{self.readonly_port}"

    def start_webserver(self, read_only: bool = False) -> None:
        """The webserver, or with `read_only` the viewers' one (`--read-only`, service webserver-readonly)."""
        name, port = ("webserver-readonly", self.readonly_port) if read_only else ("webserver", self.web_port)
        self._start(
            name,
            [
                str(VENV_BIN / "dagster-webserver"),
                *(["--read-only"] if read_only else []),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workspace",
                str(DEPLOY / "workspace.yaml"),
            ],
        )
        self._wait(name, lambda: self._location_loaded(f"http://127.0.0.1:{port}"), name)

    def start_daemon(self) -> None:
        self._start("daemon", [str(VENV_BIN / "dagster-daemon"), "run", "--workspace", str(DEPLOY / "workspace.yaml")])

    def _location_loaded(self, url: str | None = None) -> bool:
        try:
            data = self.graphql(
                "{ workspaceOrError { ... on Workspace { locationEntries { name "
                "locationOrLoadError { __typename ... on PythonError { message } } } } } }",
                url=url,
            )
        except (requests.RequestException, AssertionError):
            return False
        for entry in data["workspaceOrError"]["locationEntries"]:
            loaded = entry["locationOrLoadError"] or {}
            if entry["name"] == "sf_pipeline" and loaded.get("__typename") == "PythonError":
                raise AssertionError(f"the code location failed to load: {loaded['message']}")
            if entry["name"] == "sf_pipeline" and loaded.get("__typename") == "RepositoryLocation":
                return True
        return False

    def _wait(self, what: str, ready: Callable[[], bool], name: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise AssertionError(f"{what} exited with {self.procs[name].returncode}:\n{self.tail(name)}")
            if ready():
                return
            time.sleep(0.5)
        raise AssertionError(f"{what} not ready after {timeout:.0f} s:\n{self.tail(name)}")

    def graphql(self, query: str, variables: dict[str, Any] | None = None, url: str | None = None) -> dict[str, Any]:
        resp = requests.post(
            f"{url or self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
        )
        resp.raise_for_status()
        body = resp.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def tail(self, name: str, chars: int = 6000) -> str:
        log = self.logs.get(name)
        return log.read_text(errors="replace")[-chars:] if log and log.exists() else "(no log)"

    def assert_running(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{self.tail(name)}"

    def stop(self) -> None:
        """SIGKILL each process group and every descendant (code servers, run workers, step processes, even in
        sessions of their own). Nothing is kept after a test (its instance and database are thrown away), and a
        graceful stop of the daemon and the code server took 15-20 s of teardown on a loaded machine."""
        with self._lock:
            self._stopped = True
        descendants: list[psutil.Process] = []
        for proc in self.procs.values():
            try:
                descendants += psutil.Process(proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                pass
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGKILL)
        for child in descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        for proc in self.procs.values():
            proc.wait(timeout=10)
        psutil.wait_procs(descendants, timeout=5)


def _signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)  # start_new_session: the group id is the process id


@pytest.fixture
def dagster_processes(
    request: pytest.FixtureRequest, tmp_path: Path, pg_url: str
) -> Iterator[Callable[[], DagsterProcesses]]:
    """A factory for `DagsterProcesses` with the test's environment as it is when called. It takes `pg_url` so that
    the processes are killed before the test's database is given back: its name is the next test's
    (`create_database(reused_name=True)`), which no process of this test may reach."""
    started: list[DagsterProcesses] = []

    def make() -> DagsterProcesses:
        workdir = tmp_path / "processes"
        workdir.mkdir(exist_ok=True)
        processes = DagsterProcesses(workdir, dict(os.environ))
        started.append(processes)
        return processes

    yield make
    failed = any(getattr(getattr(request.node, f"report_{when}", None), "failed", False) for when in ("setup", "call"))
    for processes in started:
        processes.stop()
        if failed:
            for name in processes.logs:
                print(f"\n===== {name} log (last part) =====\n{processes.tail(name, 20000)}")
