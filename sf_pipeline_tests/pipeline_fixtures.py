"""pytest fixtures for end-to-end runs: devorg + a fresh PostgreSQL database + a real Dagster instance.

The Dagster instance keeps its runs and events in PostgreSQL (DAGSTER_HOME with a dagster.yaml), the
pipeline reads its org credentials from SALESFORCE_PRODUCTION_* exactly as printed by devorg, and the
dbt project is a private copy so generated snapshot definitions never touch the checkout.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
import yaml

from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline.warehouse.dbt_project import DBT_PROJECT_DIR
from sf_pipeline_tests.devorg_fixtures import connect

DEFAULT_OBJECTS = ["Account", "Contact", "Opportunity", "Case"]


def write_settings(path: Path, objects: list[Any], anomalies: dict | None = None, **backup: Any) -> Path:
    data = {
        "orgs": {"production": {}, "sandbox": {}},
        "backup": {"org": "production", "objects": objects,
                   "partitions": {"cron": "0 * * * *", "start": "2026-11-20T00:00:00Z"},
                   "schedule_lag_minutes": 10, "bulk_threshold": 20_000,
                   "api_budget": {"max_share_of_daily_limit": 0.5}, **backup},
        "anomalies": anomalies or {},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def dagster_home(path: Path, db_url: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    pg = db_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    (path / "dagster.yaml").write_text(yaml.safe_dump({
        "storage": {"postgres": {"postgres_url": pg}},
        "telemetry": {"enabled": False},
    }))
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

    def backup(self, start: str, end: str | None = None, *, raise_on_error: bool = True,
               run_config: dict | None = None) -> dg.ExecuteInProcessResult:
        """Materialize the backup job for one window, or a range of windows as one run (a backfill)."""
        job = self.defs().resolve_job_def("backup")
        config = run_config or {"resources": {"salesforce": {"config": {"retry_backoff": 0.01}}}}
        if end is None or end == start:
            return job.execute_in_process(partition_key=start, instance=self.instance,
                                          raise_on_error=raise_on_error, run_config=config)
        tags = {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}
        return job.execute_in_process(tags=tags, instance=self.instance, raise_on_error=raise_on_error,
                                      run_config=config)

    def sf(self, user: str = "admin"):
        return connect(self.devorg, user)

    def conn(self) -> psycopg.Connection:
        return psycopg.connect(self.db_url, autocommit=True)

    def set_clock(self, moment: datetime) -> None:
        self.devorg.org.set_clock(moment, freeze=True)


@pytest.fixture
def pipeline_factory(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch):
    servers: list[DevOrgServer] = []
    instances: list[dg.DagsterInstance] = []

    def make(objects: list[Any] | None = None, **backup: Any) -> Pipeline:
        devorg = DevOrgServer(tmp_path / "devorg").start()
        servers.append(devorg)
        for key, value in devorg.env("production").items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("SF_PIPELINE_DATABASE_URL", pg_url)
        project = tmp_path / "dbt_snapshots"
        shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", ".user.yml"))
        monkeypatch.setenv("SF_PIPELINE_DBT_PROJECT_DIR", str(project))
        settings = write_settings(tmp_path / "sf_pipeline.yaml", objects or DEFAULT_OBJECTS, **backup)
        monkeypatch.setenv("SF_PIPELINE_SETTINGS", str(settings))
        home = dagster_home(tmp_path / "dagster_home", pg_url)
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        instance = dg.DagsterInstance.from_config(str(home))
        instances.append(instance)
        return Pipeline(devorg, pg_url, settings, instance)

    yield make
    # Dagster leaves the instance's defs-state storage in a context variable after a run; a later test's
    # definitions would otherwise reach this test's (dropped) database through it.
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)
    for instance in instances:
        instance.dispose()
    for server in servers:
        server.stop()


@pytest.fixture
def pipeline(pipeline_factory) -> Pipeline:
    return pipeline_factory()
