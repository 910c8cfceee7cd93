"""pytest fixtures for end-to-end runs: devorg + a fresh PostgreSQL database + a real Dagster instance.

The Dagster instance keeps its runs and events in PostgreSQL (DAGSTER_HOME with a dagster.yaml), the
pipeline reads its org credentials from SALESFORCE_PRODUCTION_* exactly as printed by devorg, and the
dbt project is a private copy so generated snapshot definitions never touch the checkout.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
import yaml

from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline.instance_storage import instance_storage_config
from sf_pipeline.warehouse.dbt_project import (
    DBT_PROJECT_DIR,
    WINDOW_MODELS_DIR,
    dbt_env_from_url,
    partial_parse_for,
    prepare_manifest,
    project_inputs,
)
from sf_pipeline_tests.devorg_fixtures import connect
from sf_pipeline_tests.pg_fixtures import create_database, drop_database, release_database

DEFAULT_OBJECTS = ["Account", "Contact", "Opportunity", "Case"]


def write_settings(
    path: Path, objects: list[Any], anomalies: dict | None = None, salesforce: dict | None = None, **backup: Any
) -> Path:
    """A settings file; tests retry transient failures after 10 ms (not the default 0.5 s) unless `salesforce`
    says otherwise."""
    data = {
        "orgs": {"production": {}, "sandbox": {}},
        "backup": {
            "org": "production",
            "objects": objects,
            "partitions": {"cron": "0 * * * *", "start": "2026-11-20T00:00:00Z"},
            "schedule_lag_minutes": 10,
            "bulk_threshold": 20_000,
            "api_budget": {"max_share_of_daily_limit": 0.5},
            **backup,
        },
        "anomalies": anomalies or {},
        "salesforce": {"retry_backoff_seconds": 0.01, **(salesforce or {})},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def dagster_home(path: Path, db_url: str) -> Path:
    """A DAGSTER_HOME storing runs and events in `db_url` as deploy/dagster.yaml does (sf_pipeline.instance_storage:
    pooled connections, asynchronous commits)."""
    path.mkdir(parents=True, exist_ok=True)
    pg = db_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    (path / "dagster.yaml").write_text(
        yaml.safe_dump(
            {
                "storage": instance_storage_config(pg),
                "telemetry": {"enabled": False},
            }
        )
    )
    return path


@dataclass
class Pipeline:
    devorg: DevOrgServer
    db_url: str
    settings_path: Path
    instance: dg.DagsterInstance
    _defs: dg.Definitions | None = None

    def defs(self, reload: bool = False) -> dg.Definitions:
        if self._defs is None or reload:
            from sf_pipeline.definitions import build_definitions

            self._defs = build_definitions(str(self.settings_path))
        return self._defs

    def backup(
        self, start: str, end: str | None = None, *, raise_on_error: bool = True, run_config: dict | None = None
    ) -> dg.ExecuteInProcessResult:
        """Materialize the backup job for one window, or a range of windows as one run (a backfill)."""
        job = self.defs().resolve_job_def("backup")
        config = run_config or {}
        if end is None or end == start:
            return job.execute_in_process(
                partition_key=start, instance=self.instance, raise_on_error=raise_on_error, run_config=config
            )
        tags = {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}
        return job.execute_in_process(
            tags=tags, instance=self.instance, raise_on_error=raise_on_error, run_config=config
        )

    def sf(self, user: str = "admin"):
        return connect(self.devorg, user)

    def conn(self) -> psycopg.Connection:
        return psycopg.connect(self.db_url, autocommit=True)

    def set_clock(self, moment: datetime) -> None:
        self.devorg.org.set_clock(moment, freeze=True)


@dataclass
class SavedState:
    """What a pipeline looked like after some expensive steps (an org generated, windows backed up through Dagster
    and dbt): its org's data directory and its database (backup and Dagster instance), kept unused as templates.
    `pipeline_factory(state=...)` starts a test on private copies of both, so tests can share the steps' cost and
    still change the org and the backup as they please."""

    devorg_dir: Path
    db_url: str
    objects: list[Any] | None
    backup: dict[str, Any]
    story: Any  # what the steps returned (ids, expectations)


@pytest.fixture(scope="session")
def dagster_storage_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database holding only the tables a Dagster instance creates on first use (runs, event logs, schedules),
    for the session: pipelines' databases are copies of it (`pg_url`, `module_pipeline_factory`,
    `save_pipeline_state`), the same as an instance would leave a new database, without the seconds of DDL."""
    url = create_database("sfp_dagster_template")
    try:
        instance = dg.DagsterInstance.from_config(str(dagster_home(tmp_path_factory.mktemp("dagster_template"), url)))
        instance.dispose()
        yield url
    finally:
        drop_database(url)


@pytest.fixture(scope="module")
def save_pipeline_state(tmp_path_factory: pytest.TempPathFactory, parsed_dbt_project, dagster_storage_template):
    """`save_pipeline_state(steps, objects, **backup)`: run `steps(pipeline)` once on a new pipeline, then stop it
    (the org's SQLite closed with its clock, the instance disposed of) and keep it as a `SavedState`."""
    templates: list[str] = []

    def save(steps: Callable[[Pipeline], Any], objects: list[Any] | None = None, **backup: Any) -> SavedState:
        root = tmp_path_factory.mktemp("saved_pipeline")
        db_url = create_database(template=dagster_storage_template, reused_name=True)
        templates.append(db_url)
        with (
            pytest.MonkeyPatch.context() as monkeypatch,
            pipelines(root, db_url, monkeypatch, parsed_dbt_project) as make,
        ):
            story = steps(make(objects, **backup))
        return SavedState(root / "devorg", db_url, objects, backup, story)

    yield save
    for url in templates:
        release_database(url)


def object_names(objects: list[Any]) -> list[str]:
    """API names of a settings object list (`"Case"` or `{"name": "Case", "exclude": [...]}`)."""
    return [o["name"] if isinstance(o, dict) else o for o in objects]


def _not_generated_or_built(folder: str, names: list[str]) -> set[str]:
    """copytree's ignore: dbt's output, and the generated window models (prepare_manifest writes those of the
    configured objects), which a test loading the checkout's own project may be rewriting meanwhile."""
    ignored = {n for n in names if n in ("target", "logs", ".user.yml")}
    if Path(folder) == DBT_PROJECT_DIR / WINDOW_MODELS_DIR:
        ignored |= {n for n in names if n.endswith("_window.sql")}
    return ignored


@pytest.fixture(scope="session")
def parsed_dbt_project(tmp_path_factory: pytest.TempPathFactory, worker_id: str):
    """A copy of the dbt project already `dbt parse`d for an object list, made once per list and test run.

    `dbt parse` costs a few seconds; the pipeline's own `prepare_manifest` skips it when the manifest is newer
    than every input. Each test still gets a private copy (mtimes kept, so the manifest stays fresh), and a test
    that configures other objects regenerates the definitions and is parsed again, as a user's would be.
    The xdist workers share the parsed copies (in the run's common temporary folder, one lock file per object
    list): a list both workers use is parsed once, by whichever needs it first, the other waiting for it.
    """
    # the run's folder every worker's basetemp is in (xdist); a run without workers has its own
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent
    root = root / "dbt_parsed"
    root.mkdir(exist_ok=True)
    parsed: dict[tuple[str, ...], Path] = {}

    def project_for(objects: list[Any]) -> Path:
        key = tuple(sorted(set(object_names(objects))))
        if key not in parsed:
            folder = root / hashlib.sha256("\n".join(key).encode()).hexdigest()[:16]
            path = folder / "dbt_snapshots"
            with open(f"{folder}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
                if not (folder / "parsed").exists():
                    shutil.rmtree(folder, ignore_errors=True)  # a worker that failed half-way
                    shutil.copytree(DBT_PROJECT_DIR, path, ignore=_not_generated_or_built)
                    prepare_manifest(path, list(key))
                    (folder / "parsed").touch()
            parsed[key] = path
        return parsed[key]

    return project_for


def _hand_back_parse(project: Path, parsed: Path, db_url: str) -> None:
    """Give the parse dbt kept in a pipeline's copy of the project for its database (`reusing_parse`) to the parsed
    project the copy came from, whose next copies then start from it: with the database names the pipelines reuse
    (`create_database(reused_name=True)`) the next pipeline's first dbt call on this name reuses the parse instead of
    parsing the project in full. Only while the copy's inputs are still byte for byte the parsed project's (a test
    that configured other objects generated other definitions: dbt would parse them partially, and dbt 1.11's
    partial parse can miss snapshots added to a YAML file, see `prepare_manifest`). dbt still checks every file's
    checksum and the connection against the parse it starts from."""
    kept = partial_parse_for(project, dbt_env_from_url(db_url))
    if not kept.exists():
        return
    mine, theirs = project_inputs(project), project_inputs(parsed)
    if [p.relative_to(project) for p in mine] != [p.relative_to(parsed) for p in theirs]:
        return
    if any(a.read_bytes() != b.read_bytes() for a, b in zip(mine, theirs, strict=True)):
        return
    shared = partial_parse_for(parsed, dbt_env_from_url(db_url))
    if shared.exists() and shared.stat().st_mtime >= kept.stat().st_mtime:
        return
    shared.parent.mkdir(parents=True, exist_ok=True)
    # written beside the project, then renamed: another worker copying the project sees the old file or the new one
    partial = parsed.parent / f"{shared.name}.{uuid.uuid4().hex}.tmp"
    shutil.copy2(kept, partial)  # its mtime kept: newer than the manifest, so `reusing_parse` starts from it
    os.replace(partial, shared)


@contextmanager
def pipelines(
    root: Path, base_url: str, monkeypatch: pytest.MonkeyPatch, parsed_project: Callable[[list[Any]], Path]
) -> Iterator[Callable[..., Pipeline]]:
    """Make pipelines under `root` on the database `base_url`, their settings and credentials exported through
    `monkeypatch`; stop their orgs and dispose of their Dagster instances on the way out."""
    servers: list[DevOrgServer] = []
    instances: list[dg.DagsterInstance] = []
    copies: list[str] = []
    projects: list[tuple[Path, Path, str]] = []

    def make(objects: list[Any] | None = None, *, state: SavedState | None = None, **backup: Any) -> Pipeline:
        """A pipeline on a new org and the empty database; or, from a `state`, on copies of its org and database."""
        db_url = base_url
        if state is not None:
            objects, backup = state.objects, state.backup
            shutil.copytree(state.devorg_dir, root / "devorg")
            db_url = create_database(template=state.db_url, reused_name=True)
            copies.append(db_url)
        devorg = DevOrgServer(root / "devorg").start()
        servers.append(devorg)
        for key, value in devorg.env("production").items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("SF_PIPELINE_DATABASE_URL", db_url)
        objects = objects or DEFAULT_OBJECTS
        project = root / "dbt_snapshots"
        parsed = parsed_project(objects)
        # copy2 keeps the mtimes: the parsed manifest stays newer than its inputs
        shutil.copytree(parsed, project, ignore=shutil.ignore_patterns("logs"))
        projects.append((project, parsed, db_url))
        monkeypatch.setenv("SF_PIPELINE_DBT_PROJECT_DIR", str(project))
        settings = write_settings(root / "sf_pipeline.yaml", objects, **backup)
        monkeypatch.setenv("SF_PIPELINE_SETTINGS", str(settings))
        home = dagster_home(root / "dagster_home", db_url)
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        instance = dg.DagsterInstance.from_config(str(home))
        instances.append(instance)
        return Pipeline(devorg, db_url, settings, instance)

    try:
        yield make
    finally:
        # Dagster leaves the instance's defs-state storage in a context variable after a run; a later test's
        # definitions would otherwise reach this test's (dropped) database through it.
        from dagster._core.storage.defs_state.base import _current_storage

        _current_storage.set(None)
        for instance in instances:
            instance.dispose()
        for server in servers:
            server.stop()
        for project, parsed, db_url in projects:
            _hand_back_parse(project, parsed, db_url)
        for url in copies:
            release_database(url)


@pytest.fixture
def pipeline_factory(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch, parsed_dbt_project):
    with pipelines(tmp_path, pg_url, monkeypatch, parsed_dbt_project) as make:
        yield make


@pytest.fixture(scope="module")
def module_pipeline_factory(tmp_path_factory: pytest.TempPathFactory, parsed_dbt_project, dagster_storage_template):
    """`pipeline_factory` shared by the tests of a module (its own database, orgs, DAGSTER_HOME and environment),
    for modules whose tests read one expensive backed-up state and do not depend on each other's writes."""
    db_url = create_database(template=dagster_storage_template, reused_name=True)
    try:
        with (
            pytest.MonkeyPatch.context() as monkeypatch,
            pipelines(tmp_path_factory.mktemp("pipeline"), db_url, monkeypatch, parsed_dbt_project) as make,
        ):
            yield make
    finally:
        release_database(db_url)


@pytest.fixture
def pipeline(pipeline_factory) -> Pipeline:
    return pipeline_factory()
