"""The code location loads the way `dagster dev`, the webserver and a code server load it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from sf_pipeline.warehouse.dbt_project import DBT_PROJECT_DIR

ROOT = Path(__file__).resolve().parents[1]


def test_code_location_passes_dagsters_own_validation(tmp_path):
    # A full load catches what building Definitions alone does not, e.g. an op and a job sharing a name.
    # Loading generates the snapshot definitions and runs `dbt parse`: in a private copy of the dbt project,
    # so that the checkout is not written (nor raced by another test doing the same).
    project = tmp_path / "dbt_snapshots"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", ".user.yml"))
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path), "SF_PIPELINE_DBT_PROJECT_DIR": str(project)},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "All code locations passed validation" in done.stdout + done.stderr
    assert (project / "target" / "manifest.json").exists()  # the location loaded the copy, and parsed it
