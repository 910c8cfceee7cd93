"""The dbt project behind `history/<Object>`: generated from the settings, parsed once into a manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cached_property
from pathlib import Path

from dagster_dbt import DbtCliResource
from dagster_dbt.compat import DBT_PYTHON_VERSION
from packaging import version

from sf_pipeline.warehouse import write_snapshot_definitions
from sf_pipeline.warehouse.dbt_project import DBT_PROJECT_DIR


class DbtProjectError(RuntimeError):
    """The dbt project could not be prepared (parse failed)."""


def dbt_project_dir() -> Path:
    """The dbt project in use: SF_PIPELINE_DBT_PROJECT_DIR, else `dbt_snapshots/` in this checkout."""
    return Path(os.environ.get("SF_PIPELINE_DBT_PROJECT_DIR") or DBT_PROJECT_DIR)


def dbt_executable() -> str:
    """dbt from this environment (beside the Python running us), else from PATH."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else "dbt"


class DbtCli(DbtCliResource):
    """dagster-dbt's `DbtCliResource`, without its `dbt --version` subprocess when dbt is this environment's.

    dagster-dbt learns the dbt version by running `dbt --version` once per resource object, that is once per run
    (and per step process): seconds of CPU to import dbt in a new interpreter, for a version this interpreter
    already has (the dbt-core package installed beside it, whose `dbt` executable `dbt_executable()` picks).
    Any other executable (dbt from PATH, the fusion engine) is still asked.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        if DBT_PYTHON_VERSION is not None and Path(self.dbt_executable) == Path(sys.executable).with_name("dbt"):
            return DBT_PYTHON_VERSION
        return DbtCliResource._cli_version.func(self)  # type: ignore[attr-defined]


def _inputs(project: Path) -> list[Path]:
    files = [project / "dbt_project.yml", project / "profiles.yml"]
    for folder in ("models", "snapshots", "macros"):
        files += [p for p in (project / folder).rglob("*") if p.is_file()]
    return files


def prepare_manifest(project: Path, object_names: list[str]) -> Path:
    """Write the snapshot definitions for these objects and `dbt parse` when anything changed."""
    write_snapshot_definitions(project, object_names)
    manifest = project / "target" / "manifest.json"
    if manifest.exists() and manifest.stat().st_mtime >= max(p.stat().st_mtime for p in _inputs(project)):
        return manifest
    _parse(project, manifest)
    if not _has_snapshots(manifest, object_names):
        # dbt 1.11's partial parsing can miss snapshots added to a YAML file that already held some (seen here when
        # `objects: all` adds objects): parse again in full.
        _parse(project, manifest, "--no-partial-parse")
        if not _has_snapshots(manifest, object_names):
            raise DbtProjectError(f"dbt parse of {project} did not define a snapshot for every object of {object_names}")
    return manifest


def _parse(project: Path, manifest: Path, *extra: str) -> None:
    proc = subprocess.run(
        [dbt_executable(), "parse", "--project-dir", str(project), "--profiles-dir", str(project),
         "--quiet", *extra], capture_output=True, text=True,
        env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
    )
    if proc.returncode != 0 or not manifest.exists():
        raise DbtProjectError(f"dbt parse failed for {project}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def _has_snapshots(manifest: Path, object_names: list[str]) -> bool:
    from sf_pipeline.warehouse.names import table_name

    nodes = json.loads(manifest.read_bytes())["nodes"]
    have = {n["name"] for n in nodes.values() if n.get("resource_type") == "snapshot"}
    return {table_name(o) for o in object_names} <= have
