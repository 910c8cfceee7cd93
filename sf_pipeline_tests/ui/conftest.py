"""Fixtures of the browser tests: an org with an incident, the Dagster UI serving it, and a headless Chromium.

The state is built in-process exactly as in `anomalies/test_checks_e2e.py` (devorg, a fresh PostgreSQL
database, a Dagster instance on PostgreSQL storage); then a real `dagster-webserver` process serves that
instance, and Playwright drives Debian's Chromium (`/usr/bin/chromium`, installed by
`scripts/ensure-chromium.sh`; Playwright never downloads a browser of its own here).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from sf_pipeline.anomalies.checks import check_key
from sf_pipeline.devorg.generator import generate_org
from sf_pipeline.devorg.scenarios import run_scenario
from sf_pipeline_tests.pipeline_fixtures import Pipeline

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("SF_PIPELINE_CHROMIUM", "/usr/bin/chromium")
OBJECTS = ["Account", "Opportunity"]
KEY = "%Y-%m-%d-%H:%M"
WEBSERVER_START_TIMEOUT = 180  # seconds: it loads the code location (dbt manifest included) on 2 busy cores
LOCATION = "sf_pipeline.definitions"  # `-m sf_pipeline.definitions` names the code location after the module
LOCATION_STATUS = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
FORWARDED_ENV = (
    "DAGSTER_HOME",
    "SF_PIPELINE_SETTINGS",
    "SF_PIPELINE_DATABASE_URL",
    "SF_PIPELINE_DBT_PROJECT_DIR",
)


@dataclass
class Incident:
    """What the browser should find: the damaged window, the records hit and who hit them."""

    damaged_window: str
    affected_records: int
    acting_user: str


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Lets fixtures know at teardown whether the test failed (to save a last screenshot).
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def screenshots_dir() -> Path:
    """Where the screenshots go: $SF_PIPELINE_TEST_ARTIFACTS/screenshots, default test-artifacts/screenshots."""
    root = Path(os.environ.get("SF_PIPELINE_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))
    path = root / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DagsterWebserver:
    """`dagster-webserver -m sf_pipeline.definitions` in its own process group, logging to a file."""

    def __init__(self, log_path: Path, code_root: Path = REPO_ROOT):
        """`code_root`: the checkout whose `sf_pipeline` the code server loads (another one: a side-by-side run)."""
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.code_root = Path(code_root)
        self.process: subprocess.Popen | None = None

    def start(self) -> DagsterWebserver:
        # The pipeline fixture has put the instance, settings, database, dbt project and org credentials
        # into os.environ (monkeypatch): the webserver and its code server read exactly those.
        missing = [k for k in FORWARDED_ENV if not os.environ.get(k)]
        assert not missing, f"the pipeline fixture did not set {missing}"
        assert any(k.startswith("SALESFORCE_PRODUCTION_") for k in os.environ)
        webserver = Path(sys.executable).with_name("dagster-webserver")
        log = self.log_path.open("wb")
        env = dict(os.environ)
        if self.code_root != REPO_ROOT:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.code_root), env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [str(webserver), "-m", LOCATION, "-h", "127.0.0.1", "-p", str(self.port)],
            env=env,
            cwd=self.code_root,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        return self

    def wait_until_ready(self, timeout: float = WEBSERVER_START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"dagster-webserver exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as resp:
                    if resp.status == 200 and self._location_loaded():
                        return
            except OSError:
                pass
            time.sleep(1)
        raise AssertionError(f"dagster-webserver did not answer /server_info within {timeout} s:\n{self.log()}")

    def _location_loaded(self) -> bool:
        """True once the code location is loaded; fails with Dagster's own error when it could not load."""
        query = {"query": LOCATION_STATUS}
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps(query).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            entries = json.load(resp)["data"]["workspaceOrError"]["locationEntries"]
        for entry in entries:
            error = entry["locationOrLoadError"] or {}
            if error.get("__typename") == "PythonError":
                raise AssertionError(
                    f"the code location {entry['name']} did not load in dagster-webserver: {error['message']}"
                )
        return bool(entries) and all(e["loadStatus"] == "LOADED" and e["locationOrLoadError"] for e in entries)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no log)"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # Kill the whole group at once (the webserver and the code server it started): a graceful stop takes
        # 10+ s on a busy machine and there is nothing to keep, the instance and its database are throwaway.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(30)


def _build_incident(p: Pipeline, t0: datetime) -> Incident:
    """Back up the first window, orphan every Opportunity in the third, back that up and run its checks."""
    p.set_clock(t0 - timedelta(minutes=1))
    generate_org(p.devorg.org, 150)
    p.set_clock(t0 + timedelta(hours=1, minutes=10))
    assert p.backup(t0.strftime(KEY)).success  # the first window: the full load
    damage = run_scenario(p.devorg.org, "orphan-opportunities", at=t0 + timedelta(hours=2, minutes=1))
    p.set_clock(t0 + timedelta(hours=3, minutes=10))
    window = (t0 + timedelta(hours=2)).strftime(KEY)
    assert p.backup(window).success
    # what the sensor would launch for that window: the checks alone, no history re-materialization
    job = p.defs().resolve_job_def("anomaly_checks")
    checks = job.get_subset(asset_selection=set(), asset_check_selection={check_key(o) for o in OBJECTS})
    result = checks.execute_in_process(partition_key=window, instance=p.instance)
    assert result.success
    [opportunity] = [e for e in result.get_asset_check_evaluations() if e.asset_key.path[-1] == "Opportunity"]
    assert not opportunity.passed and opportunity.severity == dg.AssetCheckSeverity.ERROR
    return Incident(
        damaged_window=window,
        affected_records=len(damage.changed["Opportunity"]),
        acting_user=opportunity.metadata["acting_user"].value,
    )


@pytest.fixture
def incident_in_dagster_ui(pipeline_factory, tmp_path: Path) -> Iterator[tuple[Incident, str]]:
    """An orphan-opportunities incident in a fresh instance, and the URL of a dagster-webserver serving it.

    Windows are hourly from yesterday's midnight (UTC), so the partition count stays small whatever day
    the suite runs. The webserver starts first and loads its code location while the state is built.
    """
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    t0 = today - timedelta(days=1)
    p = pipeline_factory(OBJECTS, partitions={"cron": "0 * * * *", "start": t0.strftime("%Y-%m-%dT%H:%M:%SZ")})
    server = DagsterWebserver(tmp_path / "dagster-webserver.log").start()
    try:
        incident = _build_incident(p, t0)
        server.wait_until_ready()
        yield incident, server.url
    finally:
        server.stop()
        # shown by pytest only when the test failed (captured output of the teardown)
        print(f"--- dagster-webserver log ({server.log_path}) ---\n{server.log()[-20_000:]}")


@pytest.fixture
def browser_page(request, screenshots_dir: Path):
    """A Playwright page in headless Debian Chromium; on failure the last screen is saved as failure.png."""
    from playwright.sync_api import sync_playwright

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: run scripts/ensure-chromium.sh (make test does) or apt-get install chromium",
            pytrace=False,
        )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        context = browser.new_context(viewport={"width": 1600, "height": 1000}, timezone_id="UTC")
        # Dagster asks once per browser to "Join the Dagster community" (only on 127.0.0.1/localhost); a
        # fresh profile would get that modal over every page: mark it seen, and skip it should it come anyway.
        context.add_init_script("window.localStorage.setItem('communityNux', '\"1\"')")
        page = context.new_page()
        page.add_locator_handler(
            page.get_by_text("Join the Dagster community"),
            lambda: page.get_by_role("button", name="Skip").click(),
        )
        page.set_default_timeout(60_000)
        try:
            yield page
        finally:
            report = getattr(request.node, "report_call", None)
            if report is not None and report.failed:
                try:
                    page.screenshot(path=screenshots_dir / "failure.png")
                except Exception as exc:  # noqa: BLE001 - the test's own failure is what matters
                    print(f"could not save failure.png: {exc}")
            context.close()
            browser.close()
