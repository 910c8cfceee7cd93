"""What the benchmarks share to build an org and its backup: devorg in a process of its own, its control API (clock,
scenarios), a copy of the dbt project, and windows backed up as the backup assets take them (extract -> load ->
dbt snapshot).

The benchmarks run as plain scripts from a checkout; each puts the checkout on `sys.path` before importing this.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from sf_pipeline.salesforce import OrgCredentials, SalesforceClient, connect
from sf_pipeline.salesforce.connection import TrustingSession
from sf_pipeline.salesforce.extract import extract_window
from sf_pipeline.warehouse import (
    DBT_PROJECT_DIR,
    backup_fields,
    ensure_mirror_table,
    load_window,
    run_snapshot,
    write_snapshot_definitions,
)
from sf_pipeline.warehouse.load import LoadResult

ROOT = Path(__file__).resolve().parents[2]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SERVER_SCRIPT = r"""
import json, sys, threading
from sf_pipeline.devorg.runner import DevOrgServer

data_dir, size = sys.argv[1], int(sys.argv[2])
srv = DevOrgServer(data_dir=data_dir, generate=size)
srv.start()
print(json.dumps({"instance_url": srv.instance_url, "session_id": srv.login("admin"),
                  "ca_bundle": srv.ca_bundle, "env": srv.env("production"),
                  "control_token": srv.control_token}), flush=True)
threading.Event().wait()
"""


def start_server(script: str, *args: str, name: str = "devorg") -> tuple[subprocess.Popen, dict[str, Any]]:
    """Run `script` in a Python process of its own: a `DevOrgServer` that prints its connection details as one JSON
    line (instance_url, session_id, ca_bundle, env, control_token), then serves until killed. (process, details)"""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", script, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=10)
        raise SystemExit(f"{name} exited with {proc.returncode} before it was ready")
    return proc, json.loads(line)


def start_devorg(data_dir: Path, size: int) -> tuple[subprocess.Popen, dict[str, Any]]:
    """devorg with `size` generated Opportunities (and the records generated around them) in its own process."""
    return start_server(SERVER_SCRIPT, str(data_dir), str(size))


def stop_process(proc: subprocess.Popen) -> None:
    """End a server process: terminate it, and kill it if it has not exited within 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def control(
    ca_bundle: str,
    control_url: str,
    token: str,
    action: str,
    body: dict[str, Any] | None = None,
    method: str = "POST",
    timeout: float = 3600,
) -> Any:
    """One call of devorg's control API (`<instance>/_devorg/<action>`: clock, scenario, ...), its JSON answer."""
    session = TrustingSession(ca_bundle)
    try:
        resp = session.request(
            method, f"{control_url}/{action}", json=body, timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )
    finally:
        session.close()
    resp.raise_for_status()
    return resp.json()


def org_instant(text: str) -> datetime:
    """An instant as devorg's control API writes it (`...+0000`)."""
    return datetime.fromisoformat(text.replace("+0000", "+00:00"))


class Org:
    """A devorg process started by `start_server`, and what a benchmark needs to drive it."""

    def __init__(self, proc: subprocess.Popen, info: dict[str, Any]):
        self.proc, self.info = proc, info
        self.env: dict[str, str] = info["env"]
        self.ca_bundle: str = info["ca_bundle"]
        self.control_url = info["instance_url"] + "/_devorg"

    def control(self, action: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
        return control(self.ca_bundle, self.control_url, self.info["control_token"], action, body, method)

    def now(self) -> datetime:
        return org_instant(self.control("clock", method="GET")["now"])

    def set_clock(self, moment: datetime) -> None:
        self.control("clock", {"set": moment.isoformat(), "freeze": True})

    def client(self, **options: Any) -> SalesforceClient:
        return SalesforceClient(connect(OrgCredentials.from_env("production", self.env)), alias="production", **options)

    def stop(self) -> None:
        stop_process(self.proc)


def generated_org(data_dir: Path, size: int) -> Org:
    """`start_devorg` as an `Org`, saying how long the generation took."""
    started = time.perf_counter()
    org = Org(*start_devorg(data_dir, size))
    print(f"  devorg with {size:,} Opportunities ready in {time.perf_counter() - started:.1f} s")
    return org


def dbt_project(project: Path, objects: Sequence[str] = ()) -> Path:
    """A copy of the dbt project at `project` (without what dbt built there), with snapshots of `objects`."""
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", ".user.yml"))
    if objects:
        write_snapshot_definitions(project, list(objects))
    return project


def load_object_window(
    conn: psycopg.Connection[Any], client: SalesforceClient, sobject: str, start: datetime, end: datetime
) -> LoadResult:
    """One object's window [start, end) into its mirror as the mirror asset takes it: describe, backed-up fields,
    mirror table, extraction, load."""
    describe = client.describe(sobject)
    names = [f["name"] for f in backup_fields(describe["fields"])]
    table = ensure_mirror_table(conn, sobject, describe["fields"])
    return load_window(conn, table, extract_window(client, sobject, names, start, end), start, end)


def backup_windows(
    client: SalesforceClient, db_url: str, dbt_dir: Path, objects: Sequence[str], start: datetime, end: datetime
) -> int:
    """Every object's window [start, end) backed up as the backup assets do (mirror, then the dbt snapshot of
    them all); the records loaded."""
    with psycopg.connect(db_url) as conn:
        loaded = sum(load_object_window(conn, client, o, start, end).extracted for o in objects)
    run_snapshot(dbt_dir, db_url, list(objects), start, end)
    return loaded
